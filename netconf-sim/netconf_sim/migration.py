"""Device side of netmig's middle and distributed modes: the netmig-migration RPCs and notifications.

A :class:`MigrationAgent` per device answers ``export-di`` (the VM's learned and seeded DI as an opaque
blob: this simulator's own XML of the device's native tables), ``import-di`` (a partner's blob, of either
flavour, into this device's candidate as seeded DI, after checking support and conflicts),
``withdraw-di`` (the undo of a migration's imports: the entries they created, as an
:class:`~netconf_sim.ledger.ImportLedger` recorded them) and ``vdp-associate`` (at the VM's adjacent
bridge: distribute the associate to the listed upper-layer devices and middleboxes, answer with who will
report, then transfer device-to-device; see :mod:`netconf_sim.transfer`). Blobs of the other flavour are
read through the canonical DI form of :mod:`netconf_sim.learned` (``KIND_KEYS``/``KIND_FIELDS``), so
translating between unlike models is the device's job here, not the coordinator's. The module's input
parsing and notifications are in :mod:`netconf_sim.migration_xml`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from lxml import etree

from .learned import KIND_FIELDS, KIND_KEYS, OWNER, LearnedEntry, LearnedTables, TableShape, parse_time
from .ledger import (
    EntryKey,
    ImportLedger,
    ImportRecord,
    removal_config,
    seeded_entries,
    seeded_key,
    seeded_path,
)
from .migration_xml import (
    MIGRATION_NS,
    Associate,
    TransferRules,
    parse_peers,
    parse_rules,
)
from .migration_xml import child_text as _text
from .migration_xml import need as _need
from .migration_xml import q as _q
from .migration_xml import sub as _sub
from .rpcerror import SimRpcError
from .runtime import DeviceRuntime
from .xml import NC_NS, Element, XmlInputError, parse, qname

if TYPE_CHECKING:
    from .profiles import Profile
    from .session import Session

__all__ = ["Directory", "MigrationAgent", "read_blob"]

log = logging.getLogger(__name__)

_BLOB_NS = "urn:netconf-sim:di-blob"
_CONTENT_TYPE = "application/vnd.netconf-sim.{flavour}-di+xml"


class Directory(Protocol):
    """What the fabric tells a device about its peers (in a lab: logins and host keys)."""

    def agent(self, name: str) -> MigrationAgent | None: ...
    def login_for(self, address: str, port: int) -> tuple[str, str] | None: ...
    def endpoint_of(self, name: str) -> tuple[str, int]: ...
    @property
    def known_hosts_path(self) -> str: ...


# -- the agent ------------------------------------------------------------------------------------
class MigrationAgent:
    """The netmig-migration operations of one simulated device."""

    def __init__(self, name: str, profile: Profile, tables: LearnedTables, runtime: DeviceRuntime,
                 directory: Directory) -> None:
        self.name = name
        self.profile = profile
        self.tables = tables
        self.runtime = runtime
        self.directory = directory
        self.ignore_associate = False    # fault injection: a device that never answers
        self.fail_import = False         # fault injection: refuse every import-di
        self.ignore_associate_of: set[str] = set()  # fault injection: never answer these VMs' associates
        self.jobs: set[asyncio.Task[None]] = set()
        # kinds a test teaches this device beyond the standard six (opaque to the coordinator)
        self.extra_shapes: dict[str, TableShape] = {}
        self.extra_seeded: dict[str, dict[tuple[str, ...], LearnedEntry]] = {}
        self.ledger = ImportLedger()     # what each migration's imports created (for withdraw-di)

    # -- dispatch -------------------------------------------------------------------------------
    def dispatch(self, session: Session, op: Element) -> list[Element]:
        name = etree.QName(op).localname
        if name == "export-di":
            return self.export_di(_need(op, "vm-id"))
        if name == "import-di":
            self.runtime.check_unlocked("candidate", session.session_id)
            return self.import_di(op)
        if name == "withdraw-di":
            self.runtime.check_unlocked("candidate", session.session_id)
            return self.withdraw_di(_need(op, "migration-id"), _need(op, "vm-id"))
        if name == "vdp-associate":
            return self.associate(op)
        if name == "migration-notification":
            return []
        raise SimRpcError.operation_not_supported(f"operation {name} is not supported")

    def notify(self, note: Element) -> None:
        for session in list(self.runtime.sessions.values()):
            if session.subscribed:
                session.send_notification(note)

    # -- export ---------------------------------------------------------------------------------
    def vm_entries(self, vm_id: str) -> list[LearnedEntry]:
        """The VM's learned and seeded entries, per kind in key order (found through the owner index)."""
        tables = self.tables
        out = [e for kind in tables.kinds
               for e in tables.entries_at(kind, tables.keys_where(kind, OWNER, vm_id)) if e.vm_id == vm_id]
        out += [e for table in self.extra_seeded.values() for e in table.values() if e.vm_id == vm_id]
        return out

    def _shape(self, kind: str) -> TableShape | None:
        profile = self.profile
        return self.extra_shapes.get(kind) or profile.seeded_shapes.get(kind) or profile.shapes.get(kind)

    def export_blob(self, vm_id: str) -> tuple[bytes, str, int]:
        """The VM's DI in this device's native table shapes, wrapped in a blob element."""
        ns = self.profile.namespace
        root = etree.Element(qname(_BLOB_NS, "di"), nsmap={None: _BLOB_NS, "n": ns})
        root.set("vm-id", vm_id)
        count = 0
        for entry in self.vm_entries(vm_id):
            shape = self._shape(entry.kind)
            if shape is None:
                continue
            item = etree.SubElement(root, qname(ns, shape.list_name))
            item.set("kind", entry.kind)
            for name in KIND_KEYS[entry.kind] + KIND_FIELDS[entry.kind]:
                if name in entry.fields:
                    _sub(item, ns, shape.native(name), entry.fields[name])
            _sub(item, ns, shape.time_field, str(self.tables.time_value(entry, shape)))
            count += 1
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), \
            _CONTENT_TYPE.format(flavour=self.profile.flavour), count

    def export_di(self, vm_id: str) -> list[Element]:
        blob, content_type, count = self.export_blob(vm_id)
        out = []
        for name, value in (("blob", base64.b64encode(blob).decode()), ("content-type", content_type),
                            ("sha256", hashlib.sha256(blob).hexdigest()), ("entry-count", str(count))):
            el = etree.Element(_q(name), nsmap={None: MIGRATION_NS})
            el.text = value
            out.append(el)
        return out

    # -- import ---------------------------------------------------------------------------------
    def import_di(self, op: Element) -> list[Element]:
        if self.fail_import:
            raise SimRpcError.operation_failed(f"{self.name}: import refused (injected fault)")
        vm_id, migration_id = _need(op, "vm-id"), _need(op, "migration-id")
        self._record(migration_id, vm_id)
        try:
            blob = base64.b64decode(_need(op, "blob"), validate=True)
        except ValueError as exc:
            raise SimRpcError.invalid_value(f"blob is not base64: {exc}") from exc
        digest = _text(op, "sha256")
        if digest and hashlib.sha256(blob).hexdigest() != digest:
            raise SimRpcError.invalid_value("blob does not match its sha256", app_tag="digest-mismatch")
        kinds = frozenset((k.text or "").strip() for k in op.findall(_q("kind")))
        entries = read_blob(blob, _need(op, "content-type"), vm_id, self.shape_for_flavour)
        if kinds:  # kinds a device invented (outside the contract) travel wherever their blob is sent
            entries = [e for e in entries if e.kind in kinds or e.kind in self.extra_shapes]
        counts = self.install(vm_id, entries, parse_rules(op), _text(op, "vm-port"),
                              migration_id=migration_id)
        el = etree.Element(_q("entry-count"), nsmap={None: MIGRATION_NS})
        el.text = str(sum(counts.values()))
        return [el]

    def shape_for_flavour(self, flavour: str, kind: str) -> TableShape | None:
        from .profiles import PROFILES  # profiles imports nothing from here; deferred to keep layers flat

        if kind in self.extra_shapes:
            return self.extra_shapes[kind]
        for profile in PROFILES.values():
            if profile.flavour == flavour and kind in profile.shapes:
                return profile.seeded_shapes.get(kind) or profile.shapes[kind]
        return None

    def install(self, vm_id: str, entries: Iterable[LearnedEntry], rules: TransferRules,
                vm_port: str | None, *, migration_id: str | None = None) -> dict[str, int]:
        """Check, translate and write ``entries`` into the candidate as seeded DI; counts per kind.

        With a ``migration_id`` the entries this write creates (the candidate did not hold them) are
        recorded in the ledger for ``withdraw-di``."""
        keep: list[LearnedEntry] = []
        for entry in entries:
            supported = entry.kind in self.profile.seeded_shapes or entry.kind in self.extra_shapes
            if not supported:
                if entry.kind in rules.allow_drop:
                    continue
                raise SimRpcError("application", "operation-not-supported", app_tag="unsupported-kind",
                                  message=f"{self.name} cannot hold {entry.kind} entries")
            keep.append(_translate(entry, rules, vm_port))
        self._check_conflicts(vm_id, keep)
        now = datetime.now(UTC)
        config = etree.Element(qname(NC_NS, "config"), nsmap={None: NC_NS})
        counts: dict[str, int] = {}
        extra = [e for e in keep if e.kind in self.extra_shapes]
        standard = [e for e in keep if e.kind not in self.extra_shapes]
        created = {(e.kind, e.key) for e in standard if self.seeded_entry("candidate", e.kind, e.key) is None}
        created_extra = {(e.kind, e.key) for e in extra if e.key not in self.extra_seeded.get(e.kind, {})}
        if standard:
            self._seeded_config(config, vm_id, standard, rules, now)
            self.runtime.engine.edit_config("candidate", config)
        if migration_id is not None:
            self.ledger.note(migration_id, vm_id, created, created_extra)
        for entry in extra:  # kinds the YANG model does not know: kept beside the datastore (tests only)
            entry.vm_id = vm_id
            entry.origin = "seeded"
            self.extra_seeded.setdefault(entry.kind, {})[entry.key] = entry
        for entry in keep:
            counts[entry.kind] = counts.get(entry.kind, 0) + 1
        return counts

    # -- withdraw -------------------------------------------------------------------------------
    def seeded_in(self, datastore: str) -> dict[EntryKey, str | None]:
        """Every seeded entry ``datastore`` holds: (kind, key) -> owning VM (reads the whole container)."""
        return seeded_entries(self.profile, self.runtime.engine.get_config(datastore, None))

    def seeded_entry(self, datastore: str, kind: str, key: tuple[str, ...]) -> Element | None:
        """The seeded list entry ``key`` of ``kind`` in ``datastore`` (live, read-only), found by key."""
        return self.runtime.engine.list_entry(datastore, seeded_path(self.profile, kind),
                                 seeded_key(self.profile, kind, key))

    def seeded_owner(self, datastore: str, kind: str, key: tuple[str, ...]) -> str | None:
        """The VM owning seeded entry ``key`` of ``kind`` in ``datastore`` (None: absent or unowned)."""
        entry = self.seeded_entry(datastore, kind, key) if kind in self.profile.seeded_shapes else None
        if entry is None:
            return None
        owner = entry.findtext(qname(self.profile.namespace, self.profile.seeded_shapes[kind].owner_field))
        return owner.strip() if owner else None

    def _holds(self, name: EntryKey) -> bool:
        kind, key = name
        if key in self.extra_seeded.get(kind, {}):
            return True
        if kind not in self.profile.seeded_shapes:
            return False
        return any(self.seeded_entry(store, kind, key) is not None for store in ("candidate", "running"))

    def _record(self, migration_id: str, vm_id: str) -> ImportRecord | None:
        """The migration's ledger record (forgotten first if expired, or if settled with none of its
        entries held: checked by key, not by reading the datastores); a record of another VM is refused."""
        self.ledger.expire()
        self.ledger.settle(migration_id, self._holds, settled=self.runtime.pending is None)
        record = self.ledger.get(migration_id)
        if record is not None and record.vm_id != vm_id:
            raise SimRpcError.invalid_value(f"migration {migration_id} imported DI of {record.vm_id}, "
                                            f"not {vm_id}", app_tag="wrong-vm")
        return record

    def withdraw_di(self, migration_id: str, vm_id: str) -> list[Element]:
        """Remove from the candidate the entries this migration's imports created (still owned by
        ``vm_id``); answers how many were removed. Test-only kinds beside the datastore go at once."""
        record = self._record(migration_id, vm_id)
        removed = 0
        if record is not None:
            gone = sorted(k for k in record.created if self.seeded_owner("candidate", *k) == vm_id)
            if gone:
                self.runtime.engine.edit_config("candidate", removal_config(self.profile, gone))
            removed = len(gone)
            for kind, key in sorted(record.extra):
                table = self.extra_seeded.get(kind, {})
                if key in table and table[key].vm_id == vm_id:
                    del table[key]
                    removed += 1
        el = etree.Element(_q("entry-count"), nsmap={None: MIGRATION_NS})
        el.text = str(removed)
        return [el]

    def _check_conflicts(self, vm_id: str, entries: list[LearnedEntry]) -> None:
        now = datetime.now(UTC)
        for entry in entries:
            if entry.kind not in self.tables.kinds:
                continue
            owner = self._owner_at(entry.kind, entry.key, now)
            if owner not in (None, vm_id):
                raise SimRpcError("application", "data-exists", app_tag="di-conflict",
                                  message=f"{self.name}: {entry.kind} {'/'.join(entry.key)} belongs to "
                                          f"{owner}")

    def _owner_at(self, kind: str, key: tuple[str, ...], now: datetime) -> str | None:
        """The owner of the merged table's entry at ``key`` (None: no entry, or unowned): the learned
        entry, else the live seeded entry committed in running, found by key. The learned tables' own
        copy of the seeded entries would be the same, but after each commit it is read again whole on
        first use: a commit per import (the distributed modes) would make every import cost the device."""
        learned = self.tables.learned_at(kind, key)
        if learned is not None:
            return learned.vm_id
        if kind not in self.profile.seeded_shapes:
            return None
        item = self.seeded_entry("running", kind, key)
        if item is None:
            return None
        shape, ns = self.profile.seeded_shapes[kind], self.profile.namespace
        expires = parse_time(item.findtext(qname(ns, shape.expires_field)))
        if expires is not None and expires <= now:
            return None
        owner = item.findtext(qname(ns, shape.owner_field))
        return owner.strip() if owner else None

    def _seeded_config(self, config: Element, vm_id: str, entries: list[LearnedEntry], rules: TransferRules,
                       now: datetime) -> None:
        """The seeded DI tree in this device's model, shaped as netmig's own codecs write it."""
        ns = self.profile.namespace
        if self.profile.flavour == "ietf":
            top = etree.SubElement(config, qname(ns, "dynamic-info"), nsmap={None: ns})
            holder = _sub(top, ns, "seeded")
        else:
            top = etree.SubElement(config, qname(ns, "acme-fabric"), nsmap={None: ns})
            holder = _sub(top, ns, "preload")
        for entry in entries:
            shape = self.profile.seeded_shapes[entry.kind]
            item = _sub(holder, ns, shape.list_name)
            for name in KIND_KEYS[entry.kind] + KIND_FIELDS[entry.kind]:
                if name in entry.fields:
                    _sub(item, ns, shape.native(name), entry.fields[name])
            seconds = entry.lifetime_s
            _sub(item, ns, shape.time_field, str(seconds))
            _sub(item, ns, shape.owner_field, vm_id)
            ttl = rules.seed_ttl_s if entry.kind == "mac-entry" else seconds  # MAC entries carry an age
            stamp = (now + timedelta(seconds=ttl)).isoformat(timespec="seconds").replace("+00:00", "Z")
            _sub(item, ns, shape.expires_field, stamp)

    # -- associate (the bridge) -----------------------------------------------------------------
    def associate(self, op: Element) -> list[Element]:
        """Distribute the associate to the participants; answer with the devices that will report."""
        s_bit = _text(op, "s-bit") == "true"
        m_bit = _text(op, "m-bit") == "true"
        if s_bit == m_bit:
            raise SimRpcError.invalid_value("exactly one of s-bit and m-bit must be set",
                                            app_tag="s-bit-xor-m-bit")
        mid, vm = _need(op, "migration-id"), _need(op, "vm-id")
        timeout = int(_text(op, "confirm-timeout") or "600")
        rules = parse_rules(op)
        group = _text(op, "group-id") or None
        jobs: list[tuple[MigrationAgent, Associate]] = [(self, Associate(
            mid, vm, s_bit, parse_peers(op), _text(op, "bridge-vm-port"), timeout, rules, op, group))]
        for part in op.findall(_q("participant")):
            name = _need(part, "name")
            agent = self.directory.agent(name)
            if agent is None:
                raise SimRpcError.invalid_value(f"{self.name} cannot reach participant {name}",
                                                app_tag="unknown-participant")
            jobs.append((agent, Associate(mid, vm, s_bit, parse_peers(part), None, timeout, rules, op,
                                          group)))
        loop = asyncio.get_running_loop()
        for agent, job in jobs:
            loop.call_soon(agent.start, job)
        out = []
        for agent, _ in jobs:
            el = etree.Element(_q("reporting-device"), nsmap={None: MIGRATION_NS})
            el.text = agent.name
            out.append(el)
        count = etree.Element(_q("expected-reports"), nsmap={None: MIGRATION_NS})
        count.text = str(len(jobs))
        out.append(count)
        return out

    def start(self, job: Associate) -> None:
        """Run this device's part of an associate (see :mod:`netconf_sim.transfer`)."""
        if self.ignore_associate or job.vm_id in self.ignore_associate_of:
            log.info("%s: ignoring the associate of %s (injected fault)", self.name, job.migration_id)
            return
        from .transfer import run_job  # transfer imports this module

        task = asyncio.get_running_loop().create_task(run_job(self, job), name=f"transfer-{self.name}")
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)


def _translate(entry: LearnedEntry, rules: TransferRules, vm_port: str | None) -> LearnedEntry:
    fields = dict(entry.fields)
    if entry.kind in ("mac-entry", "dhcp-binding"):
        if "vlan" in fields:
            fields["vlan"] = str(rules.vlans.get(int(fields["vlan"]), int(fields["vlan"])))
        if "port" in fields:
            if vm_port is None:
                del fields["port"]
            else:
                fields["port"] = vm_port
    if entry.kind == "nat-session" and "external-address" in fields:
        fields["external-address"] = rules.nat_address(fields["external-address"])
    return LearnedEntry(entry.kind, fields, entry.vm_id, entry.origin, lifetime_s=entry.lifetime_s)


def read_blob(blob: bytes, content_type: str, vm_id: str,
              shape_for: Callable[[str, str], TableShape | None]) -> list[LearnedEntry]:
    """Parse a blob exported by any simulated device into canonical entries (time kept in lifetime_s)."""
    flavour = content_type.removeprefix("application/vnd.netconf-sim.").removesuffix("-di+xml")
    if content_type != _CONTENT_TYPE.format(flavour=flavour):
        raise SimRpcError.invalid_value(f"unknown blob content-type {content_type}", app_tag="content-type")
    try:
        root = parse(blob)
    except XmlInputError as exc:
        raise SimRpcError.invalid_value(f"blob is not readable: {exc}") from exc
    if root.tag != qname(_BLOB_NS, "di") or root.get("vm-id") != vm_id:
        raise SimRpcError.invalid_value(f"blob does not hold DI of {vm_id}", app_tag="wrong-vm")
    out = []
    for item in root:
        if not isinstance(item.tag, str):
            continue
        kind = item.get("kind") or ""
        shape = shape_for(flavour, kind)
        if shape is None or kind not in KIND_KEYS:
            raise SimRpcError("application", "operation-not-supported", app_tag="unsupported-kind",
                              message=f"unknown DI kind {kind!r} in blob")
        ns = etree.QName(item).namespace or ""
        values = {}
        for name in KIND_KEYS[kind] + KIND_FIELDS[kind]:
            text = item.findtext(qname(ns, shape.native(name)))
            if text is not None:
                values[name] = text.strip()
        time_text = item.findtext(qname(ns, shape.time_field)) or "0"
        out.append(LearnedEntry(kind, values, vm_id, "seeded", lifetime_s=int(time_text)))
    return out

"""Learned state of one simulated device: MAC, ARP/ND, DHCP snooping, NAT and firewall session tables.

Entries are kept in canonical form (the field names of netmig-vm-bundle's DI groupings) and rendered
as config-false data in the device's native shape (a :class:`TableShape` per kind, chosen by the
profile). Learned entries stay alive while their VM is (their age cycles within the entry lifetime);
seeded entries come from committed configuration and vanish when it is rolled back or expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from netconf_sim.xml import Element

__all__ = [
    "KIND_KEYS",
    "KIND_LIFETIME_S",
    "OWNER",
    "LearnedEntry",
    "LearnedTables",
    "TableShape",
    "parse_time",
]

# canonical key fields per DI kind (order = YANG key order)
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "mac-entry": ("mac", "vlan"),
    "arp-entry": ("ip",),
    "nd-entry": ("ip",),
    "dhcp-binding": ("mac",),
    "nat-session": ("protocol", "internal-address", "internal-port"),
    "firewall-session": ("protocol", "source-address", "source-port", "destination-address",
                         "destination-port"),
}
# canonical non-key fields per kind, in YANG order (the time field is rendered separately)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "mac-entry": ("port",),
    "arp-entry": ("mac",),
    "nd-entry": ("mac",),
    "dhcp-binding": ("ip", "vlan", "port"),
    "nat-session": ("external-address", "external-port", "remote-address", "remote-port"),
    "firewall-session": ("state",),
}
# canonical time field per kind: mac-entry counts up (age), the others count down
KIND_TIME: dict[str, str] = {
    "mac-entry": "age-s", "arp-entry": "expiry-s", "nd-entry": "expiry-s",
    "dhcp-binding": "lease-expiry-s", "nat-session": "expiry-s", "firewall-session": "expiry-s",
}
# the owning VM's pseudo field in the field index (no canonical field has this name)
OWNER = "vm-id"
Key = tuple[str, ...]
# per kind, per field (canonical name or OWNER), per stripped value: the keys of the entries having it
FieldIndex = dict[str, dict[str, dict[str, set[Key]]]]
KIND_LIFETIME_S: dict[str, int] = {
    "mac-entry": 300, "arp-entry": 1200, "nd-entry": 1200, "dhcp-binding": 86400,
    "nat-session": 7200, "firewall-session": 3600,
}


@dataclass(frozen=True, slots=True)
class TableShape:
    """How one DI kind looks natively: list name, field renames, time/owner/origin/expiry leaf names."""

    list_name: str
    time_field: str
    owner_field: str
    counts_down: bool = True
    renames: Mapping[str, str] = field(default_factory=dict)
    origin_field: str | None = None
    expires_field: str = "expires-at"

    def native(self, canonical: str) -> str:
        """The native leaf name of a canonical field."""
        return self.renames.get(canonical, canonical)


@dataclass(slots=True)
class LearnedEntry:
    """One entry: canonical fields (keys included), owning VM, origin and timing."""

    kind: str
    fields: dict[str, str]
    vm_id: str | None
    origin: str = "learned"
    learned_at: float = 0.0
    lifetime_s: int = 300
    expires_at: datetime | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """The entry's key values in YANG key order."""
        return tuple(self.fields[k] for k in KIND_KEYS[self.kind])


class LearnedTables:
    """The learned tables of one device; thread-safe (tests mutate while the server renders).

    Every field of every entry (and its owner) is indexed, learned and seeded apart, so a filtered read
    renders only the entries it may select (:meth:`keys_where`, ``render(select=...)``).
    """

    def __init__(self, kinds: Iterable[str], shapes: Mapping[str, TableShape], *,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kinds = tuple(kinds)
        self.shapes = dict(shapes)
        self._clock = clock
        self._wallclock = wallclock
        self._lock = threading.Lock()
        self._learned: dict[str, dict[tuple[str, ...], LearnedEntry]] = {k: {} for k in self.kinds}
        self._seeded: dict[str, dict[tuple[str, ...], LearnedEntry]] = {k: {} for k in self.kinds}
        self._learned_index: FieldIndex = {k: {} for k in self.kinds}
        self._seeded_index: FieldIndex | None = {k: {} for k in self.kinds}  # None: build on first use
        self._seeded_loader: Callable[[], Iterable[LearnedEntry]] | None = None  # set: read on first use

    def add(self, kind: str, *, vm_id: str | None = None, age_s: int = 0, lifetime_s: int | None = None,
            **fields: str | int) -> LearnedEntry:
        """Learn (or refresh) an entry; field names use ``_`` for ``-`` (``internal_address=...``)."""
        self._check_kind(kind)
        values = {k.replace("_", "-"): str(v) for k, v in fields.items()}
        missing = [k for k in KIND_KEYS[kind] if k not in values]
        if missing:
            raise ValueError(f"{kind} entry needs key field(s) {', '.join(missing)}")
        unknown = set(values) - set(KIND_KEYS[kind]) - set(KIND_FIELDS[kind])
        if unknown:
            raise ValueError(f"{kind} has no field(s) {', '.join(sorted(unknown))}")
        entry = LearnedEntry(kind, values, vm_id, "learned", self._clock() - age_s,
                             lifetime_s or KIND_LIFETIME_S[kind])
        with self._lock:
            old = self._learned[kind].get(entry.key)
            if old is not None:
                _unpost(self._learned_index, old)
            self._learned[kind][entry.key] = entry
            _post(self._learned_index, entry)
        return entry

    def remove(self, kind: str, **keys: str | int) -> bool:
        """Forget a learned entry by its key fields; True if it existed."""
        self._check_kind(kind)
        key = tuple(str(keys[k.replace("-", "_")]) for k in KIND_KEYS[kind])
        with self._lock:
            old = self._learned[kind].pop(key, None)
            if old is not None:
                _unpost(self._learned_index, old)
            return old is not None

    def clear(self, vm_id: str | None = None) -> None:
        """Forget all learned entries (of one VM if given); seeded ones stay."""
        with self._lock:
            if vm_id is None:
                for kind, table in self._learned.items():
                    table.clear()
                    self._learned_index[kind] = {}
                return
            for kind, table in self._learned.items():
                owned = self._learned_index[kind].get(OWNER, {}).get(vm_id.strip(), set())
                for key in [k for k in owned if table[k].vm_id == vm_id]:
                    _unpost(self._learned_index, table.pop(key))

    def set_seeded(self, entries: Iterable[LearnedEntry]) -> None:
        """Replace the seeded entries (from the newly committed configuration)."""
        fresh = self._by_kind(entries)
        with self._lock:
            self._seeded = fresh
            self._seeded_loader = None
            self._seeded_index = None  # every commit replaces the seeded entries: index them when read

    def set_seeded_source(self, load: Callable[[], Iterable[LearnedEntry]]) -> None:
        """The seeded entries changed: ``load()`` reads them when they are next needed, not now (a commit
        need not re-read thousands of seeded entries that no one may look at before the next commit)."""
        with self._lock:
            self._seeded_loader = load
            self._seeded_index = None

    def _by_kind(self, entries: Iterable[LearnedEntry]) -> dict[str, dict[tuple[str, ...], LearnedEntry]]:
        fresh: dict[str, dict[tuple[str, ...], LearnedEntry]] = {k: {} for k in self.kinds}
        for entry in entries:
            if entry.kind in fresh:
                entry.origin = "seeded"
                fresh[entry.kind][entry.key] = entry
        return fresh

    def _seeded_now(self) -> dict[str, dict[tuple[str, ...], LearnedEntry]]:
        """The seeded entries, read first if a commit changed them (the caller holds the lock)."""
        if self._seeded_loader is not None:
            load, self._seeded_loader = self._seeded_loader, None
            self._seeded = self._by_kind(load())
        return self._seeded

    def keys_where(self, kind: str, field: str, value: str) -> set[Key]:
        """Keys of the learned or seeded entries of ``kind`` whose ``field`` (canonical name, or
        :data:`OWNER`) has ``value`` (compared stripped); a superset of the merged table's matches."""
        self._check_kind(kind)
        want = value.strip()
        with self._lock:
            seeded = self._seeded_now()
            if self._seeded_index is None:
                self._seeded_index = {k: {} for k in self.kinds}
                for table in seeded.values():
                    for entry in table.values():
                        _post(self._seeded_index, entry)
            return (self._learned_index[kind].get(field, {}).get(want, set())
                    | self._seeded_index[kind].get(field, {}).get(want, set()))

    def entries(self, kind: str, *, include_expired: bool = False) -> list[LearnedEntry]:
        """The merged table of one kind: learned entries plus live seeded entries not learned too."""
        self._check_kind(kind)
        now = self._wallclock()
        with self._lock:
            merged = dict(self._learned[kind])
            for key, entry in self._seeded_now()[kind].items():
                live = entry.expires_at is None or entry.expires_at > now
                if key not in merged and (live or include_expired):
                    merged[key] = entry
        return [merged[k] for k in sorted(merged)]

    def learned_at(self, kind: str, key: Key) -> LearnedEntry | None:
        """The learned (not seeded) entry of ``kind`` at ``key``; reads no seeded entry."""
        self._check_kind(kind)
        with self._lock:
            return self._learned[kind].get(key)

    def entries_at(self, kind: str, keys: Collection[Key]) -> list[LearnedEntry]:
        """The merged table's entries at ``keys`` (those it has), in key order, like :meth:`entries`."""
        self._check_kind(kind)
        now = self._wallclock()
        out: list[LearnedEntry] = []
        with self._lock:
            learned, seeded = self._learned[kind], self._seeded_now()[kind]
            for key in sorted(keys):
                entry = learned.get(key)
                if entry is None:
                    entry = seeded.get(key)
                    if entry is None or (entry.expires_at is not None and entry.expires_at <= now):
                        continue
                out.append(entry)
        return out

    def time_value(self, entry: LearnedEntry, shape: TableShape) -> int:
        """The entry's age (counting up) or remaining time (counting down) in whole seconds."""
        if entry.origin == "seeded" and entry.expires_at is not None:
            remaining = int((entry.expires_at - self._wallclock()).total_seconds())
            return max(0, remaining) if shape.counts_down else max(0, entry.lifetime_s - remaining)
        age = int(self._clock() - entry.learned_at) % max(1, entry.lifetime_s)
        return entry.lifetime_s - age if shape.counts_down else age

    def render(self, parent: Element, namespace: str,
               select: Mapping[str, Collection[Key] | None] | None = None) -> None:
        """Append one native list entry per merged entry of every kind under ``parent``; with
        ``select``, only the kinds it names and of those the entries at its keys (None: all of them)."""
        for kind in self.kinds:
            shape = self.shapes.get(kind)
            if shape is None or (select is not None and kind not in select):
                continue
            keys = select.get(kind) if select is not None else None
            for entry in self.entries(kind) if keys is None else self.entries_at(kind, keys):
                item = etree.SubElement(parent, f"{{{namespace}}}{shape.list_name}")
                for name in KIND_KEYS[kind] + KIND_FIELDS[kind]:
                    if name in entry.fields:
                        leaf = etree.SubElement(item, f"{{{namespace}}}{shape.native(name)}")
                        leaf.text = entry.fields[name]
                etree.SubElement(item, f"{{{namespace}}}{shape.time_field}").text = str(
                    self.time_value(entry, shape))
                if entry.vm_id is not None:
                    etree.SubElement(item, f"{{{namespace}}}{shape.owner_field}").text = entry.vm_id
                if shape.origin_field is not None:
                    etree.SubElement(item, f"{{{namespace}}}{shape.origin_field}").text = entry.origin

    def _check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise KeyError(f"this device does not learn {kind!r} (it learns {', '.join(self.kinds)})")


def _post(index: FieldIndex, entry: LearnedEntry) -> None:
    fields = index[entry.kind]
    key = entry.key
    for name, value in entry.fields.items():
        fields.setdefault(name, {}).setdefault(value.strip(), set()).add(key)
    if entry.vm_id is not None:
        fields.setdefault(OWNER, {}).setdefault(entry.vm_id.strip(), set()).add(key)


def _unpost(index: FieldIndex, entry: LearnedEntry) -> None:
    fields = index[entry.kind]
    key = entry.key
    pairs = [*entry.fields.items(), *([(OWNER, entry.vm_id)] if entry.vm_id is not None else [])]
    for name, value in pairs:
        values = fields.get(name)
        if values is None:
            continue
        text = value.strip()
        keys = values.get(text)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del values[text]


def parse_seeded(container: Element | None, namespace: str, shapes: Mapping[str, TableShape],
                 kinds: Iterable[str]) -> list[LearnedEntry]:
    """Read seeded DI entries (native shape) from a committed config container such as ``seeded``."""
    if container is None:
        return []
    out: list[LearnedEntry] = []
    for kind in kinds:
        shape = shapes.get(kind)
        if shape is None:
            continue
        for item in container.findall(f"{{{namespace}}}{shape.list_name}"):
            values: dict[str, str] = {}
            for name in KIND_KEYS[kind] + KIND_FIELDS[kind]:
                text = item.findtext(f"{{{namespace}}}{shape.native(name)}")
                if text is not None:
                    values[name] = text.strip()
            if any(k not in values for k in KIND_KEYS[kind]):
                continue
            owner = item.findtext(f"{{{namespace}}}{shape.owner_field}")
            expires = parse_time(item.findtext(f"{{{namespace}}}{shape.expires_field}"))
            out.append(LearnedEntry(kind, values, owner.strip() if owner else None, "seeded",
                                    lifetime_s=KIND_LIFETIME_S[kind], expires_at=expires))
    return out


def parse_time(text: str | None) -> datetime | None:
    """An ``expires-at`` leaf's time: ISO 8601, UTC when it names no zone; None when absent or unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

"""What each migration's imports created on one device, so that ``withdraw-di`` undoes exactly that.

An :class:`ImportLedger` keeps, per migration-id, the seeded entries (kind and key) that the device's
``import-di`` operations for that migration created: entries the candidate did not hold before the
import. ``withdraw-di`` removes those and nothing else, so an entry the device held already (another
migration's, or one an operator configured) survives the undo.

A record lives in the device's memory (it survives a simulated reboot, which keeps the agent) until
nothing it names is held any more (neither candidate nor running, nor the side table of test-only
kinds) while no confirmed commit is pending: the migration was rolled back, or withdrawn and the
withdrawal confirmed. A record whose entries stay (the migration succeeded) is dropped after
:data:`RECORD_TTL_S`: an hour is far past any confirm timeout (netmig's default is 120 s) and any
compensation or recovery, which both run while the migration is unsettled, and it bounds the memory
a busy device spends on migrations that will never be withdrawn.

The device applies these rules where they matter, in time independent of how many records it holds:
expired records are dropped oldest first (:meth:`ImportLedger.expire`), and a record is checked for
entries still held when it is looked up (:meth:`ImportLedger.settle`, by key, through the datastores'
keyed entries), which is the only time the rule changes an answer. :meth:`ImportLedger.prune` applies
both rules to every record at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

from .learned import KIND_KEYS, parse_seeded
from .xml import NC_NS, Element, qname

if TYPE_CHECKING:
    from .profiles import Profile

__all__ = ["RECORD_TTL_S", "EntryKey", "ImportLedger", "ImportRecord", "removal_config", "seeded_entries",
           "seeded_key", "seeded_path"]

RECORD_TTL_S = 3600.0

EntryKey = tuple[str, tuple[str, ...]]  # (DI kind, key values in YANG key order)


@dataclass(slots=True)
class ImportRecord:
    """The entries one migration's imports created on this device."""

    vm_id: str
    created_at: float
    created: set[EntryKey] = field(default_factory=set)   # in the datastore (seeded config)
    extra: set[EntryKey] = field(default_factory=set)     # test-only kinds kept beside the datastore

    def names(self) -> set[EntryKey]:
        return self.created | self.extra


class ImportLedger:
    """Per-migration records of created entries, forgotten by the rules of the module docstring."""

    def __init__(self, *, ttl_s: float = RECORD_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._records: OrderedDict[str, ImportRecord] = OrderedDict()  # oldest first

    def note(self, migration_id: str, vm_id: str, created: set[EntryKey], extra: set[EntryKey]) -> None:
        """Add what one import created to the migration's record (one record per migration)."""
        record = self._records.get(migration_id)
        if record is None:
            record = self._records[migration_id] = ImportRecord(vm_id, self._clock())
        record.created |= created
        record.extra |= extra

    def get(self, migration_id: str) -> ImportRecord | None:
        return self._records.get(migration_id)

    def __contains__(self, migration_id: object) -> bool:
        return migration_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def expire(self) -> None:
        """Forget the records older than the TTL (oldest first: costs what it forgets)."""
        now = self._clock()
        while self._records:
            record = next(iter(self._records.values()))
            if now - record.created_at <= self.ttl_s:
                return
            self._records.popitem(last=False)

    def settle(self, migration_id: str, holds: Callable[[EntryKey], bool], settled: bool) -> None:
        """When ``settled`` (no confirmed commit pending), forget the migration's record if none of its
        entries is held (``holds``: in candidate, running or the side table) any more."""
        record = self._records.get(migration_id)
        if settled and record is not None and not any(holds(name) for name in record.names()):
            del self._records[migration_id]

    def prune(self, held: Callable[[], set[EntryKey]], settled: bool) -> None:
        """Forget expired records, and, when ``settled`` (no confirmed commit pending), records none of
        whose entries are ``held()`` (candidate, running or the side table) any more."""
        self.expire()
        if not settled or not self._records:
            return
        present = held()
        for mid in [m for m, r in self._records.items() if not r.names() & present]:
            del self._records[mid]


def _holder(profile: Profile) -> tuple[str, str]:
    return ("dynamic-info", "seeded") if profile.flavour == "ietf" else ("acme-fabric", "preload")


def seeded_entries(profile: Profile, data: Element) -> dict[EntryKey, str | None]:
    """The seeded entries a ``<data>`` copy of a datastore holds: (kind, key) -> owning VM."""
    ns = profile.namespace
    top, holder = _holder(profile)
    container = data.find(f"{qname(ns, top)}/{qname(ns, holder)}")
    entries = parse_seeded(container, ns, profile.seeded_shapes, profile.seeded_shapes)
    return {(e.kind, e.key): e.vm_id for e in entries}


def seeded_path(profile: Profile, kind: str) -> tuple[str, str, str]:
    """The Clark tags from the top container down to the seeded list of ``kind``."""
    ns = profile.namespace
    top, holder = _holder(profile)
    return qname(ns, top), qname(ns, holder), qname(ns, profile.seeded_shapes[kind].list_name)


def seeded_key(profile: Profile, kind: str, key: tuple[str, ...]) -> dict[str, str]:
    """The native key leaves (local name -> value) of the seeded entry ``key`` of ``kind``."""
    shape = profile.seeded_shapes[kind]
    return {shape.native(name): value for name, value in zip(KIND_KEYS[kind], key, strict=True)}


def removal_config(profile: Profile, keys: list[EntryKey]) -> Element:
    """A ``<config>`` removing the seeded list entries named by ``keys`` (nc:operation remove)."""
    ns = profile.namespace
    top, name = _holder(profile)
    config = etree.Element(qname(NC_NS, "config"), nsmap={None: NC_NS})
    holder = etree.SubElement(etree.SubElement(config, qname(ns, top), nsmap={None: ns}), qname(ns, name))
    for kind, key in keys:
        shape = profile.seeded_shapes[kind]
        item = etree.SubElement(holder, qname(ns, shape.list_name))
        item.set(qname(NC_NS, "operation"), "remove")
        for field_name, value in zip(KIND_KEYS[kind], key, strict=True):
            etree.SubElement(item, qname(ns, shape.native(field_name))).text = value
    return config

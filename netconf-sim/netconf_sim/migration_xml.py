"""The netmig-migration YANG module's data on the device side: inputs parsed, notifications built.

``vdp-associate`` and ``import-di`` inputs become :class:`Associate`, :class:`Peer` and
:class:`TransferRules` (:func:`parse_peers`, :func:`parse_rules`, :func:`copy_rules`); the
``migration-feedback`` and ``di-transferred`` notifications are built by :func:`feedback_notification`
and :func:`transferred_notification`; :func:`persist_id_for` is the persist-id both a device and netmig
derive from a migration-id. Used by :mod:`netconf_sim.migration` (the agent) and
:mod:`netconf_sim.transfer` (device-to-device transfers); holds no device state.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from .rpcerror import SimRpcError
from .runtime import NOTIF_NS
from .xml import Element, qname

__all__ = ["MIGRATION_NS", "Associate", "Peer", "TransferRules", "child_text", "copy_rules",
           "feedback_notification", "need", "parse_peers", "parse_rules", "persist_id_for", "q", "sub",
           "transferred_notification"]

MIGRATION_NS = "urn:netmig:yang:netmig-migration"


def persist_id_for(migration_id: str, device: str) -> str:
    """The persist-id of the confirmed commits a migration leaves on ``device`` (both sides derive it)."""
    return "nm-" + hashlib.sha256(f"{migration_id}/{device}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Peer:
    """A partner device named in a vdp-associate: where it is and which kinds go to/come from it."""

    name: str
    address: str
    port: int
    kinds: tuple[str, ...] = ()
    vm_port: str | None = None


@dataclass(frozen=True, slots=True)
class TransferRules:
    """Site-dependent rewrites applied by the importing device (mirrors netmig's translate rules)."""

    vlans: dict[int, int] = field(default_factory=dict)
    nat_pools: tuple[tuple[ipaddress.IPv4Network, ipaddress.IPv4Network], ...] = ()
    allow_drop: frozenset[str] = frozenset()
    seed_ttl_s: int = 300

    def nat_address(self, value: str) -> str:
        address = ipaddress.IPv4Address(value)
        for src, dst in self.nat_pools:
            if address in src:
                host = int(address) - int(src.network_address)
                return str(ipaddress.IPv4Address(int(dst.network_address) + host))
        return value


@dataclass(frozen=True, slots=True)
class Associate:
    """A vdp-associate as one device's job: what to transfer, to or from whom."""

    migration_id: str
    vm_id: str
    push: bool
    partners: tuple[Peer, ...]
    own_vm_port: str | None
    confirm_timeout_s: int
    rules: TransferRules
    rules_xml: Element
    group_id: str | None = None  # several associates sharing one pending commit per destination

    @property
    def commit_id(self) -> str:
        """What the persist-id of this job's follow-up confirmed commits is derived from."""
        return self.group_id or self.migration_id


# -- small XML helpers ----------------------------------------------------------------------------
def q(name: str) -> str:
    return qname(MIGRATION_NS, name)


def child_text(el: Element, name: str) -> str | None:
    found = el.find(q(name))
    return None if found is None else (found.text or "").strip()


def need(el: Element, name: str) -> str:
    value = child_text(el, name)
    if not value:
        raise SimRpcError.missing_element(name)
    return value


def sub(parent: Element, ns: str, name: str, text: str | None = None) -> Element:
    child = etree.SubElement(parent, qname(ns, name))
    if text is not None:
        child.text = text
    return child


def parse_rules(el: Element) -> TransferRules:
    """The transfer-rules grouping of an import-di or vdp-associate input."""
    vlans = {int(need(m, "from")): int(need(m, "to")) for m in el.findall(q("vlan-map"))}
    pools = []
    for m in el.findall(q("nat-pool-map")):
        src, dst = (ipaddress.IPv4Network(need(m, k), strict=False) for k in ("from", "to"))
        if src.prefixlen != dst.prefixlen:
            raise SimRpcError.invalid_value(f"NAT pools {src} and {dst} differ in size")
        pools.append((src, dst))
    drop = frozenset((d.text or "").strip() for d in el.findall(q("allow-drop")))
    ttl = child_text(el, "seed-ttl")
    return TransferRules(vlans, tuple(pools), drop, int(ttl) if ttl else 300)


def copy_rules(src: Element, dst: Element) -> None:
    """Copy the transfer-rules leaves of ``src`` under ``dst`` (an associate's rules into an import-di)."""
    for name in ("vlan-map", "nat-pool-map", "allow-drop", "seed-ttl"):
        for el in src.findall(q(name)):
            dst.append(etree.fromstring(etree.tostring(el)))


def parse_peers(el: Element) -> tuple[Peer, ...]:
    """The partners listed under ``el`` (a vdp-associate or one of its participants)."""
    peers = []
    for p in el.findall(q("partner")):
        port = child_text(p, "port")
        kinds = tuple((k.text or "").strip() for k in p.findall(q("kind")))
        peers.append(Peer(need(p, "name"), need(p, "address"), int(port) if port else 830, kinds,
                          child_text(p, "vm-port")))
    return tuple(peers)


# -- notifications --------------------------------------------------------------------------------
def _notification(body: str) -> tuple[Element, Element]:
    note = etree.Element(qname(NOTIF_NS, "notification"), nsmap={None: NOTIF_NS})
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    sub(note, NOTIF_NS, "eventTime", stamp)
    return note, etree.SubElement(note, q(body), nsmap={None: MIGRATION_NS})


def feedback_notification(job: Associate, device: str, *, ok: bool, reason: str | None,
                          counts: dict[str, int], duration_ms: int) -> Element:
    note, body = _notification("migration-feedback")
    sub(body, MIGRATION_NS, "migration-id", job.migration_id)
    sub(body, MIGRATION_NS, "vm-id", job.vm_id)
    sub(body, MIGRATION_NS, "device", device)
    sub(body, MIGRATION_NS, "status", "success" if ok else "fail")
    if reason:
        sub(body, MIGRATION_NS, "reason", reason)
    for kind, entries in sorted(counts.items()):
        count = sub(body, MIGRATION_NS, "count")
        sub(count, MIGRATION_NS, "kind", kind)
        sub(count, MIGRATION_NS, "entries", str(entries))
    sub(body, MIGRATION_NS, "duration-ms", str(duration_ms))
    return note


def transferred_notification(job: Associate, source: str, destination: str,
                             counts: dict[str, int]) -> Element:
    note, body = _notification("di-transferred")
    sub(body, MIGRATION_NS, "migration-id", job.migration_id)
    sub(body, MIGRATION_NS, "vm-id", job.vm_id)
    sub(body, MIGRATION_NS, "from", source)
    sub(body, MIGRATION_NS, "to", destination)
    for kind in sorted(counts):
        sub(body, MIGRATION_NS, "kinds", kind)
    sub(body, MIGRATION_NS, "entries", str(sum(counts.values())))
    return note

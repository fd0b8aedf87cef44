"""The device codec contract, the per-VM context codecs work in, and helpers every codec shares.

A codec turns one device model's XML into the canonical :class:`VmBundle` and back. It is pure: no I/O,
no clock (the seed time comes in :class:`VmContext`). Requests it builds are RFC 6241 elements.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from lxml import etree

from netmig import xmlkit
from netmig.errors import BundleError
from netmig.model.bundle import PolicyKind, VmBundle, from_dict, shape, to_dict
from netmig.model.dynamic import ArpEntry, DhcpBinding, FirewallSession, MacEntry, NatSession, NdEntry
from netmig.model.policy import norm_ip, norm_mac

__all__ = [
    "DI_CLASSES",
    "KEY_LEAVES",
    "NMB_NS",
    "Binding",
    "DeviceCodec",
    "DeviceInventory",
    "Element",
    "LbUse",
    "LocalNarrowing",
    "NatMapping",
    "PortUse",
    "VmContext",
    "add_matches",
    "as_tuple",
    "bundle_from_xml",
    "bundle_to_xml",
    "config_root",
    "di_matches",
    "expiry_of",
    "int_of",
    "operation",
    "record_from_xml",
    "record_to_xml",
    "section",
    "sorted_inventory",
    "subtree_filter",
    "top",
]

log = logging.getLogger(__name__)

Element = etree._Element
T = TypeVar("T")
NMB_NS = "urn:netmig:yang:netmig-vm-bundle"


@dataclass(frozen=True, slots=True)
class VmContext:
    """What a codec knows about the VM besides the device's data: its id, port, addresses and segment.

    ``now`` is when seeded/preloaded DI is written; a seeded entry expires at ``now`` plus its own
    expiry timer, or plus ``default_ttl_s`` when it has none (MAC entries carry an age, not an expiry).
    """

    vm_id: str
    port: str
    macs: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    tenant: str | None = None
    vlan: int | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    default_ttl_s: int = 300

    def __post_init__(self) -> None:
        object.__setattr__(self, "macs", tuple(sorted({norm_mac(m, "context/macs") for m in self.macs})))
        object.__setattr__(self, "ips", tuple(sorted({norm_ip(a, "context/ips") for a in self.ips})))

    @property
    def ipv4s(self) -> tuple[str, ...]:
        return tuple(a for a in self.ips if ":" not in a)

    @property
    def ipv6s(self) -> tuple[str, ...]:
        return tuple(a for a in self.ips if ":" in a)

    def expires_at(self, seconds: int | None) -> str:
        """yang:date-and-time of ``now`` plus ``seconds`` (or the default TTL), in UTC."""
        delta = timedelta(seconds=self.default_ttl_s if seconds is None else seconds)
        when = self.now.astimezone(UTC) + delta
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def claims(self, owner: str | None, matches: bool, what: str) -> bool:
        """Scope guard: is an entry this VM's?

        An entry tagged with this VM is ours; an untagged entry is ours when it matches the VM's port,
        MACs or IPs; an entry tagged with another VM that matches them is refused with BundleError.
        """
        if owner == self.vm_id:
            return True
        if owner is None:
            return matches
        if matches:
            raise BundleError(f"{what} belongs to VM {owner!r}, not {self.vm_id!r}: refusing to take it")
        return False


@dataclass(frozen=True, slots=True)
class PortUse:
    """A port and what is configured on it."""

    port: str
    vm_id: str | None = None
    tenant: str | None = None
    vlan: int | None = None
    vni: int | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """An address a device's tables or seeds hold, and the VM it is attributed to (None: unknown)."""

    kind: PolicyKind
    address: str
    owner: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NatMapping:
    """A static NAT mapping on the device."""

    internal_address: str
    external_address: str
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class LbUse:
    """A real server of a load-balancer pool on the device."""

    pool: str
    address: str
    port: int
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceInventory:
    """What a device already holds, for conflict checks; every tuple is sorted."""

    ports: tuple[PortUse, ...] = ()
    names: frozenset[str] = frozenset()
    bindings: tuple[Binding, ...] = ()
    nat: tuple[NatMapping, ...] = ()
    lb: tuple[LbUse, ...] = ()

    @property
    def vlans(self) -> frozenset[int]:
        return frozenset(p.vlan for p in self.ports if p.vlan is not None)

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(p.tenant for p in self.ports if p.tenant is not None)

    def owners_of(self, address: str) -> frozenset[str | None]:
        """Every VM (None: unattributed) the device binds ``address`` (a MAC or IP) to."""
        return frozenset(b.owner for b in self.bindings if b.address == address)


@runtime_checkable
class LocalNarrowing(Protocol):
    """A codec whose per-VM config filter selects more than the VM's entries (a list whose keys only
    a reference elsewhere names) and that can narrow it when reads are answered locally and cheaply."""

    def narrow_config_filter(self, flt: Element, answer: Callable[[Element], Element]) -> Element:
        """A filter selecting less than ``flt`` (this codec's ``config_filter``) whose answer decodes
        to the same bundle; ``answer`` answers a probe filter (follows the references). ``flt`` itself
        when it has nothing to narrow; never modified."""
        ...


@runtime_checkable
class DeviceCodec(Protocol):
    """Translate between one device model and the canonical bundle."""

    @property
    def name(self) -> str: ...

    @property
    def supported_kinds(self) -> frozenset[PolicyKind]: ...

    def required_modules(self, kinds: Collection[PolicyKind] | None = None) -> frozenset[str]:
        """YANG modules the device must implement to hold ``kinds`` (default: every supported kind)."""
        ...

    def required_features(self, kinds: Collection[PolicyKind] | None = None) -> frozenset[tuple[str, str]]:
        """(module, feature) pairs the device must support to hold ``kinds``."""
        ...

    def config_filter(self, ctx: VmContext) -> Element:
        """``<filter type="subtree">`` for get-config selecting this VM's configuration."""
        ...

    def state_filter(self, ctx: VmContext) -> Element:
        """``<filter type="subtree">`` for get selecting this VM's learned state."""
        ...

    def decode(self, config: Element, state: Element | None, ctx: VmContext) -> VmBundle:
        """Device ``<data>`` (config, and state from get) to the VM's canonical bundle."""
        ...

    def encode(self, bundle: VmBundle, ctx: VmContext) -> Element:
        """``<config>`` creating or merging exactly this VM's entries; DI goes into the seed tree."""
        ...

    def encode_removal(self, bundle: VmBundle, ctx: VmContext, *, current: Element | None = None) -> Element:
        """``<config>`` removing exactly this VM's entries (``current``: the device's data, for real keys)."""
        ...

    def inventory(self, config: Element, state: Element | None = None) -> DeviceInventory:
        """What the device already holds."""
        ...


def subtree_filter() -> Element:
    """An empty RFC 6241 ``<filter type="subtree">``."""
    return xmlkit.element(xmlkit.NC_NS, "filter", attrib={"type": "subtree"}, nsmap={"nc": xmlkit.NC_NS})


def section(parent: Element, ns: str, name: str, prefixes: dict[str, str] | None = None) -> Element:
    """Append a top-level container that declares ``ns`` as its default namespace (plus ``prefixes``)."""
    nsmap: dict[str | None, str] = {None: ns}
    nsmap.update(prefixes or {})
    el = xmlkit.element(ns, name, nsmap=nsmap)
    parent.append(el)
    return el


def config_root() -> Element:
    """An empty edit-config ``<config>``."""
    return xmlkit.element(xmlkit.NC_NS, "config", nsmap={"nc": xmlkit.NC_NS})


def operation(el: Element, op: str) -> Element:
    """Set the RFC 6241 ``nc:operation`` attribute on ``el`` and return it."""
    el.set(xmlkit.qualify(xmlkit.NC_NS, "operation"), op)
    return el


def sorted_inventory(
    ports: Iterable[PortUse],
    names: Iterable[str],
    bindings: Iterable[Binding],
    nat: Iterable[NatMapping],
    lb: Iterable[LbUse],
) -> DeviceInventory:
    """A DeviceInventory with every part sorted (deterministic)."""

    def order(x: Any) -> Any:
        return tuple("" if v is None else str(v) for v in (getattr(x, f) for f in x.__slots__))

    return DeviceInventory(
        tuple(sorted(ports, key=order)),
        frozenset(names),
        tuple(sorted(set(bindings), key=order)),
        tuple(sorted(set(nat), key=order)),
        tuple(sorted(set(lb), key=order)),
    )


# ------------------------------------------------------------------------ records as YANG XML


def record_to_xml(parent: Element, ns: str, name: str, obj: Any, *, skip: Collection[str] = ()) -> Element:
    """Append ``<name>`` in ``ns`` holding the model dataclass ``obj`` with YANG leaf names."""
    el = xmlkit.sub(parent, ns, name)
    data = {k: v for k, v in to_dict(obj).items() if k not in skip}
    _dict_to_xml(el, ns, data)
    return el


def record_from_xml(
    el: Element,
    ns: str,
    cls: type[T],
    path: str,
    *,
    ignore: Collection[str] = (),
    extra: dict[str, Any] | None = None,
) -> T:
    r"""The model dataclass ``cls`` read from ``el`` (children in ``ns``, ``ignore``\ d names skipped)."""
    data = _xml_to_dict(el, ns, cls, frozenset(ignore))
    data.update(extra or {})
    return from_dict(cls, data, path)


def _dict_to_xml(parent: Element, ns: str, data: dict[str, Any]) -> None:
    for name, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                _dict_to_xml(xmlkit.sub(parent, ns, name), ns, item)
            else:
                xmlkit.sub(parent, ns, name, str(item))


def _xml_to_dict(el: Element, ns: str, cls: type, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    shapes = {fs.yang: fs for fs in shape(cls)}
    out: dict[str, Any] = {}
    for node in el:
        if not isinstance(node.tag, str):
            continue
        name = xmlkit.local_name(node)
        if name in ignore:
            continue
        fs = shapes.get(name)
        if fs is None or etree.QName(node).namespace != ns:
            raise BundleError(f"{xmlkit.local_name(el)}: unknown element {name!r}")
        value: Any = _xml_to_dict(node, ns, fs.record) if fs.record is not None else (node.text or "").strip()
        if fs.many:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


DI_CLASSES: dict[PolicyKind, type[Any]] = {
    PolicyKind.MAC_ENTRY: MacEntry,
    PolicyKind.ARP_ENTRY: ArpEntry,
    PolicyKind.ND_ENTRY: NdEntry,
    PolicyKind.DHCP_BINDING: DhcpBinding,
    PolicyKind.NAT_SESSION: NatSession,
    PolicyKind.FIREWALL_SESSION: FirewallSession,
}
KEY_LEAVES: dict[PolicyKind, tuple[str, ...]] = {
    PolicyKind.MAC_ENTRY: ("mac", "vlan"),
    PolicyKind.ARP_ENTRY: ("ip",),
    PolicyKind.ND_ENTRY: ("ip",),
    PolicyKind.DHCP_BINDING: ("mac",),
    PolicyKind.NAT_SESSION: ("protocol", "internal-address", "internal-port"),
    PolicyKind.FIREWALL_SESSION: (
        "protocol",
        "source-address",
        "source-port",
        "destination-address",
        "destination-port",
    ),
}


def as_tuple(key: Any) -> tuple[Any, ...]:
    """A list key as a tuple of its leaf values."""
    return key if isinstance(key, tuple) else (key,)


def expiry_of(entry: Any) -> int | None:
    """The seconds until a DI entry expires, when it says (MAC entries carry an age instead)."""
    value = (
        getattr(entry, "lease_expiry_s", None)
        if isinstance(entry, DhcpBinding)
        else getattr(entry, "expiry_s", None)
    )
    return value if isinstance(value, int) else None


def di_matches(entry: Any, ctx: VmContext) -> bool:
    """Does a DI entry point at the VM (its port, one of its MACs or IPs)?"""
    if isinstance(entry, MacEntry):
        return entry.mac in ctx.macs or entry.port == ctx.port
    if isinstance(entry, ArpEntry | NdEntry):
        return entry.ip in ctx.ips or entry.mac in ctx.macs
    if isinstance(entry, DhcpBinding):
        return entry.mac in ctx.macs or entry.ip in ctx.ips
    if isinstance(entry, NatSession):
        return entry.internal_address in ctx.ips
    if isinstance(entry, FirewallSession):
        return entry.source_address in ctx.ips or entry.destination_address in ctx.ips
    return False


def add_matches(parent: Element, ns: str, name: str, matches: Iterable[tuple[str, str]]) -> None:
    """One ``<name><leaf>value</leaf></name>`` content-match node per (leaf, value) (RFC 6241 6.2.5).

    Empty values are skipped: an empty leaf is a selection node, which would select every entry's leaf
    (the whole table) instead of matching nothing (e.g. the VM's port on a device it is not attached to).
    """
    for leaf, value in matches:
        if value:
            xmlkit.sub(xmlkit.sub(parent, ns, name), ns, leaf, value)


def top(root: Element, ns: str, name: str) -> Element | None:
    """``root`` itself when it is ``ns:name``, else its child of that name (for <data>/<config>)."""
    if root.tag == xmlkit.qualify(ns, name):
        return root
    return xmlkit.child(root, ns, name)


def int_of(el: Element, ns: str, name: str, path: str) -> int | None:
    """An integer leaf, or None when absent."""
    text = xmlkit.text_of(el, ns, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise BundleError(f"{path}/{name}: {text!r} is not an integer") from exc


# ------------------------------------------------------------------- canonical bundle as XML (nmb)


def bundle_to_xml(bundles: Iterable[VmBundle]) -> Element:
    """``<vm-bundles>`` in the netmig-vm-bundle namespace holding the bundles (sorted by vm-id)."""
    root = xmlkit.element(NMB_NS, "vm-bundles")
    for bundle in sorted(bundles, key=lambda b: b.vm_id):
        _dict_to_xml(xmlkit.sub(root, NMB_NS, "vm-bundle"), NMB_NS, to_dict(bundle))
    return root


def bundle_from_xml(root: Element) -> tuple[VmBundle, ...]:
    """The bundles of a ``<vm-bundles>`` element (or of a ``<data>``/``<config>`` holding one)."""
    found = top(root, NMB_NS, "vm-bundles")
    if found is None:
        return ()
    return tuple(
        from_dict(VmBundle, _xml_to_dict(entry, NMB_NS, VmBundle), "/vm-bundles/vm-bundle")
        for entry in xmlkit.children(found, NMB_NS, "vm-bundle")
    )

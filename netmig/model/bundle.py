"""The canonical per-VM bundle (netmig-vm-bundle ``vm-bundle``): identity, static policies and DI.

Lists are kept sorted by key, so equal bundles compare equal whatever order their parts came in.
:func:`to_dict` and :func:`from_dict` give the RFC 7951 JSON shape of one ``vm-bundle`` entry.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum, StrEnum
from functools import cache
from typing import Any, TypeVar

from netmig.errors import BundleError
from netmig.model.dynamic import ArpEntry, DhcpBinding, FirewallSession, MacEntry, NatSession, NdEntry
from netmig.model.policy import (
    UINT64,
    Acl,
    FirewallRule,
    LbMember,
    NatStatic,
    PortProfile,
    QosProfile,
    check_int,
    check_name,
    norm_ip,
    norm_mac,
    sorted_unique,
)

__all__ = [
    "DynamicInfo",
    "FieldShape",
    "PolicyKind",
    "StaticPolicies",
    "VmBundle",
    "VmIdentity",
    "from_dict",
    "merge",
    "shape",
    "to_dict",
]

T = TypeVar("T")


class PolicyKind(StrEnum):
    """One kind of policy in a bundle, named like its list or container in netmig-vm-bundle."""

    ACL = "acl"
    QOS = "qos"
    PORT_PROFILE = "port-profile"
    NAT_STATIC = "nat-static"
    FIREWALL_RULE = "firewall-rule"
    LB_MEMBER = "lb-member"
    MAC_ENTRY = "mac-entry"
    ARP_ENTRY = "arp-entry"
    ND_ENTRY = "nd-entry"
    DHCP_BINDING = "dhcp-binding"
    NAT_SESSION = "nat-session"
    FIREWALL_SESSION = "firewall-session"

    @property
    def attr(self) -> str:
        """The Python field holding this kind in StaticPolicies or DynamicInfo."""
        return self.value.replace("-", "_")

    @property
    def is_dynamic(self) -> bool:
        return self in _DYNAMIC


_DYNAMIC = frozenset({PolicyKind.MAC_ENTRY, PolicyKind.ARP_ENTRY, PolicyKind.ND_ENTRY,
                      PolicyKind.DHCP_BINDING, PolicyKind.NAT_SESSION, PolicyKind.FIREWALL_SESSION})


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _key(item: Any) -> Any:
    return item.key


@dataclass(frozen=True, slots=True)
class VmIdentity:
    """Who the VM is and where it is attached."""

    tenant: str | None = None
    segment: int | None = None
    vni: int | None = None
    mac: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()
    host: str | None = None

    def __post_init__(self) -> None:
        if self.tenant is not None:
            check_name(self.tenant, "identity/tenant", pattern=False)
        check_int(self.segment, "identity/segment", 1, 4094)
        check_int(self.vni, "identity/vni", 1, 16777215)
        _set(self, "mac", sorted_unique((norm_mac(m, "identity/mac") for m in self.mac), str, "identity/mac"))
        _set(self, "ip", sorted_unique((norm_ip(a, "identity/ip") for a in self.ip), str, "identity/ip"))
        if self.host is not None:
            check_name(self.host, "identity/host", max_len=253, pattern=False)


@dataclass(frozen=True, slots=True)
class StaticPolicies:
    """Configuration that follows the VM; empty qos/port-profile containers become None."""

    acl: tuple[Acl, ...] = ()
    qos: QosProfile | None = None
    port_profile: PortProfile | None = None
    nat_static: tuple[NatStatic, ...] = ()
    firewall_rule: tuple[FirewallRule, ...] = ()
    lb_member: tuple[LbMember, ...] = ()

    def __post_init__(self) -> None:
        for name in ("acl", "nat_static", "firewall_rule", "lb_member"):
            _set(self, name, sorted_unique(getattr(self, name), _key, f"static/{name.replace('_', '-')}"))
        for name in ("qos", "port_profile"):
            value = getattr(self, name)
            if value is not None and all(getattr(value, f.name) is None for f in fields(value)):
                _set(self, name, None)


@dataclass(frozen=True, slots=True)
class DynamicInfo:
    """State devices learned about the VM."""

    mac_entry: tuple[MacEntry, ...] = ()
    arp_entry: tuple[ArpEntry, ...] = ()
    nd_entry: tuple[NdEntry, ...] = ()
    dhcp_binding: tuple[DhcpBinding, ...] = ()
    nat_session: tuple[NatSession, ...] = ()
    firewall_session: tuple[FirewallSession, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            where = f"dynamic/{f.name.replace('_', '-')}"
            _set(self, f.name, sorted_unique(getattr(self, f.name), _key, where))


@dataclass(frozen=True, slots=True)
class VmBundle:
    """Everything the network holds for one VM."""

    vm_id: str
    identity: VmIdentity = field(default_factory=VmIdentity)
    static: StaticPolicies = field(default_factory=StaticPolicies)
    dynamic: DynamicInfo = field(default_factory=DynamicInfo)

    def __post_init__(self) -> None:
        check_name(self.vm_id, "vm-bundle/vm-id")

    def entries(self, kind: PolicyKind) -> tuple[Any, ...]:
        """The entries of one kind (qos and port-profile give zero or one)."""
        value = getattr(self.dynamic if kind.is_dynamic else self.static, kind.attr)
        if isinstance(value, tuple):
            return value
        return () if value is None else (value,)

    def counts(self) -> dict[PolicyKind, int]:
        """How many entries of each kind the bundle holds."""
        return {kind: len(self.entries(kind)) for kind in PolicyKind}

    def kinds(self) -> frozenset[PolicyKind]:
        """The kinds with at least one entry."""
        return frozenset(k for k, n in self.counts().items() if n)

    def only(self, kinds: Iterable[PolicyKind]) -> VmBundle:
        """The same VM with only the given kinds of policy."""
        keep = frozenset(kinds)
        static = {k.attr: _empty(k) for k in PolicyKind if not k.is_dynamic and k not in keep}
        dynamic = {k.attr: () for k in PolicyKind if k.is_dynamic and k not in keep}
        return replace(self, static=replace(self.static, **static), dynamic=replace(self.dynamic, **dynamic))

    def without(self, kinds: Iterable[PolicyKind]) -> VmBundle:
        """The same VM without the given kinds of policy."""
        drop = frozenset(kinds)
        return self.only(k for k in PolicyKind if k not in drop)


def _empty(kind: PolicyKind) -> Any:
    return None if kind in (PolicyKind.QOS, PolicyKind.PORT_PROFILE) else ()


# ---------------------------------------------------------------------------------------------- merge

def merge(bundles: Iterable[VmBundle]) -> VmBundle:
    """Combine parts of one VM's bundle read from several devices.

    The same entry seen twice is kept once (timers keep the freshest value: least age, longest expiry);
    two different values for one key are contradictory and raise BundleError naming the path.
    """
    parts = list(bundles)
    if not parts:
        raise BundleError("merge: no bundles to merge")
    vm_ids = {b.vm_id for b in parts}
    if len(vm_ids) > 1:
        raise BundleError(f"merge: bundles of different VMs: {', '.join(sorted(vm_ids))}")
    vm = parts[0].vm_id
    identity = _merge_record([b.identity for b in parts], f"vm-bundle[{vm}]/identity")
    static: dict[str, Any] = {}
    dynamic: dict[str, Any] = {}
    for kind in PolicyKind:
        path = f"vm-bundle[{vm}]/{'dynamic' if kind.is_dynamic else 'static'}/{kind.value}"
        if kind in (PolicyKind.QOS, PolicyKind.PORT_PROFILE):
            present = [e for b in parts for e in b.entries(kind)]
            static[kind.attr] = _merge_record(present, path) if present else None
            continue
        target = dynamic if kind.is_dynamic else static
        target[kind.attr] = _merge_list([e for b in parts for e in b.entries(kind)], path)
    return VmBundle(vm, identity, StaticPolicies(**static), DynamicInfo(**dynamic))


def _merge_record(records: list[T], path: str) -> T:
    """Field-wise union of records; scalars must agree, tuples (leaf-lists) are united."""
    values: dict[str, Any] = {}
    for record in records:
        for f in fields(record):  # type: ignore[arg-type]
            value = getattr(record, f.name)
            if isinstance(value, tuple):
                values[f.name] = tuple(sorted(set(values.get(f.name, ())) | set(value)))
            elif value is not None:
                old = values.get(f.name)
                if old is not None and old != value:
                    where = f"{path}/{f.name.replace('_', '-')}"
                    raise BundleError(f"{where}: contradictory values {old} and {value}")
                values[f.name] = value
    return replace(records[0], **values)  # type: ignore[type-var]


def _merge_list(items: list[Any], path: str) -> tuple[Any, ...]:
    by_key: dict[Any, Any] = {}
    for item in items:
        old = by_key.get(item.key)
        if old is None or old == item:
            by_key[item.key] = item
            continue
        timers = getattr(item, "TIMERS", ())
        strip = {t: None for t in timers}
        if not timers or replace(old, **strip) != replace(item, **strip):
            raise BundleError(f"{path}[{_key_str(item.key)}]: contradictory entries {old} and {item}")
        fresh = {t: _fresher(t, getattr(old, t), getattr(item, t)) for t in timers}
        by_key[item.key] = replace(item, **fresh)
    return tuple(by_key.values())


def _key_str(key: Any) -> str:
    return " ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def _fresher(timer: str, a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a, b) if timer.startswith("age") else max(a, b)


# ----------------------------------------------------------------------------------------- JSON shape

@dataclass(frozen=True, slots=True)
class FieldShape:
    """How one dataclass field appears in YANG data."""

    attr: str
    yang: str
    scalar: type | None       # int, str or a StrEnum for leaves and leaf-lists
    record: type | None       # the nested dataclass for containers and lists
    many: bool                # list or leaf-list


def shape(cls: type) -> tuple[FieldShape, ...]:
    """The YANG shape of a model dataclass, read from its type hints (keys first, as declared)."""
    return _shape(cls)


@cache
def _shape(cls: Any) -> tuple[FieldShape, ...]:
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        many = typing.get_origin(hint) is tuple
        if many:
            hint = typing.get_args(hint)[0]
        if isinstance(hint, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        is_record = dataclasses.is_dataclass(hint)
        result.append(FieldShape(f.name, f.name.replace("_", "-"), None if is_record else hint,
                                 hint if is_record else None, many))
    return tuple(result)


def to_dict(obj: Any) -> dict[str, Any]:
    """RFC 7951 JSON object of a model dataclass (uint64 as string, absent leaves left out)."""
    out: dict[str, Any] = {}
    for fs in shape(type(obj)):
        value = getattr(obj, fs.attr)
        if value is None or value == ():
            continue
        if fs.record is not None:
            encoded: Any = [to_dict(v) for v in value] if fs.many else to_dict(value)
            if encoded in ({}, []):
                continue
        elif fs.many:
            encoded = [_scalar_out(v) for v in value]
        else:
            encoded = _scalar_out(value, uint64=fs.attr == "rate_bps")
        out[fs.yang] = encoded
    return out


def _scalar_out(value: Any, *, uint64: bool = False) -> Any:
    if isinstance(value, Enum):
        return value.value
    return str(value) if uint64 else value


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build a model dataclass from its RFC 7951 JSON object (or the same shape with string leaves)."""
    if not isinstance(data, Mapping):
        raise BundleError(f"{path or '/'}: expected an object, got {type(data).__name__}")
    shapes = {fs.yang: fs for fs in shape(cls)}
    unknown = sorted(set(data) - set(shapes))
    if unknown:
        raise BundleError(f"{path or '/'}: unknown member {unknown[0]!r}")
    kwargs: dict[str, Any] = {}
    for name, raw in data.items():
        fs = shapes[name]
        where = f"{path}/{name}"
        if fs.many:
            if not isinstance(raw, list):
                raise BundleError(f"{where}: expected a list")
            kwargs[fs.attr] = tuple(_load(fs, item, where) for item in raw)
        else:
            kwargs[fs.attr] = _load(fs, raw, where)
    try:
        return cls(**kwargs)
    except BundleError as exc:
        parent, _, last = path.rpartition("/")
        text = str(exc)
        if last and (text.startswith(f"{last}[") or text.startswith(f"{last}/")):
            raise BundleError(f"{parent}/{text}") from exc
        raise BundleError(f"{path}/{text}" if path else text) from exc


def _load(fs: FieldShape, raw: Any, path: str) -> Any:
    if fs.record is not None:
        return from_dict(fs.record, raw, path)
    if fs.scalar is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise BundleError(f"{path}: {raw!r} is not an integer")
        try:
            value = int(raw)
        except ValueError as exc:
            raise BundleError(f"{path}: {raw!r} is not an integer") from exc
        check_int(value, path, 0, UINT64)
        return value
    if not isinstance(raw, str):
        raise BundleError(f"{path}: {raw!r} is not a string")
    return raw

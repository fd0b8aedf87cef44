"""Static policies of the canonical per-VM bundle (netmig-vm-bundle ``static``) and value checks.

Every class validates and normalises its values on construction (lower-case MACs, canonical IP text,
prefixes with zero host bits) and raises :class:`netmig.errors.BundleError` naming the field's path.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from netmig.errors import BundleError

__all__ = [
    "Acl",
    "AclRule",
    "Action",
    "Direction",
    "FirewallRule",
    "LbMember",
    "NatStatic",
    "PortProfile",
    "Protocol",
    "QosProfile",
    "check_int",
    "check_name",
    "norm_ip",
    "norm_ipv4",
    "norm_ipv4_prefix",
    "norm_ipv6",
    "norm_mac",
    "sorted_unique",
    "to_enum",
]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}\Z")
UINT16 = 0xFFFF
UINT32 = 0xFFFFFFFF
UINT64 = 0xFFFFFFFFFFFFFFFF

T = TypeVar("T")
K = TypeVar("K")
E = TypeVar("E", bound=StrEnum)


class Action(StrEnum):
    """What a rule does with matching traffic."""

    PERMIT = "permit"
    DENY = "deny"


class Protocol(StrEnum):
    """IP protocol a rule matches."""

    ANY = "any"
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


class Direction(StrEnum):
    """Direction an ACL filters, seen from the VM's port."""

    INGRESS = "ingress"
    EGRESS = "egress"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def to_enum(cls: type[E], value: object, path: str) -> E:
    """``value`` as a member of the string enum ``cls``."""
    try:
        return cls(str(value))
    except ValueError as exc:
        allowed = "|".join(m.value for m in cls)
        raise BundleError(f"{path}: {value!r} is not one of {allowed}") from exc


def norm_mac(value: str, path: str) -> str:
    """A MAC address in lower-case colon form."""
    text = str(value).strip().lower()
    if not _MAC_RE.match(text):
        raise BundleError(f"{path}: {value!r} is not a MAC address")
    return text.replace("-", ":")


def norm_ipv4(value: str, path: str) -> str:
    """Canonical text of an IPv4 address."""
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError as exc:
        raise BundleError(f"{path}: {value!r} is not an IPv4 address") from exc


def norm_ipv6(value: str, path: str) -> str:
    """Canonical (compressed, lower-case) text of an IPv6 address without zone."""
    try:
        return str(ipaddress.IPv6Address(str(value).strip()))
    except ValueError as exc:
        raise BundleError(f"{path}: {value!r} is not an IPv6 address without zone") from exc


def norm_ip(value: str, path: str) -> str:
    """Canonical text of an IPv4 or IPv6 address without zone."""
    text = str(value).strip()
    return norm_ipv6(text, path) if ":" in text else norm_ipv4(text, path)


def norm_ipv4_prefix(value: str, path: str) -> str:
    """An IPv4 prefix ``A.B.C.D/N`` with its host bits cleared (the canonical form of inet:ipv4-prefix)."""
    text = str(value).strip()
    if "/" not in text:
        raise BundleError(f"{path}: {value!r} is not an IPv4 prefix (A.B.C.D/N)")
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError as exc:
        raise BundleError(f"{path}: {value!r} is not an IPv4 prefix") from exc


def check_int(value: int | None, path: str, low: int, high: int) -> None:
    """Refuse an integer outside ``low..high`` (None passes)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"{path}: {value!r} is not an integer")
    if not low <= value <= high:
        raise BundleError(f"{path}: {value} is outside {low}..{high}")


def check_name(value: str, path: str, *, max_len: int = 64, pattern: bool = True) -> None:
    """Refuse a name that is empty, too long or (with ``pattern``) not [A-Za-z0-9][A-Za-z0-9._-]*."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise BundleError(f"{path}: {value!r} must be a string of 1..{max_len} characters")
    if pattern and not _NAME_RE.match(value):
        raise BundleError(f"{path}: {value!r} must match [A-Za-z0-9][A-Za-z0-9._-]*")


def sorted_unique(items: Iterable[T], key: Callable[[T], K], path: str) -> tuple[T, ...]:
    """Items sorted by key; a repeated key is an error naming the list and the key."""
    result = tuple(sorted(items, key=key))  # type: ignore[arg-type]
    for before, after in itertools.pairwise(result):
        if key(before) == key(after):
            raise BundleError(f"{path}: duplicate key {_key_text(key(after))}")
    return result


def _key_text(key: Any) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return "[" + " ".join(str(p) for p in parts) + "]"


def _opt(value: str | None, norm: Callable[[str, str], str], path: str) -> str | None:
    return None if value is None else norm(value, path)


def _ports(protocol: Protocol, low: int | None, high: int | None, path: str) -> None:
    check_int(low, f"{path}/destination-port-min", 0, UINT16)
    check_int(high, f"{path}/destination-port-max", 0, UINT16)
    if (low is not None or high is not None) and protocol not in (Protocol.TCP, Protocol.UDP):
        raise BundleError(f"{path}: destination ports need protocol tcp or udp, not {protocol.value}")
    if high is not None and (low is None or high < low):
        raise BundleError(f"{path}/destination-port-max: needs a destination-port-min not above it")


@dataclass(frozen=True, slots=True)
class AclRule:
    """One rule of an ACL; rules are evaluated by ascending sequence."""

    sequence: int
    action: Action
    protocol: Protocol = Protocol.ANY
    source_prefix: str | None = None
    destination_prefix: str | None = None
    destination_port_min: int | None = None
    destination_port_max: int | None = None

    def __post_init__(self) -> None:
        path = f"rule[{self.sequence}]"
        check_int(self.sequence, f"{path}/sequence", 0, UINT32)
        _set(self, "action", to_enum(Action, self.action, f"{path}/action"))
        _set(self, "protocol", to_enum(Protocol, self.protocol, f"{path}/protocol"))
        _set(self, "source_prefix", _opt(self.source_prefix, norm_ipv4_prefix, f"{path}/source-prefix"))
        _set(self, "destination_prefix",
             _opt(self.destination_prefix, norm_ipv4_prefix, f"{path}/destination-prefix"))
        _ports(self.protocol, self.destination_port_min, self.destination_port_max, path)

    @property
    def key(self) -> int:
        return self.sequence


@dataclass(frozen=True, slots=True)
class Acl:
    """An access control list on the VM's port; ``name`` is unqualified (devices use VM.NAME)."""

    name: str
    direction: Direction
    rule: tuple[AclRule, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "acl/name")
        _set(self, "direction", to_enum(Direction, self.direction, f"acl[{self.name}]/direction"))
        _set(self, "rule", sorted_unique(self.rule, lambda r: r.sequence, f"acl[{self.name}]/rule"))

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class QosProfile:
    """Rate limit (bit/s), burst (bytes) and DSCP marking."""

    rate_bps: int | None = None
    burst_bytes: int | None = None
    dscp: int | None = None

    def __post_init__(self) -> None:
        check_int(self.rate_bps, "qos/rate-bps", 0, UINT64)
        check_int(self.burst_bytes, "qos/burst-bytes", 0, UINT32)
        check_int(self.dscp, "qos/dscp", 0, 63)


@dataclass(frozen=True, slots=True)
class PortProfile:
    """Access VLAN, MTU (bytes) and MAC limit of the VM's port."""

    vlan: int | None = None
    mtu: int | None = None
    max_macs: int | None = None

    def __post_init__(self) -> None:
        check_int(self.vlan, "port-profile/vlan", 1, 4094)
        check_int(self.mtu, "port-profile/mtu", 68, 9216)
        check_int(self.max_macs, "port-profile/max-macs", 1, 4096)


@dataclass(frozen=True, slots=True)
class NatStatic:
    """A static 1:1 NAT mapping of one of the VM's addresses."""

    internal_address: str
    external_address: str

    def __post_init__(self) -> None:
        path = f"nat-static[{self.internal_address}]"
        _set(self, "internal_address", norm_ipv4(self.internal_address, f"{path}/internal-address"))
        _set(self, "external_address", norm_ipv4(self.external_address, f"{path}/external-address"))

    @property
    def key(self) -> str:
        return self.internal_address


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """A firewall rule of the VM; ``name`` is unqualified (devices use VM.NAME)."""

    name: str
    action: Action
    sequence: int | None = None
    from_zone: str | None = None
    to_zone: str | None = None
    protocol: Protocol = Protocol.ANY
    source_prefix: str | None = None
    destination_prefix: str | None = None
    destination_port: int | None = None

    def __post_init__(self) -> None:
        path = f"firewall-rule[{self.name}]"
        check_name(self.name, f"{path}/name")
        _set(self, "action", to_enum(Action, self.action, f"{path}/action"))
        _set(self, "protocol", to_enum(Protocol, self.protocol, f"{path}/protocol"))
        check_int(self.sequence, f"{path}/sequence", 0, UINT32)
        for zone in ("from_zone", "to_zone"):
            value = getattr(self, zone)
            if value is not None:
                check_name(value, f"{path}/{zone.replace('_', '-')}", pattern=False)
        _set(self, "source_prefix", _opt(self.source_prefix, norm_ipv4_prefix, f"{path}/source-prefix"))
        _set(self, "destination_prefix",
             _opt(self.destination_prefix, norm_ipv4_prefix, f"{path}/destination-prefix"))
        check_int(self.destination_port, f"{path}/destination-port", 0, UINT16)
        if self.destination_port is not None and self.protocol not in (Protocol.TCP, Protocol.UDP):
            proto = self.protocol.value
            raise BundleError(f"{path}/destination-port: needs protocol tcp or udp, not {proto}")

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class LbMember:
    """Membership of the VM in a load-balancer pool."""

    pool: str
    address: str
    port: int
    weight: int = 1

    def __post_init__(self) -> None:
        path = f"lb-member[{self.pool}]"
        check_name(self.pool, f"{path}/pool", pattern=False)
        _set(self, "address", norm_ipv4(self.address, f"{path}/address"))
        check_int(self.port, f"{path}/port", 0, UINT16)
        check_int(self.weight, f"{path}/weight", 1, 100)

    @property
    def key(self) -> str:
        return self.pool

"""Dynamic information (DI) of the canonical per-VM bundle (netmig-vm-bundle ``dynamic``).

Timer leaves (``age_s``, ``expiry_s``, ``lease_expiry_s``) are listed in each class's ``TIMERS`` so that
merging the same entry seen on two devices can keep the freshest timer instead of calling it a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from netmig.model.policy import (
    UINT16,
    UINT32,
    check_int,
    check_name,
    norm_ip,
    norm_ipv4,
    norm_ipv6,
    norm_mac,
    to_enum,
)

__all__ = [
    "ArpEntry",
    "DhcpBinding",
    "FirewallSession",
    "MacEntry",
    "NatSession",
    "NdEntry",
    "SessionProtocol",
    "SessionState",
]


class SessionProtocol(StrEnum):
    """Protocol of a NAT or firewall session."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


class SessionState(StrEnum):
    """State of a stateful firewall session."""

    NEW = "new"
    ESTABLISHED = "established"
    CLOSING = "closing"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _opt_mac(value: str | None, path: str) -> str | None:
    return None if value is None else norm_mac(value, path)


@dataclass(frozen=True, slots=True)
class MacEntry:
    """A MAC table entry; ``age_s`` is the time since it was last refreshed."""

    TIMERS: ClassVar[tuple[str, ...]] = ("age_s",)

    mac: str
    vlan: int
    port: str | None = None
    age_s: int | None = None

    def __post_init__(self) -> None:
        path = f"mac-entry[{self.mac} {self.vlan}]"
        _set(self, "mac", norm_mac(self.mac, f"{path}/mac"))
        check_int(self.vlan, f"{path}/vlan", 1, 4094)
        if self.port is not None:
            check_name(self.port, f"{path}/port", pattern=False)
        check_int(self.age_s, f"{path}/age-s", 0, UINT32)

    @property
    def key(self) -> tuple[str, int]:
        return (self.mac, self.vlan)


@dataclass(frozen=True, slots=True)
class ArpEntry:
    """An IPv4 ARP entry."""

    TIMERS: ClassVar[tuple[str, ...]] = ("expiry_s",)

    ip: str
    mac: str | None = None
    expiry_s: int | None = None

    def __post_init__(self) -> None:
        path = f"arp-entry[{self.ip}]"
        _set(self, "ip", norm_ipv4(self.ip, f"{path}/ip"))
        _set(self, "mac", _opt_mac(self.mac, f"{path}/mac"))
        check_int(self.expiry_s, f"{path}/expiry-s", 0, UINT32)

    @property
    def key(self) -> str:
        return self.ip


@dataclass(frozen=True, slots=True)
class NdEntry:
    """An IPv6 neighbor discovery entry."""

    TIMERS: ClassVar[tuple[str, ...]] = ("expiry_s",)

    ip: str
    mac: str | None = None
    expiry_s: int | None = None

    def __post_init__(self) -> None:
        path = f"nd-entry[{self.ip}]"
        _set(self, "ip", norm_ipv6(self.ip, f"{path}/ip"))
        _set(self, "mac", _opt_mac(self.mac, f"{path}/mac"))
        check_int(self.expiry_s, f"{path}/expiry-s", 0, UINT32)

    @property
    def key(self) -> str:
        return self.ip


@dataclass(frozen=True, slots=True)
class DhcpBinding:
    """A DHCP-snooping binding."""

    TIMERS: ClassVar[tuple[str, ...]] = ("lease_expiry_s",)

    mac: str
    ip: str | None = None
    vlan: int | None = None
    port: str | None = None
    lease_expiry_s: int | None = None

    def __post_init__(self) -> None:
        path = f"dhcp-binding[{self.mac}]"
        _set(self, "mac", norm_mac(self.mac, f"{path}/mac"))
        _set(self, "ip", None if self.ip is None else norm_ipv4(self.ip, f"{path}/ip"))
        check_int(self.vlan, f"{path}/vlan", 1, 4094)
        if self.port is not None:
            check_name(self.port, f"{path}/port", pattern=False)
        check_int(self.lease_expiry_s, f"{path}/lease-expiry-s", 0, UINT32)

    @property
    def key(self) -> str:
        return self.mac


@dataclass(frozen=True, slots=True)
class NatSession:
    """A dynamic NAT translation of one of the VM's flows."""

    TIMERS: ClassVar[tuple[str, ...]] = ("expiry_s",)

    protocol: SessionProtocol
    internal_address: str
    internal_port: int
    external_address: str | None = None
    external_port: int | None = None
    remote_address: str | None = None
    remote_port: int | None = None
    expiry_s: int | None = None

    def __post_init__(self) -> None:
        path = f"nat-session[{self.protocol} {self.internal_address} {self.internal_port}]"
        _set(self, "protocol", to_enum(SessionProtocol, self.protocol, f"{path}/protocol"))
        _set(self, "internal_address", norm_ipv4(self.internal_address, f"{path}/internal-address"))
        for name in ("external_address", "remote_address"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, norm_ipv4(value, f"{path}/{name.replace('_', '-')}"))
        for name in ("internal_port", "external_port", "remote_port"):
            check_int(getattr(self, name), f"{path}/{name.replace('_', '-')}", 0, UINT16)
        check_int(self.expiry_s, f"{path}/expiry-s", 0, UINT32)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol.value, self.internal_address, self.internal_port)


@dataclass(frozen=True, slots=True)
class FirewallSession:
    """A stateful firewall connection of the VM."""

    TIMERS: ClassVar[tuple[str, ...]] = ("expiry_s",)

    protocol: SessionProtocol
    source_address: str
    source_port: int
    destination_address: str
    destination_port: int
    state: SessionState | None = None
    expiry_s: int | None = None

    def __post_init__(self) -> None:
        path = (f"firewall-session[{self.protocol} {self.source_address} {self.source_port} "
                f"{self.destination_address} {self.destination_port}]")
        _set(self, "protocol", to_enum(SessionProtocol, self.protocol, f"{path}/protocol"))
        _set(self, "source_address", norm_ip(self.source_address, f"{path}/source-address"))
        _set(self, "destination_address", norm_ip(self.destination_address, f"{path}/destination-address"))
        check_int(self.source_port, f"{path}/source-port", 0, UINT16)
        check_int(self.destination_port, f"{path}/destination-port", 0, UINT16)
        if self.state is not None:
            _set(self, "state", to_enum(SessionState, self.state, f"{path}/state"))
        check_int(self.expiry_s, f"{path}/expiry-s", 0, UINT32)

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        return (self.protocol.value, self.source_address, self.source_port,
                self.destination_address, self.destination_port)

"""The fabric file's validated form: the frozen spec objects a fabric is built from, and FabricError.

:func:`netconf_sim.fabricfile.load_fabric` turns a fabric file into a :class:`FabricSpec`; every
problem it finds is one line of a :class:`FabricError`. Pure data, no I/O; import these names from
:mod:`netconf_sim.fabricfile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from netconf_sim.faults import FaultRule
from netconf_sim.nacm import NacmConfig

__all__ = [
    "DI_KINDS",
    "DeviceSpec",
    "FabricError",
    "FabricSpec",
    "HostAttachment",
    "UserSpec",
    "VmSeed",
]

DI_KINDS = ("mac-entry", "arp-entry", "nd-entry", "dhcp-binding", "nat-session", "firewall-session")


class FabricError(Exception):
    """A fabric file is invalid; ``problems`` holds one ``FILE:LINE: path: problem`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class VmSeed:
    """A VM attached to a device: what the device's learned tables are built from."""

    vm_id: str
    port: str | None = None
    tenant: str | None = None
    vlan: int | None = None
    macs: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    nat_address: str | None = None
    learned: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserSpec:
    """One account of a device (password authentication) and its groups (for NACM)."""

    username: str
    password: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device as the fabric file describes it."""

    name: str
    profile: str
    username: str
    password: str
    port: int = 0
    authorized_keys: tuple[Path, ...] = ()
    features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    config: etree._Element | None = None
    deviations: tuple[Path, ...] = ()  # YANG files of deviation modules this device implements
    ports: tuple[str, ...] = ()
    vms: tuple[VmSeed, ...] = ()
    faults: tuple[FaultRule, ...] = ()      # per-rpc faults armed at start
    locks_held: tuple[str, ...] = ()        # datastores a fake session holds locked at start
    users: tuple[UserSpec, ...] = ()        # every account, the primary (username/password) first
    nacm: NacmConfig | None = None          # RFC 8341 access control (netconf_sim.nacm); None: off

    @property
    def accounts(self) -> tuple[UserSpec, ...]:
        """Every account of the device, the primary one first."""
        return self.users or (UserSpec(self.username, self.password),)


@dataclass(frozen=True, slots=True)
class HostAttachment:
    """A hypervisor host's link to one device port."""

    host: str
    device: str
    port: str


@dataclass(frozen=True, slots=True)
class FabricSpec:
    """A validated fabric: its devices in file order and its hosts."""

    devices: tuple[DeviceSpec, ...]
    hosts: tuple[HostAttachment, ...] = ()
    source: str = "<dict>"

    def device(self, name: str) -> DeviceSpec:
        """The device called ``name``; KeyError if there is none."""
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise KeyError(name)

"""Typed topology: devices, hosts, sites, VM hints, site-to-site mapping and the partner map rules.

These mirror the YANG module ``netmig-topology`` (leaf names with ``-`` turned into ``_``). They hold
no secrets: a device's credentials name where the secret is, and :func:`resolve_password` reads it
when netmig connects.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from netmig.errors import InputError
from netmig.model import PolicyKind
from netmig.quirks import quirk_profile
from netmig.settings import QuirkProfile

__all__ = [
    "Codec",
    "Credentials",
    "Device",
    "Host",
    "PartnerRule",
    "PolicyKind",
    "QuirkProfile",
    "Role",
    "Site",
    "SiteMapping",
    "Topology",
    "VmHint",
    "build_topology",
    "resolve_password",
]


class Role(StrEnum):
    """What a device is in the fabric."""

    LEAF = "leaf"
    SPINE = "spine"
    FIREWALL = "firewall"
    NAT = "nat"
    LB = "lb"


class Codec(StrEnum):
    """Device model a device speaks."""

    IETF = "ietf"
    ACME = "acme"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where a device's SSH secret comes from; exactly one of the three sources is set."""

    username: str
    password_env: str | None = None
    key_file: Path | None = None
    ssh_agent: bool = False

    @property
    def method(self) -> str:
        """``password-env``, ``key-file`` or ``ssh-agent``."""
        if self.password_env is not None:
            return "password-env"
        if self.key_file is not None:
            return "key-file"
        return "ssh-agent"


def resolve_password(credentials: Credentials, environ: Mapping[str, str] | None = None) -> str:
    """Read the password named by ``password-env`` from the environment (``os.environ`` by default).

    Raises:
        InputError: the credentials are not password based, or the variable is unset or empty.
    """
    if credentials.password_env is None:
        raise InputError(
            f"user {credentials.username!r} authenticates by {credentials.method}, not a password"
        )
    env = os.environ if environ is None else environ
    value = env.get(credentials.password_env)
    if not value:
        raise InputError(
            f"environment variable {credentials.password_env} is not set; "
            f"it must hold the password of user {credentials.username!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Device:
    """A NETCONF device that may hold a VM's policies."""

    name: str
    address: str
    port: int
    site: str
    role: Role
    codec: Codec
    credentials: Credentials
    ports: tuple[str, ...] = ()
    known_hosts: Path | None = None  # the device's own file, else the topology's
    quirks: QuirkProfile = field(default_factory=QuirkProfile)

    @property
    def endpoint(self) -> str:
        """``address:port`` (IPv6 addresses in brackets), for messages and connecting."""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Host:
    """A hypervisor host and where it hangs off the fabric."""

    name: str
    site: str
    bridge: str
    port: str


@dataclass(frozen=True, slots=True)
class Site:
    """A site: its upper-layer devices and middleboxes (bridges come from the hosts)."""

    name: str
    upper: tuple[str, ...] = ()
    middleboxes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VmHint:
    """What the topology says about a VM up front (all optional but the id)."""

    vm_id: str
    host: str | None = None
    tenant: str | None = None
    macs: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PartnerRule:
    """Which source devices' policies of some kinds go to which destination devices.

    Sources are named devices or roles; destinations likewise. Exactly one of each pair is non-empty.
    """

    name: str
    kinds: tuple[PolicyKind, ...]
    from_devices: tuple[str, ...] = ()
    from_roles: tuple[Role, ...] = ()
    to_devices: tuple[str, ...] = ()
    to_roles: tuple[Role, ...] = ()

    def covers(self, device: Device, kind: PolicyKind, *, by_name: bool) -> bool:
        """Whether this rule moves ``kind`` from ``device`` (by name, or else by role)."""
        if kind not in self.kinds:
            return False
        return device.name in self.from_devices if by_name else device.role in self.from_roles


@dataclass(frozen=True, slots=True)
class SiteMapping:
    """Renames and partner rules for migrations from one site to another (empty: identity, defaults)."""

    source_site: str
    destination_site: str
    ports: Mapping[str, str] = field(default_factory=dict)
    vlans: Mapping[int, int] = field(default_factory=dict)
    vnis: Mapping[int, int] = field(default_factory=dict)
    vrfs: Mapping[str, str] = field(default_factory=dict)
    zones: Mapping[str, str] = field(default_factory=dict)
    partners: tuple[PartnerRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    """A validated topology with lookups; build it with :func:`netmig.topology.load_topology`."""

    devices: Mapping[str, Device]
    hosts: Mapping[str, Host]
    sites: Mapping[str, Site]
    vms: Mapping[str, VmHint] = field(default_factory=dict)
    nat_pools: Mapping[str, ipaddress.IPv4Network] = field(default_factory=dict)
    mappings: Mapping[tuple[str, str], SiteMapping] = field(default_factory=dict)
    known_hosts: Path | None = None
    source: str = "<topology>"

    def device(self, name: str) -> Device:
        """The device called ``name``; raises InputError naming it if unknown."""
        try:
            return self.devices[name]
        except KeyError:
            raise InputError(f"{self.source}: unknown device {name!r}") from None

    def host(self, name: str) -> Host:
        """The host called ``name``; raises InputError naming it if unknown."""
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise InputError(f"{self.source}: unknown host {name!r} (known hosts: {known})") from None

    def site(self, name: str) -> Site:
        """The site called ``name`` (a site only named by devices has no upper layer or middleboxes)."""
        return self.sites.get(name, Site(name))

    def mapping(self, source_site: str, destination_site: str) -> SiteMapping:
        """Rules from ``source_site`` to ``destination_site``; identity and default partners if none."""
        found = self.mappings.get((source_site, destination_site))
        return found if found is not None else SiteMapping(source_site, destination_site)

    def devices_for_host(self, name: str) -> tuple[Device, ...]:
        """Devices that may hold policies of a VM on host ``name``: bridge, upper layer, middleboxes."""
        host = self.host(name)
        site = self.site(host.site)
        names = dict.fromkeys((host.bridge, *site.upper, *site.middleboxes))
        return tuple(self.devices[n] for n in names)

    def known_hosts_for(self, device: Device) -> Path | None:
        """The known_hosts file to check ``device``'s host key with."""
        return device.known_hosts if device.known_hosts is not None else self.known_hosts

    def devices_at(self, site: str) -> tuple[Device, ...]:
        """All devices at ``site``."""
        return tuple(d for d in self.devices.values() if d.site == site)


def build_topology(raw: Mapping[str, Any], *, source: str, base_dir: Path) -> Topology:
    """Typed Topology from validated RFC 7951 JSON of the ``topology`` container (defaults added)."""
    global_known_hosts = _path(raw.get("known-hosts"), base_dir)
    devices = {d["name"]: _device(d, base_dir, global_known_hosts) for d in raw.get("devices", [])}
    hosts = {h["name"]: Host(h["name"], h["site"], h["bridge"], h["port"]) for h in raw.get("hosts", [])}
    sites = {
        s["name"]: Site(s["name"], tuple(s.get("upper", ())), tuple(s.get("middleboxes", ())))
        for s in raw.get("sites", [])
    }
    vms = {
        v["vm-id"]: VmHint(
            v["vm-id"], v.get("host"), v.get("tenant"), tuple(v.get("macs", ())), tuple(v.get("ips", ()))
        )
        for v in raw.get("vms", [])
    }
    mapping = raw.get("mapping", {})
    pools = {
        p["site"]: ipaddress.IPv4Network(p["prefix"], strict=False) for p in mapping.get("nat-pools", [])
    }
    pairs: dict[tuple[str, str], SiteMapping] = {}
    for source_entry in mapping.get("from", []):
        for to in source_entry.get("to", []):
            pair = (source_entry["site"], to["site"])
            pairs[pair] = SiteMapping(
                *pair,
                ports=_renames(to, "ports", str),
                vlans=_renames(to, "vlans", int),
                vnis=_renames(to, "vnis", int),
                vrfs=_renames(to, "vrfs", str),
                zones=_renames(to, "zones", str),
                partners=tuple(_rule(r) for r in to.get("partners", [])),
            )
    return Topology(devices, hosts, sites, vms, pools, pairs, global_known_hosts, source)


def _path(value: str | None, base_dir: Path) -> Path | None:
    return None if value is None else base_dir / Path(value).expanduser()


def _device(raw: Mapping[str, Any], base_dir: Path, known_hosts: Path | None) -> Device:
    credentials = Credentials(
        raw["username"],
        password_env=raw.get("password-env"),
        key_file=_path(raw.get("key-file"), base_dir),
        ssh_agent=bool(raw.get("ssh-agent", False)),
    )
    quirks = _quirks(raw["name"], raw.get("quirks", {}))
    return Device(
        raw["name"],
        raw["address"],
        int(raw.get("port", 830)),
        raw["site"],
        Role(raw["role"]),
        Codec(raw["codec"]),
        credentials,
        tuple(raw.get("ports", ())),
        _path(raw.get("known-hosts"), base_dir) or known_hosts,
        quirks,
    )


# quirks leaf -> QuirkProfile field and its type; a leaf given in the topology overrides the profile's value
_QUIRK_LEAVES: dict[str, tuple[str, Callable[[Any], object]]] = {
    "validate": ("validate", str),
    "confirmed-timer-needs-quiet-s": ("confirmed_timer_needs_quiet_s", float),
    "commit-blocked-while-confirm-pending": ("commit_blocked_while_confirm_pending", bool),
}


def _quirks(device: str, raw: Mapping[str, Any]) -> QuirkProfile:
    """The device's named quirk profile (``rfc6241`` if none) with the leaves it gives overriding it."""
    overrides = {attr: kind(raw[leaf]) for leaf, (attr, kind) in _QUIRK_LEAVES.items() if leaf in raw}
    try:
        return quirk_profile(str(raw.get("profile", "rfc6241")), **overrides)
    except (KeyError, ValueError) as exc:  # the loader rejects unknown names first; raw JSON may not
        raise InputError(f"device {device!r}: quirks: {exc.args[0] if exc.args else exc}") from None


def _renames(raw: Mapping[str, Any], name: str, kind: type[Any]) -> dict[Any, Any]:
    return {kind(entry["source"]): kind(entry["destination"]) for entry in raw.get(name, [])}


def _rule(raw: Mapping[str, Any]) -> PartnerRule:
    return PartnerRule(
        raw["name"],
        tuple(PolicyKind(k) for k in raw.get("kinds", ())),
        tuple(raw.get("from-devices", ())),
        tuple(Role(r) for r in raw.get("from-roles", ())),
        tuple(raw.get("to-devices", ())),
        tuple(Role(r) for r in raw.get("to-roles", ())),
    )

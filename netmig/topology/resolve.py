"""Resolve a migration request (vm, from-host, to-host) against the topology into a MigrationPlan.

The plan names the source devices (the source host's bridge plus its site's upper-layer devices and
middleboxes), the destination devices likewise, the VM's ports on both bridges, the renames between
the two sites and the partner map: for each source device and policy kind, the destination devices.

Partner rules, most specific first: a rule naming the source device, then a rule naming its role,
then the default (destination devices with the same role). A rule's destinations the VM does not land
behind (e.g. another leaf than its new bridge) are dropped; if none remains the default applies. A
(device, kind) with no destination at all is listed in ``MigrationPlan.unplaced``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from netmig.errors import InputError, TranslationError, UnknownVmError
from netmig.topology.model import Device, Host, PartnerRule, PolicyKind, SiteMapping, Topology, VmHint

__all__ = ["Attachment", "MigrationPlan", "resolve"]

log = logging.getLogger(__name__)

PartnerMap = Mapping[tuple[str, PolicyKind], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Attachment:
    """Where a VM hangs off the fabric: host, site, bridge device and bridge port."""

    host: Host
    bridge: Device

    @property
    def site(self) -> str:
        return self.host.site

    @property
    def port(self) -> str:
        return self.host.port


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """Everything the later stages need to know about one VM's move, with no I/O."""

    vm_id: str
    source: Attachment
    destination: Attachment
    source_devices: tuple[Device, ...]
    destination_devices: tuple[Device, ...]
    partners: PartnerMap
    mapping: SiteMapping
    source_pool: ipaddress.IPv4Network | None = None
    destination_pool: ipaddress.IPv4Network | None = None
    vm: VmHint | None = None
    unplaced: tuple[tuple[str, PolicyKind], ...] = ()
    ports: Mapping[str, str] = field(default_factory=dict)

    def device(self, name: str) -> Device:
        """A source or destination device of this plan by name."""
        for device in (*self.source_devices, *self.destination_devices):
            if device.name == name:
                return device
        raise InputError(f"device {name!r} is not part of the migration of {self.vm_id}")

    def partners_of(self, device: str, kind: PolicyKind) -> tuple[str, ...]:
        """Destination devices receiving ``kind`` from source ``device`` (empty if none)."""
        return self.partners.get((device, kind), ())

    def destinations_for(self, kind: PolicyKind) -> tuple[str, ...]:
        """Every destination device that receives ``kind`` from any source device, in plan order."""
        found = {n for (_, k), names in self.partners.items() if k == kind for n in names}
        return tuple(d.name for d in self.destination_devices if d.name in found)

    def sources_for(self, kind: PolicyKind, destination: str) -> tuple[str, ...]:
        """Source devices whose ``kind`` policies go to ``destination`` (many-to-one merges)."""
        return tuple(
            d.name for d in self.source_devices if destination in self.partners.get((d.name, kind), ())
        )

    def map_port(self, port: str) -> str:
        """Destination name of a source port (the VM's own port, then the site mapping's renames)."""
        return self.ports.get(port, port)

    def map_vlan(self, vlan: int) -> int:
        return self.mapping.vlans.get(vlan, vlan)

    def map_vni(self, vni: int) -> int:
        return self.mapping.vnis.get(vni, vni)

    def map_zone(self, zone: str) -> str:
        return self.mapping.zones.get(zone, zone)

    def map_vrf(self, vrf: str) -> str:
        return self.mapping.vrfs.get(vrf, vrf)

    def map_nat_address(self, address: str) -> str:
        """Move a NAT external address into the destination pool, keeping its host part.

        Kept as is when either site has no pool, both share the same pool, or the address is outside
        the source pool. Raises TranslationError when the host part does not fit the destination pool.
        """
        src, dst = self.source_pool, self.destination_pool
        ip = ipaddress.IPv4Address(address)
        if src is None or dst is None or src == dst or ip not in src:
            return address
        offset = int(ip) - int(src.network_address)
        if offset >= dst.num_addresses:
            raise TranslationError(
                f"NAT address {address} (host part {offset} of {src}) does not fit the destination pool {dst}"
            )
        return str(dst.network_address + offset)


def resolve(topology: Topology, vm_id: str, source_host: str, destination_host: str) -> MigrationPlan:
    """Plan moving ``vm_id`` from ``source_host`` to ``destination_host``.

    Raises:
        InputError: a host is unknown, or both hosts are the same.
        UnknownVmError: the topology's vms section places the VM on another host.
    """
    source = _attachment(topology, source_host)
    destination = _attachment(topology, destination_host)
    if source_host == destination_host:
        raise InputError(f"source and destination host are the same ({source_host}): nothing to migrate")
    vm = topology.vms.get(vm_id)
    if vm is not None and vm.host is not None and vm.host != source_host:
        raise UnknownVmError(f"{topology.source}: VM {vm_id} is on host {vm.host}, not on {source_host}")
    source_devices = topology.devices_for_host(source_host)
    destination_devices = topology.devices_for_host(destination_host)
    mapping = topology.mapping(source.site, destination.site)
    partners, unplaced = _partner_map(source_devices, destination_devices, mapping.partners)
    ports = {**mapping.ports, source.port: destination.port}
    log.debug("resolved %s: %s -> %s, %d partner pairs", vm_id, source_host, destination_host, len(partners))
    return MigrationPlan(
        vm_id=vm_id,
        source=source,
        destination=destination,
        source_devices=source_devices,
        destination_devices=destination_devices,
        partners=partners,
        mapping=mapping,
        source_pool=topology.nat_pools.get(source.site),
        destination_pool=topology.nat_pools.get(destination.site),
        vm=vm,
        unplaced=unplaced,
        ports=ports,
    )


def _attachment(topology: Topology, host_name: str) -> Attachment:
    host = topology.host(host_name)
    return Attachment(host, topology.device(host.bridge))


def _partner_map(
    sources: tuple[Device, ...], destinations: tuple[Device, ...], rules: tuple[PartnerRule, ...]
) -> tuple[dict[tuple[str, PolicyKind], tuple[str, ...]], tuple[tuple[str, PolicyKind], ...]]:
    partners: dict[tuple[str, PolicyKind], tuple[str, ...]] = {}
    unplaced: list[tuple[str, PolicyKind]] = []
    for device in sources:
        for kind in PolicyKind:
            rule = _rule_for(device, kind, rules)
            targets = _targets(rule, destinations) if rule is not None else ()
            if not targets:
                targets = tuple(d.name for d in destinations if d.role == device.role)
            if targets:
                partners[(device.name, kind)] = targets
            else:
                unplaced.append((device.name, kind))
    return partners, tuple(unplaced)


def _rule_for(device: Device, kind: PolicyKind, rules: tuple[PartnerRule, ...]) -> PartnerRule | None:
    for by_name in (True, False):
        for rule in rules:
            if rule.covers(device, kind, by_name=by_name):
                return rule
    return None


def _targets(rule: PartnerRule, destinations: tuple[Device, ...]) -> tuple[str, ...]:
    return tuple(d.name for d in destinations if d.name in rule.to_devices or d.role in rule.to_roles)

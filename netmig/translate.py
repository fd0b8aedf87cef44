"""Translate: the canonical bundles pulled from source devices -> one bundle per destination device.

Pure functions, no I/O. The partner map says which destination device(s) receive each policy kind of each
source device (one to many, many to one, a kind moving from a firewall to a leaf); the rules rewrite what
depends on where the VM lands: access VLAN/VNI, firewall zones, the NAT external address pool and the
port names of learned entries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from netmig.errors import TranslationError
from netmig.model import PolicyKind, VmBundle, VmIdentity, merge

__all__ = ["TranslationRules", "rewrite", "route", "translate"]

PartnerMap = Mapping[tuple[str, PolicyKind], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class TranslationRules:
    """How values change between the source and the destination site.

    ``nat_pools`` maps a source external prefix to the destination prefix; an address keeps its host part
    (203.0.113.11 in 203.0.113.0/24 -> 198.51.100.11 in 198.51.100.0/24). Addresses in no listed pool are
    kept as they are (a shared pool). ``destination_port`` is the VM's port on the destination device
    (set for its adjacent bridge); learned entries elsewhere lose their port, which that device learns.
    """

    vlans: Mapping[int, int] = field(default_factory=dict)
    vnis: Mapping[int, int] = field(default_factory=dict)
    zones: Mapping[str, str] = field(default_factory=dict)
    nat_pools: Mapping[str, str] = field(default_factory=dict)
    destination_port: str | None = None
    destination_host: str | None = None

    def vlan(self, value: int | None) -> int | None:
        """The destination VLAN for a source VLAN (unmapped VLANs stay)."""
        return None if value is None else self.vlans.get(value, value)

    def vni(self, value: int | None) -> int | None:
        """The destination VNI for a source VNI (unmapped VNIs stay)."""
        return None if value is None else self.vnis.get(value, value)

    def zone(self, value: str | None) -> str | None:
        """The destination zone name for a source zone name (unmapped zones stay)."""
        return None if value is None else self.zones.get(value, value)

    def nat_address(self, value: str | None) -> str | None:
        """The address with the same host part in the destination pool, if it lies in a mapped pool."""
        if value is None:
            return None
        address = ipaddress.IPv4Address(value)
        for source, destination in self.nat_pools.items():
            src_net = ipaddress.IPv4Network(source, strict=False)
            if address in src_net:
                dst_net = ipaddress.IPv4Network(destination, strict=False)
                if dst_net.prefixlen != src_net.prefixlen:
                    raise TranslationError(f"NAT pools {source} and {destination} differ in size")
                host = int(address) - int(src_net.network_address)
                return str(ipaddress.IPv4Address(int(dst_net.network_address) + host))
        return value


def _map_all(items: Iterable[Any], fn: Callable[[Any], Any]) -> tuple[Any, ...]:
    return tuple(fn(item) for item in items)


def rewrite(bundle: VmBundle, rules: TranslationRules) -> VmBundle:
    """Rewrite site-dependent values of ``bundle`` for the destination site."""
    ident = bundle.identity
    identity = replace(ident, segment=rules.vlan(ident.segment), vni=rules.vni(ident.vni),
                       host=rules.destination_host or ident.host)
    static = bundle.static
    port_profile = static.port_profile
    if port_profile is not None:
        port_profile = replace(port_profile, vlan=rules.vlan(port_profile.vlan))
    static = replace(
        static,
        port_profile=port_profile,
        nat_static=_map_all(static.nat_static,
                            lambda n: replace(n, external_address=rules.nat_address(n.external_address))),
        firewall_rule=_map_all(static.firewall_rule, lambda r: replace(
            r, from_zone=rules.zone(r.from_zone), to_zone=rules.zone(r.to_zone))),
    )
    port = rules.destination_port
    dynamic = bundle.dynamic
    dynamic = replace(
        dynamic,
        mac_entry=_map_all(dynamic.mac_entry, lambda m: replace(
            m, vlan=rules.vlan(m.vlan), port=port if m.port is not None else None)),
        dhcp_binding=_map_all(dynamic.dhcp_binding, lambda d: replace(
            d, vlan=rules.vlan(d.vlan), port=port if d.port is not None else None)),
        nat_session=_map_all(dynamic.nat_session,
                             lambda s: replace(s, external_address=rules.nat_address(s.external_address))),
    )
    return replace(bundle, identity=identity, static=static, dynamic=dynamic)


def route(per_source: Mapping[str, VmBundle], partners: PartnerMap) -> dict[str, VmBundle]:
    """Send each kind of each source device's bundle to its partner destination devices, merged per device.

    A kind a source device holds but the partner map does not place is an error: silently leaving a
    policy behind is exactly what netmig exists to prevent.
    """
    parts: dict[str, list[VmBundle]] = {}
    for source, bundle in sorted(per_source.items()):
        for kind in sorted(bundle.kinds(), key=lambda k: k.value):
            destinations = partners.get((source, kind))
            if not destinations:
                raise TranslationError(
                    f"{source}: holds {kind.value} for {bundle.vm_id} but the partner map sends it nowhere")
            for destination in destinations:
                # identities are set once below; parts differ only in the kinds they carry
                part = replace(bundle.only([kind]), identity=VmIdentity())
                parts.setdefault(destination, []).append(part)
    identity_source = _identity_bundle(per_source)
    routed: dict[str, VmBundle] = {}
    for destination, bundles in parts.items():
        merged = merge(bundles)
        routed[destination] = replace(merged, identity=identity_source.identity)
    return routed


def _identity_bundle(per_source: Mapping[str, VmBundle]) -> VmBundle:
    """The bundle whose identity is the richest (the adjacent bridge's, normally)."""
    def richness(item: tuple[str, VmBundle]) -> tuple[int, str]:
        ident = item[1].identity
        known = (ident.segment is not None) + (ident.tenant is not None)
        return (len(ident.mac) + len(ident.ip) + known, item[0])
    return max(per_source.items(), key=richness)[1]


def translate(per_source: Mapping[str, VmBundle], partners: PartnerMap,
              rules_for: Callable[[str], TranslationRules]) -> dict[str, VmBundle]:
    """Route every source part to its destinations and rewrite it with each destination's rules."""
    return {device: rewrite(bundle, rules_for(device))
            for device, bundle in route(per_source, partners).items()}

"""netmig.translate: routing through the partner map and site-dependent rewrites (pure, no devices)."""

from __future__ import annotations

from typing import Any

import pytest

from netmig.errors import TranslationError
from netmig.model import (
    Acl,
    AclRule,
    Action,
    ArpEntry,
    DhcpBinding,
    Direction,
    DynamicInfo,
    FirewallRule,
    FirewallSession,
    LbMember,
    MacEntry,
    NatSession,
    NatStatic,
    PolicyKind,
    PortProfile,
    QosProfile,
    SessionProtocol,
    StaticPolicies,
    VmBundle,
    VmIdentity,
)
from netmig.translate import TranslationRules, rewrite, route, translate

VM = "vm-web-01"
MAC = "52:54:00:10:00:01"
K = PolicyKind


def leaf_bundle(port: str = "eth3", *, seq: int = 10) -> VmBundle:
    return VmBundle(
        VM,
        VmIdentity(tenant="blue", segment=110, mac=(MAC,), ip=("10.1.10.11",), host="host-a1"),
        StaticPolicies(acl=(Acl("web-in", Direction.INGRESS, (AclRule(seq, Action.PERMIT),)),),
                       qos=QosProfile(rate_bps=200_000_000), port_profile=PortProfile(vlan=110, mtu=1500)),
        DynamicInfo(mac_entry=(MacEntry(MAC, 110, port=port, age_s=5),),
                    arp_entry=(ArpEntry("10.1.10.11", MAC, 100),),
                    dhcp_binding=(DhcpBinding(MAC, "10.1.10.11", 110, port=port, lease_expiry_s=600),)),
    )


def fw_bundle() -> VmBundle:
    return VmBundle(
        VM,
        VmIdentity(ip=("10.1.10.11",)),
        StaticPolicies(
            nat_static=(NatStatic("10.1.10.11", "203.0.113.11"),),
            firewall_rule=(FirewallRule(f"{VM}.allow-https", Action.PERMIT, 10, "outside", "inside"),),
            lb_member=(LbMember("web", "10.1.10.11", 443, 50),),
        ),
        DynamicInfo(nat_session=(NatSession(SessionProtocol.TCP, "10.1.10.11", 40000, "203.0.113.11",
                                            20000),),
                    firewall_session=(FirewallSession(SessionProtocol.TCP, "198.51.100.20", 50000,
                                                      "10.1.10.11", 443),),
                    arp_entry=(ArpEntry("10.1.10.11", MAC, 90),)),
    )


LEAF_KINDS = (K.ACL, K.QOS, K.PORT_PROFILE, K.MAC_ENTRY, K.ARP_ENTRY, K.DHCP_BINDING)


def test_route_many_to_one_merges_two_leaves_into_one() -> None:
    # a VM on a leaf pair: each leaf saw part of it; both parts land on the one leaf at B
    a1 = leaf_bundle().only([K.ACL, K.QOS, K.PORT_PROFILE, K.MAC_ENTRY])
    a2 = leaf_bundle(port="eth9").only([K.ARP_ENTRY, K.DHCP_BINDING])
    partners = {(s, k): ("b-leaf1",) for s in ("a-leaf1", "a-leaf2") for k in LEAF_KINDS}
    routed = route({"a-leaf1": a1, "a-leaf2": a2}, partners)
    assert set(routed) == {"b-leaf1"}
    assert routed["b-leaf1"].kinds() == set(LEAF_KINDS)
    assert routed["b-leaf1"].dynamic.dhcp_binding[0].port == "eth9"  # routing does not rewrite
    assert routed["b-leaf1"].identity.tenant == "blue"  # richest identity (the bridge's) wins


def test_route_one_to_many_and_kind_moving_from_firewall_to_leaf() -> None:
    partners: dict[tuple[str, PolicyKind], tuple[str, ...]] = {
        ("a-leaf1", k): ("b-leaf1",) for k in LEAF_KINDS}
    partners |= {("a-fw1", K.FIREWALL_RULE): ("b-fw1",), ("a-fw1", K.FIREWALL_SESSION): ("b-fw1",),
                 ("a-fw1", K.NAT_STATIC): ("b-nat1",), ("a-fw1", K.NAT_SESSION): ("b-nat1",),
                 ("a-fw1", K.LB_MEMBER): ("b-leaf1",),
                 ("a-fw1", K.ARP_ENTRY): ("b-fw1", "b-nat1")}  # one kind to two devices
    routed = route({"a-leaf1": leaf_bundle(), "a-fw1": fw_bundle()}, partners)
    assert set(routed) == {"b-leaf1", "b-fw1", "b-nat1"}
    assert routed["b-fw1"].kinds() == {K.FIREWALL_RULE, K.FIREWALL_SESSION, K.ARP_ENTRY}
    assert routed["b-nat1"].kinds() == {K.NAT_STATIC, K.NAT_SESSION, K.ARP_ENTRY}
    assert routed["b-leaf1"].static.lb_member == fw_bundle().static.lb_member  # fw -> leaf
    # the leaf's own ARP entry and the firewall's do not mix on b-fw1
    assert routed["b-fw1"].dynamic.arp_entry == fw_bundle().dynamic.arp_entry
    # every part carries the VM's full identity
    assert all(b.identity.mac == (MAC,) for b in routed.values())


def test_route_refuses_a_kind_the_partner_map_does_not_place() -> None:
    partners = {("a-fw1", k): ("b-fw1",) for k in (K.FIREWALL_RULE, K.FIREWALL_SESSION, K.ARP_ENTRY,
                                                    K.NAT_STATIC, K.NAT_SESSION)}
    with pytest.raises(TranslationError, match=r"a-fw1: holds lb-member for vm-web-01 .* nowhere"):
        route({"a-fw1": fw_bundle()}, partners)


def test_rewrite_vlan_zone_nat_pool_and_bridge_port() -> None:
    rules = TranslationRules(vlans={110: 2110}, zones={"inside": "trust", "outside": "untrust"},
                             nat_pools={"203.0.113.0/24": "198.51.100.0/24"}, destination_port="ethernet-1/3",
                             destination_host="host-b3")
    merged = VmBundle(VM, leaf_bundle().identity,
                      StaticPolicies(**{**vars_of(leaf_bundle().static), **nonempty(fw_bundle().static)}),
                      DynamicInfo(**{**vars_of(leaf_bundle().dynamic), **nonempty(fw_bundle().dynamic)}))
    out = rewrite(merged, rules)
    assert out.identity.segment == 2110 and out.identity.host == "host-b3"
    assert out.static.port_profile == PortProfile(vlan=2110, mtu=1500)
    assert out.static.nat_static == (NatStatic("10.1.10.11", "198.51.100.11"),)
    rule = out.static.firewall_rule[0]
    assert (rule.from_zone, rule.to_zone) == ("untrust", "trust")
    assert out.dynamic.mac_entry == (MacEntry(MAC, 2110, port="ethernet-1/3", age_s=5),)
    assert out.dynamic.dhcp_binding[0].port == "ethernet-1/3" and out.dynamic.dhcp_binding[0].vlan == 2110
    assert out.dynamic.nat_session[0].external_address == "198.51.100.11"
    # what does not depend on the site stays exactly as it was
    assert out.static.acl == merged.static.acl and out.static.qos == merged.static.qos
    assert out.static.lb_member == merged.static.lb_member
    assert out.dynamic.firewall_session == merged.dynamic.firewall_session


def test_rewrite_without_destination_port_leaves_learned_ports_to_the_device() -> None:
    out = rewrite(leaf_bundle(), TranslationRules(vlans={110: 2110}))
    assert out.dynamic.mac_entry[0].port is None and out.dynamic.mac_entry[0].vlan == 2110
    assert out.dynamic.dhcp_binding[0].port is None


def test_unmapped_values_stay_and_addresses_outside_every_pool_are_kept() -> None:
    rules = TranslationRules(vlans={999: 1}, zones={"dmz": "x"},
                             nat_pools={"192.0.2.0/24": "198.51.100.0/24"})
    out = rewrite(fw_bundle(), rules)
    assert out.static.nat_static == fw_bundle().static.nat_static
    assert out.static.firewall_rule == fw_bundle().static.firewall_rule
    assert rules.vlan(110) == 110 and rules.vlan(None) is None and rules.vni(5000) == 5000


def test_nat_pools_of_different_size_are_refused() -> None:
    rules = TranslationRules(nat_pools={"203.0.113.0/24": "198.51.100.0/25"})
    with pytest.raises(TranslationError, match="differ in size"):
        rules.nat_address("203.0.113.11")


def test_translate_applies_each_destinations_own_rules() -> None:
    partners = {("a-leaf1", k): ("b-leaf1", "b-spine1") for k in LEAF_KINDS}

    def rules(device: str) -> TranslationRules:
        port = "ethernet-1/3" if device == "b-leaf1" else None
        return TranslationRules(vlans={110: 2110}, destination_port=port)
    out = translate({"a-leaf1": leaf_bundle()}, partners, rules)
    assert out["b-leaf1"].dynamic.mac_entry[0].port == "ethernet-1/3"
    assert out["b-spine1"].dynamic.mac_entry[0].port is None
    assert {b.dynamic.mac_entry[0].vlan for b in out.values()} == {2110}


def vars_of(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


def nonempty(obj: object) -> dict[str, Any]:
    return {k: v for k, v in vars_of(obj).items() if v not in ((), None)}

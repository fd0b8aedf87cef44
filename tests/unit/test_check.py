"""netmig.check: can a destination hold the bundle, what conflicts there, what is left to send (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from netmig.check import Conflict, ConflictPolicy, check_destination, delta, find_conflicts, supportable
from netmig.codecs.base import Binding, DeviceInventory, LbUse, NatMapping, PortUse
from netmig.codecs.registry import get_codec
from netmig.errors import PolicyConflictError, UnsupportedPolicyError
from netmig.model import (
    Acl,
    AclRule,
    Action,
    ArpEntry,
    Direction,
    DynamicInfo,
    FirewallRule,
    LbMember,
    MacEntry,
    NatStatic,
    NdEntry,
    PolicyKind,
    PortProfile,
    QosProfile,
    StaticPolicies,
    VmBundle,
    VmIdentity,
)

K = PolicyKind
VM = "vm-web-01"
MAC, IP = "52:54:00:10:00:01", "10.1.10.11"
ACME = get_codec("acme")
IETF = get_codec("ietf")
IETF_MODULES = {"ietf-interfaces", "iana-if-type", "ietf-access-control-list", "netmig-device", "ietf-nat"}
IETF_FEATURES = set(IETF.required_features())


def bundle(*, nd: bool = True) -> VmBundle:
    return VmBundle(
        VM,
        VmIdentity(tenant="blue", segment=2110, mac=(MAC,), ip=(IP,)),
        StaticPolicies(acl=(Acl("web-in", Direction.INGRESS, (AclRule(10, Action.PERMIT),)),),
                       qos=QosProfile(rate_bps=1_000_000), port_profile=PortProfile(vlan=2110),
                       nat_static=(NatStatic(IP, "198.51.100.11"),),
                       firewall_rule=(FirewallRule(f"{VM}.allow", Action.PERMIT, 10),),
                       lb_member=(LbMember("web", IP, 443, 50),)),
        DynamicInfo(mac_entry=(MacEntry(MAC, 2110),), arp_entry=(ArpEntry(IP, MAC),),
                    nd_entry=(NdEntry("2001:db8::11", MAC),) if nd else ()),
    )


# ------------------------------------------------------------------------------------------ supportable

def test_a_kind_the_model_cannot_hold_is_refused_naming_device_kind_and_the_way_out() -> None:
    with pytest.raises(UnsupportedPolicyError) as info:
        supportable("b-leaf1", ACME, bundle(), modules={"acme-fabric"}, features=(), allow_drop=())
    assert info.value.device == "b-leaf1" and info.value.kind == "nd-entry"
    assert "--allow-drop nd-entry" in str(info.value)
    assert info.value.exit_code == 4


def test_allowed_drop_removes_the_kind_and_reports_it() -> None:
    kept, dropped = supportable("b-leaf1", ACME, bundle(), modules={"acme-fabric"}, features=(),
                                allow_drop={K.ND_ENTRY})
    assert dropped == (K.ND_ENTRY,)
    assert kept == bundle(nd=False)


def test_allow_drop_of_a_holdable_kind_drops_nothing() -> None:
    kept, dropped = supportable("a-fw1", IETF, bundle(), modules=IETF_MODULES, features=IETF_FEATURES,
                                allow_drop={K.ND_ENTRY, K.ACL})
    assert dropped == () and kept == bundle()


def test_a_missing_module_is_refused() -> None:
    with pytest.raises(UnsupportedPolicyError, match="a-spine1: cannot express nat-static: module ietf-nat"):
        supportable("a-spine1", IETF, bundle(), modules=IETF_MODULES - {"ietf-nat"}, features=IETF_FEATURES,
                    allow_drop=())
    _, dropped = supportable("a-spine1", IETF, bundle(), modules=IETF_MODULES - {"ietf-nat"},
                             features=IETF_FEATURES, allow_drop={K.NAT_STATIC})
    assert dropped == (K.NAT_STATIC,)


def test_a_missing_feature_is_refused() -> None:
    features = IETF_FEATURES - {("netmig-device", "firewall")}
    with pytest.raises(UnsupportedPolicyError, match="feature netmig-device:firewall not supported"):
        supportable("a-fw1", IETF, bundle(), modules=IETF_MODULES, features=features, allow_drop=())


# ---------------------------------------------------------------------------------------- conflicts

def test_nothing_on_the_device_is_no_conflict() -> None:
    assert find_conflicts("b-leaf1", bundle(), DeviceInventory(), None) == []


def test_same_key_other_content_is_a_conflict_same_content_is_not() -> None:
    b = bundle()
    assert find_conflicts("b-fw1", b, DeviceInventory(), b) == []
    deny = FirewallRule(f"{VM}.allow", Action.DENY, 10)
    other = replace(b, static=replace(b.static, firewall_rule=(deny,)))
    found = find_conflicts("b-fw1", b, DeviceInventory(), other)
    assert found == [Conflict("b-fw1", K.FIREWALL_RULE, f"{VM}.allow already exists with other content")]
    # learned state is refreshed, never a conflict
    stale = replace(b, dynamic=replace(b.dynamic, arp_entry=(ArpEntry(IP, "52:54:00:99:99:99"),)))
    assert find_conflicts("b-fw1", b, DeviceInventory(), stale) == []


def test_address_bound_to_another_vm_is_a_conflict() -> None:
    inv = DeviceInventory(bindings=(Binding(K.ARP_ENTRY, IP, "vm-other"), Binding(K.MAC_ENTRY, MAC, VM)))
    found = find_conflicts("b-leaf1", bundle(), inv, None)
    assert [str(c) for c in found] == [f"b-leaf1: arp-entry: {IP} is bound to VM vm-other"]
    unattributed = DeviceInventory(bindings=(Binding(K.MAC_ENTRY, MAC, None),))
    assert find_conflicts("b-leaf1", bundle(), unattributed, None) == []


def test_overlapping_nat_mapping_is_a_conflict_the_identical_one_is_not() -> None:
    taken = DeviceInventory(nat=(NatMapping("10.9.9.9", "198.51.100.11", "vm-app-01"),))
    found = find_conflicts("b-nat1", bundle(), taken, None)
    assert len(found) == 1 and found[0].kind is K.NAT_STATIC
    assert "10.9.9.9->198.51.100.11 of vm-app-01" in found[0].what
    inside_taken = DeviceInventory(nat=(NatMapping(IP, "198.51.100.99", None),))
    assert "another owner" in find_conflicts("b-nat1", bundle(), inside_taken, None)[0].what
    same = DeviceInventory(nat=(NatMapping(IP, "198.51.100.11", None),))
    assert find_conflicts("b-nat1", bundle(), same, None) == []
    ours = DeviceInventory(nat=(NatMapping(IP, "198.51.100.99", VM),))
    assert find_conflicts("b-nat1", bundle(), ours, None) == []


def test_lb_member_owned_by_another_vm_is_a_conflict() -> None:
    inv = DeviceInventory(lb=(LbUse("web", IP, 443, "vm-web-02"), LbUse("web", IP, 8443, "vm-x")))
    found = find_conflicts("b-leaf1", bundle(), inv, None)
    assert found == [Conflict("b-leaf1", K.LB_MEMBER, f"web {IP}:443 belongs to VM vm-web-02")]


def test_vlan_of_another_tenant_is_a_conflict() -> None:
    inv = DeviceInventory(ports=(PortUse("ethernet-1/2", "vm-app-01", "green", 2110),
                                 PortUse("ethernet-1/4", "vm-x", "green", 2110)))
    found = find_conflicts("b-leaf1", bundle(), inv, None)
    assert found == [Conflict("b-leaf1", K.PORT_PROFILE, "VLAN 2110 is used by tenant green on ethernet-1/2")]
    same_tenant = DeviceInventory(ports=(PortUse("ethernet-1/2", "vm-app-01", "blue", 2110),))
    assert find_conflicts("b-leaf1", bundle(), same_tenant, None) == []


def test_check_destination_fails_or_skips_the_conflicting_kinds() -> None:
    inv = DeviceInventory(nat=(NatMapping("10.9.9.9", "198.51.100.11", "vm-app-01"),))
    args = {"modules": {"acme-fabric"}, "features": (), "inventory": inv, "existing": None,
            "allow_drop": {K.ND_ENTRY}}
    with pytest.raises(PolicyConflictError) as info:
        check_destination("b-nat1", ACME, bundle(), **args)  # type: ignore[arg-type]
    assert info.value.conflicts[0].startswith("b-nat1: nat-static: ")
    result = check_destination("b-nat1", ACME, bundle(), on_conflict=ConflictPolicy.SKIP,
                               **args)  # type: ignore[arg-type]
    assert K.NAT_STATIC not in result.bundle.kinds() and K.ACL in result.bundle.kinds()
    assert result.dropped == (K.ND_ENTRY,) and [c.kind for c in result.conflicts] == [K.NAT_STATIC]


# -------------------------------------------------------------------------------------------- delta

def test_delta_sends_only_missing_static_entries_and_always_the_learned_state() -> None:
    b = bundle()
    assert delta(b, None) == b
    same = delta(b, b)
    assert same.static == StaticPolicies()  # every static entry is already there
    assert same.dynamic == b.dynamic        # learned state goes again, with fresh timers
    changed_qos = replace(b, static=replace(b.static, qos=QosProfile(rate_bps=5)))
    sent = delta(b, changed_qos)
    assert sent.static.qos == b.static.qos and sent.static.acl == ()
    more = FirewallRule(f"{VM}.b", Action.DENY, 20)
    extra = replace(b.static, firewall_rule=(*b.static.firewall_rule, more))
    partial = delta(replace(b, static=extra), b)
    assert partial.static.firewall_rule == (FirewallRule(f"{VM}.b", Action.DENY, 20),)

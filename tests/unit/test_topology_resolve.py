"""resolve(): devices on both sides, ports, renames, NAT pools and the (asymmetric) partner map."""

from __future__ import annotations

from pathlib import Path

import pytest

from netmig.errors import InputError, TranslationError, UnknownVmError
from netmig.topology import Device, PolicyKind, Topology, load_topology, parse_topology, resolve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site" / "topology.yaml"
K = PolicyKind
LEAF_KINDS = (K.ACL, K.QOS, K.PORT_PROFILE, K.MAC_ENTRY, K.ARP_ENTRY, K.ND_ENTRY, K.DHCP_BINDING)


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(EXAMPLE)


def _names(devices: tuple[Device, ...]) -> list[str]:
    return [d.name for d in devices]


def test_a_to_b_devices_ports_and_renames(topo: Topology) -> None:
    plan = resolve(topo, "vm-web-01", "host-a1", "host-b3")
    assert _names(plan.source_devices) == ["a-leaf1", "a-spine1", "a-fw1"]
    assert _names(plan.destination_devices) == ["b-leaf1", "b-spine1", "b-fw1", "b-nat1"]
    assert (plan.source.bridge.name, plan.source.port, plan.source.site) == ("a-leaf1", "eth3", "A")
    assert (plan.destination.bridge.name, plan.destination.port) == ("b-leaf1", "ethernet-1/3")
    assert plan.map_port("eth3") == "ethernet-1/3" and plan.map_port("eth5") == "eth5"
    assert (plan.map_vlan(110), plan.map_vlan(120), plan.map_vlan(130)) == (2110, 2120, 130)
    assert (plan.map_zone("inside"), plan.map_zone("dmz")) == ("trust", "dmz")
    assert plan.vm is not None and plan.vm.tenant == "blue"


def test_a_to_b_partner_map_is_asymmetric(topo: Topology) -> None:
    plan = resolve(topo, "vm-web-01", "host-a1", "host-b3")
    for kind in LEAF_KINDS:
        assert plan.partners_of("a-leaf1", kind) == ("b-leaf1",)
    # one firewall at A, split over two devices at B
    assert plan.partners_of("a-fw1", K.FIREWALL_RULE) == ("b-fw1",)
    assert plan.partners_of("a-fw1", K.FIREWALL_SESSION) == ("b-fw1",)
    assert plan.partners_of("a-fw1", K.NAT_STATIC) == ("b-nat1",)
    assert plan.partners_of("a-fw1", K.NAT_SESSION) == ("b-nat1",)
    # load balancing: firewall at A, leaf at B
    assert plan.partners_of("a-fw1", K.LB_MEMBER) == ("b-leaf1",)
    # default rule: same role
    assert plan.partners_of("a-spine1", K.ACL) == ("b-spine1",)
    assert plan.destinations_for(K.NAT_STATIC) == ("b-leaf1", "b-spine1", "b-nat1")
    assert plan.sources_for(K.LB_MEMBER, "b-leaf1") == ("a-leaf1", "a-fw1")
    assert plan.unplaced == ()
    assert plan.partners_of("b-leaf1", K.ACL) == ()


def test_both_a_leaves_go_to_the_one_b_leaf(topo: Topology) -> None:
    from_a1 = resolve(topo, "vm-x", "host-a1", "host-b1")
    from_a2 = resolve(topo, "vm-x", "host-a2", "host-b1")
    assert (
        from_a1.partners_of("a-leaf1", K.MAC_ENTRY)
        == from_a2.partners_of("a-leaf2", K.MAC_ENTRY)
        == ("b-leaf1",)
    )
    assert from_a2.map_port("eth3") == "ethernet-1/1"
    assert from_a2.vm is None


def test_b_to_a_reverse_rules(topo: Topology) -> None:
    plan = resolve(topo, "vm-db-07", "host-b2", "host-a2")
    assert _names(plan.destination_devices) == ["a-leaf2", "a-spine1", "a-fw1"]
    # to-roles [leaf]: the leaf the VM lands behind, not a-leaf1
    assert plan.partners_of("b-leaf1", K.ACL) == ("a-leaf2",)
    assert plan.partners_of("b-leaf1", K.LB_MEMBER) == ("a-fw1",)
    assert plan.partners_of("b-nat1", K.NAT_STATIC) == ("a-fw1",)
    assert plan.partners_of("b-fw1", K.FIREWALL_SESSION) == ("a-fw1",)
    # no nat-role device at A: the default finds nothing for b-nat1's other kinds
    assert ("b-nat1", K.ACL) in plan.unplaced
    assert plan.destinations_for(K.NAT_STATIC) == ("a-leaf2", "a-spine1", "a-fw1")
    assert (plan.map_vlan(2110), plan.map_vlan(210)) == (110, 1210)
    assert plan.map_zone("trust") == "inside"
    assert plan.map_port("ethernet-1/2") == "eth3"


def test_nat_addresses_move_into_the_destination_pool(topo: Topology) -> None:
    plan = resolve(topo, "vm-web-01", "host-a1", "host-b3")
    assert plan.map_nat_address("203.0.113.7") == "198.51.100.7"
    assert plan.map_nat_address("192.0.2.1") == "192.0.2.1"
    intra = resolve(topo, "vm-x", "host-b1", "host-b2")
    assert intra.map_nat_address("198.51.100.9") == "198.51.100.9"


def test_nat_address_that_does_not_fit_is_a_translation_error() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("B: 198.51.100.0/24", "B: 198.51.100.0/28")
    plan = resolve(parse_topology(text), "vm-web-01", "host-a1", "host-b3")
    assert plan.map_nat_address("203.0.113.15") == "198.51.100.15"
    with pytest.raises(TranslationError, match="does not fit"):
        plan.map_nat_address("203.0.113.16")


def test_same_site_move_uses_defaults(topo: Topology) -> None:
    plan = resolve(topo, "vm-x", "host-b1", "host-b3")
    assert plan.partners_of("b-leaf1", K.ACL) == ("b-leaf1",)
    assert plan.partners_of("b-nat1", K.NAT_STATIC) == ("b-nat1",)
    assert plan.map_vlan(110) == 110
    assert plan.map_port("ethernet-1/1") == "ethernet-1/3"


def test_rule_destination_off_the_path_falls_back_to_the_default() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "              from-devices: [b-leaf1]\n              to-roles: [leaf]",
        "              from-devices: [b-leaf1]\n              to-devices: [a-leaf1]",
    )
    plan = resolve(parse_topology(text), "vm-x", "host-b1", "host-a2")
    assert plan.partners_of("b-leaf1", K.ACL) == ("a-leaf2",)


def test_errors(topo: Topology) -> None:
    with pytest.raises(InputError, match="unknown host 'host-z9'"):
        resolve(topo, "vm-web-01", "host-z9", "host-b3")
    with pytest.raises(InputError, match="unknown host 'host-q'"):
        resolve(topo, "vm-web-01", "host-a1", "host-q")
    with pytest.raises(InputError, match="same"):
        resolve(topo, "vm-web-01", "host-a1", "host-a1")
    with pytest.raises(UnknownVmError, match="vm-web-01 is on host host-a1, not on host-a2"):
        resolve(topo, "vm-web-01", "host-a2", "host-b3")


def test_plan_device_lookup(topo: Topology) -> None:
    plan = resolve(topo, "vm-web-01", "host-a1", "host-b3")
    assert plan.device("b-nat1").endpoint == "127.0.0.1:830"
    with pytest.raises(InputError, match="a-leaf2"):
        plan.device("a-leaf2")

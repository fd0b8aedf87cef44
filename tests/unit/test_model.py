"""The canonical per-VM bundle: validation, ordering, kinds, merge and (de)serialisation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from netmig import xmlkit
from netmig.codecs import bundle_from_xml, bundle_to_xml
from netmig.errors import BundleError
from netmig.model import (
    Acl,
    AclRule,
    ArpEntry,
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
    from_dict,
    merge,
    to_dict,
)

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "codecs" / "ietf" / "leaf-full" / "expected.json"


def golden() -> VmBundle:
    return from_dict(VmBundle, json.loads(GOLDEN.read_text())["bundle"])


# ----------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MacEntry("02:00:00:00:00:0g", 5), r"mac-entry\[02:00:00:00:00:0g 5\]/mac"),
        (
            lambda: MacEntry("02:00:00:00:00:01", 4095),
            r"mac-entry\[02:00:00:00:00:01 4095\]/vlan: 4095 is outside",
        ),
        (lambda: ArpEntry("10.0.0.300"), r"arp-entry\[10.0.0.300\]/ip"),
        (lambda: NdEntry("10.0.0.1"), r"nd-entry\[10.0.0.1\]/ip"),
        (lambda: QosProfile(dscp=64), r"qos/dscp: 64 is outside 0..63"),
        (lambda: PortProfile(mtu=67), r"port-profile/mtu"),
        (lambda: AclRule(1, "permit", "icmp", destination_port_min=5), r"rule\[1\]: destination ports need"),
        (lambda: AclRule(1, "permit", "tcp", destination_port_min=9, destination_port_max=8), "port-max"),
        (lambda: AclRule(1, "allow"), r"rule\[1\]/action: 'allow' is not one of permit\|deny"),
        (lambda: Acl("-bad", "ingress"), "acl/name"),
        (lambda: FirewallRule("r", "deny", destination_port=22), r"firewall-rule\[r\]/destination-port"),
        (lambda: LbMember("p", "10.0.0.1", 80, weight=0), r"lb-member\[p\]/weight"),
        (lambda: NatStatic("10.0.0.1", "2001:db8::1"), r"nat-static\[10.0.0.1\]/external-address"),
        (lambda: VmIdentity(vni=0), "identity/vni"),
        (lambda: VmBundle("bad id"), "vm-bundle/vm-id"),
        (
            lambda: Acl("a", "ingress", (AclRule(1, "permit"), AclRule(1, "deny"))),
            r"acl\[a\]/rule: duplicate key",
        ),
    ],
)
def test_invalid_values_raise_bundle_error_naming_the_path(build: Any, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        build()


def test_values_are_normalised() -> None:
    assert MacEntry("02-AB-00-00-00-01", 5).mac == "02:ab:00:00:00:01"
    assert ArpEntry("10.0.0.1", "AA:BB:CC:DD:EE:FF").mac == "aa:bb:cc:dd:ee:ff"
    assert NdEntry("2001:DB8:0:0::1").ip == "2001:db8::1"
    assert AclRule(1, "permit", source_prefix="10.1.2.3/8").source_prefix == "10.0.0.0/8"
    assert VmIdentity(mac=("02:00:00:00:00:02", "02:00:00:00:00:01")).mac[0] == "02:00:00:00:00:01"


def test_from_dict_names_the_full_path() -> None:
    doc = to_dict(golden())
    doc["static"]["acl"][0]["rule"][0]["destination-port-min"] = 70000
    with pytest.raises(BundleError, match=r"^/static/acl/rule\[10\]/destination-port-min: 70000 is outside"):
        from_dict(VmBundle, doc)
    with pytest.raises(BundleError, match="unknown member 'colour'"):
        from_dict(VmBundle, {"vm-id": "v", "colour": "red"})


# ------------------------------------------------------------------------------ ordering, kinds


def test_order_of_parts_does_not_matter() -> None:
    a, b = ArpEntry("10.0.0.2"), ArpEntry("10.0.0.1")
    one = VmBundle("v", dynamic=DynamicInfo(arp_entry=(a, b)))
    two = VmBundle("v", dynamic=DynamicInfo(arp_entry=(b, a)))
    assert one == two and one.dynamic.arp_entry[0].ip == "10.0.0.1"
    assert StaticPolicies(qos=QosProfile()) == StaticPolicies()


def test_counts_only_without() -> None:
    bundle = golden()
    counts = bundle.counts()
    assert set(counts) == set(PolicyKind) and len(PolicyKind) == 12
    assert counts[PolicyKind.ACL] == 2 and counts[PolicyKind.QOS] == 1 and counts[PolicyKind.ND_ENTRY] == 1
    di = bundle.only(k for k in PolicyKind if k.is_dynamic)
    assert di.kinds() == {k for k in PolicyKind if k.is_dynamic} and di.identity == bundle.identity
    rest = bundle.without([PolicyKind.ND_ENTRY, PolicyKind.QOS])
    assert rest.counts()[PolicyKind.ND_ENTRY] == 0 and rest.static.qos is None
    assert rest.counts()[PolicyKind.ACL] == 2


# ----------------------------------------------------------------------------------------- merge


def test_merge_combines_parts_and_keeps_freshest_timers() -> None:
    leaf_a = VmBundle(
        "v",
        VmIdentity(tenant="t", mac=("02:00:00:00:00:01",)),
        StaticPolicies(port_profile=PortProfile(vlan=10)),
        DynamicInfo(
            mac_entry=(MacEntry("02:00:00:00:00:01", 10, "p1", 30),),
            arp_entry=(ArpEntry("10.0.0.1", expiry_s=50),),
        ),
    )
    leaf_b = VmBundle(
        "v",
        VmIdentity(ip=("10.0.0.1",)),
        StaticPolicies(port_profile=PortProfile(mtu=1500), nat_static=(NatStatic("10.0.0.1", "1.2.3.4"),)),
        DynamicInfo(
            mac_entry=(MacEntry("02:00:00:00:00:01", 10, "p1", 5),),
            arp_entry=(ArpEntry("10.0.0.1", expiry_s=200),),
        ),
    )
    merged = merge([leaf_a, leaf_b])
    assert merged.identity == VmIdentity(tenant="t", mac=("02:00:00:00:00:01",), ip=("10.0.0.1",))
    assert merged.static.port_profile == PortProfile(vlan=10, mtu=1500)
    assert merged.dynamic.mac_entry[0].age_s == 5 and merged.dynamic.arp_entry[0].expiry_s == 200
    assert merged.counts()[PolicyKind.NAT_STATIC] == 1
    assert merge([leaf_a]) == leaf_a


def test_merge_refuses_contradictions() -> None:
    a = VmBundle("v", static=StaticPolicies(nat_static=(NatStatic("10.0.0.1", "1.1.1.1"),)))
    b = VmBundle("v", static=StaticPolicies(nat_static=(NatStatic("10.0.0.1", "2.2.2.2"),)))
    with pytest.raises(BundleError, match=r"static/nat-static\[10.0.0.1\]: contradictory"):
        merge([a, b])
    moved = VmBundle("v", dynamic=DynamicInfo(mac_entry=(MacEntry("02:00:00:00:00:01", 10, "p2", 1),)))
    here = VmBundle("v", dynamic=DynamicInfo(mac_entry=(MacEntry("02:00:00:00:00:01", 10, "p1", 1),)))
    with pytest.raises(BundleError, match="mac-entry"):
        merge([moved, here])
    with pytest.raises(BundleError, match="port-profile/vlan: contradictory values 1 and 2"):
        merge([VmBundle("v", static=StaticPolicies(port_profile=PortProfile(vlan=v))) for v in (1, 2)])
    with pytest.raises(BundleError, match="different VMs"):
        merge([VmBundle("v"), VmBundle("w")])


# ------------------------------------------------------------------------------- serialisation

small_bundles = st.builds(
    VmBundle,
    st.sampled_from(["vm1", "web.2", "a_b-c"]),
    st.builds(VmIdentity, st.none() | st.just("blue"), st.none() | st.integers(1, 4094)),
    st.builds(
        StaticPolicies,
        acl=st.lists(
            st.builds(
                Acl,
                st.sampled_from(["a", "b"]),
                st.sampled_from(["ingress", "egress"]),
                st.lists(
                    st.builds(AclRule, st.integers(0, 2**32 - 1), st.sampled_from(["permit", "deny"])),
                    max_size=2,
                    unique_by=lambda r: r.sequence,
                ).map(tuple),
            ),
            max_size=2,
            unique_by=lambda a: a.name,
        ).map(tuple),
        qos=st.none() | st.builds(QosProfile, st.integers(0, 2**64 - 1)),
    ),
    st.builds(
        DynamicInfo,
        mac_entry=st.lists(
            st.builds(MacEntry, st.just("02:00:00:00:00:01"), st.integers(1, 4094)),
            max_size=2,
            unique_by=lambda e: e.key,
        ).map(tuple),
    ),
)


@settings(max_examples=50, deadline=None)
@given(small_bundles)
def test_json_and_xml_round_trips(bundle: VmBundle) -> None:
    doc = json.loads(json.dumps(to_dict(bundle)))
    assert from_dict(VmBundle, doc) == bundle
    xml = xmlkit.parse(xmlkit.to_bytes(bundle_to_xml([bundle])))
    assert bundle_from_xml(xml) == (bundle,)


def test_uint64_rate_is_a_json_string() -> None:
    assert to_dict(VmBundle("v", static=StaticPolicies(qos=QosProfile(rate_bps=2**64 - 1))))["static"] == {
        "qos": {"rate-bps": "18446744073709551615"}
    }


def test_bundle_xml_is_valid_netmig_vm_bundle_data(tmp_path: Path) -> None:
    if shutil.which("yanglint") is None:
        pytest.fail("yanglint (Debian libyang2-tools) is required")
    other = VmBundle("vm-0", VmIdentity(tenant="red"))
    data = tmp_path / "bundles.xml"
    data.write_bytes(etree.tostring(bundle_to_xml([golden(), other])))
    ietf = Path(sys.prefix) / "share" / "yang" / "modules" / "ietf"
    run = subprocess.run(
        [
            "yanglint",
            "-f",
            "xml",
            "-t",
            "config",
            "-p",
            str(REPO / "yang"),
            "-p",
            str(ietf),
            str(REPO / "yang" / "netmig-vm-bundle.yang"),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "YANGLINT[E]" not in run.stderr, run.stderr
    assert [b.vm_id for b in bundle_from_xml(xmlkit.parse(data.read_bytes()))] == ["vm-0", "vm-web-1"]

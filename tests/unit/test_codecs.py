"""Device codecs: golden XML, lossless round trips, the scope guard, filters and YANG validity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from netmig import xmlkit
from netmig.codecs import AcmeCodec, DeviceCodec, IetfCodec, VmContext, available, get_codec
from netmig.codecs.acme import ACME_NS
from netmig.codecs.ietf import ACL_NS, IF_NS, NAT_NS, NMD_NS
from netmig.errors import BundleError, InputError, UnsupportedPolicyError
from netmig.model import (
    Acl,
    AclRule,
    ArpEntry,
    DhcpBinding,
    DynamicInfo,
    FirewallRule,
    FirewallSession,
    LbMember,
    MacEntry,
    NatSession,
    NatStatic,
    NdEntry,
    PolicyKind,
    PortProfile,
    QosProfile,
    StaticPolicies,
    VmBundle,
    VmIdentity,
    from_dict,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "codecs"
REPO = Path(__file__).resolve().parents[2]
YANG_DIR = Path(sys.prefix) / "share" / "yang" / "modules"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CTX = VmContext(
    "vm-web-1",
    "ethernet-1/7",
    ("02:00:00:0a:01:05",),
    ("10.1.0.5", "10.1.0.6", "2001:db8::5"),
    "blue",
    100,
    now=NOW,
)
CASES = sorted((p.parent.name, p.name) for p in DATA.glob("*/*") if p.is_dir())


def c14n(el: Any) -> bytes:
    return bytes(etree.tostring(el, method="c14n"))


def load_case(codec: str, case: str) -> tuple[VmContext, Any, VmBundle, Any]:
    folder = DATA / codec / case
    expected = json.loads((folder / "expected.json").read_text())
    c = expected["context"]
    ctx = VmContext(
        c["vm-id"],
        c["port"],
        tuple(c["macs"]),
        tuple(c["ips"]),
        c["tenant"],
        c["vlan"],
        now=datetime.fromisoformat(c["now"].replace("Z", "+00:00")),
    )
    reply = xmlkit.parse((folder / "reply.xml").read_bytes())
    edit = xmlkit.parse((folder / "edit.xml").read_bytes())
    return ctx, reply, from_dict(VmBundle, expected["bundle"]), edit


@pytest.mark.parametrize(("codec", "case"), CASES)
def test_golden_decode(codec: str, case: str) -> None:
    ctx, reply, expected, _ = load_case(codec, case)
    assert get_codec(codec).decode(reply, reply, ctx) == expected


@pytest.mark.parametrize(("codec", "case"), CASES)
def test_golden_encode_is_byte_exact(codec: str, case: str) -> None:
    ctx, _, expected, edit = load_case(codec, case)
    c = get_codec(codec)
    bundle = expected.only(c.supported_kinds)
    assert c14n(c.encode(bundle, ctx)) == c14n(edit)


def test_golden_cases_exist_for_both_codecs() -> None:
    assert {codec for codec, _ in CASES} == {"ietf", "acme"}


# ------------------------------------------------------------------------------ hypothesis bundles

names = st.text("abcdefgh-", min_size=1, max_size=6).filter(lambda s: s[0] != "-")
prefixes = st.builds(lambda a, n: f"10.{a}.0.0/{n}", st.integers(0, 255), st.integers(8, 16))
zones = st.sampled_from(["trust", "untrust", "dmz"])
ports = st.sampled_from(["ethernet-1/7", "ethernet-2/1"])
macs = st.sampled_from(["02:00:00:00:00:01", "02:00:00:00:00:02", "0a:bb:cc:dd:ee:ff"])
v4 = st.builds(lambda a, b: f"192.0.{a}.{b}", st.integers(0, 3), st.integers(1, 254))
v6 = st.builds(lambda a: f"2001:db8::{a:x}", st.integers(1, 4000))
u32 = st.integers(0, 2**32 - 1)


@st.composite
def acl_rules(draw: Any, seq: int) -> AclRule:
    proto = draw(st.sampled_from(["any", "tcp", "udp", "icmp"]))
    low = high = None
    if proto in ("tcp", "udp") and draw(st.booleans()):
        low = draw(st.integers(0, 65535))
        high = draw(st.one_of(st.none(), st.integers(low, 65535)))
    return AclRule(
        seq,
        draw(st.sampled_from(["permit", "deny"])),
        proto,
        draw(st.none() | prefixes),
        draw(st.none() | prefixes),
        low,
        high,
    )


@st.composite
def acls(draw: Any, min_rules: int = 0) -> Acl:
    seqs = draw(st.sets(st.integers(0, 999_999), min_size=min_rules, max_size=4))
    rules = tuple(draw(acl_rules(s)) for s in seqs)
    return Acl(draw(names), draw(st.sampled_from(["ingress", "egress"])), rules)


@st.composite
def firewall_rules(draw: Any) -> FirewallRule:
    proto = draw(st.sampled_from(["any", "tcp", "udp", "icmp"]))
    port = draw(st.none() | st.integers(0, 65535)) if proto in ("tcp", "udp") else None
    zone_pair = draw(st.none() | st.tuples(zones, zones))
    return FirewallRule(
        draw(names),
        draw(st.sampled_from(["permit", "deny"])),
        draw(st.none() | u32),
        *(zone_pair or (None, None)),
        proto,
        draw(st.none() | prefixes),
        draw(st.none() | prefixes),
        port,
    )


def opt(strategy: Any) -> Any:
    return st.none() | strategy


session_protos = st.sampled_from(["tcp", "udp", "icmp"])
port_num = st.integers(0, 65535)


def dynamic_info(with_nd: bool) -> Any:
    return st.builds(
        DynamicInfo,
        mac_entry=st.lists(
            st.builds(MacEntry, macs, st.integers(1, 4094), opt(ports), opt(u32)),
            max_size=3,
            unique_by=lambda e: e.key,
        ).map(tuple),
        arp_entry=st.lists(
            st.builds(ArpEntry, v4, opt(macs), opt(u32)), max_size=3, unique_by=lambda e: e.key
        ).map(tuple),
        nd_entry=(
            st.lists(st.builds(NdEntry, v6, opt(macs), opt(u32)), max_size=3, unique_by=lambda e: e.key).map(
                tuple
            )
            if with_nd
            else st.just(())
        ),
        dhcp_binding=st.lists(
            st.builds(DhcpBinding, macs, opt(v4), opt(st.integers(1, 4094)), opt(ports), opt(u32)),
            max_size=3,
            unique_by=lambda e: e.key,
        ).map(tuple),
        nat_session=st.lists(
            st.builds(
                NatSession,
                session_protos,
                v4,
                port_num,
                opt(v4),
                opt(port_num),
                opt(v4),
                opt(port_num),
                opt(u32),
            ),
            max_size=3,
            unique_by=lambda e: e.key,
        ).map(tuple),
        firewall_session=st.lists(
            st.builds(
                FirewallSession,
                session_protos,
                v4 | v6,
                port_num,
                v4 | v6,
                port_num,
                opt(st.sampled_from(["new", "established", "closing"])),
                opt(u32),
            ),
            max_size=3,
            unique_by=lambda e: e.key,
        ).map(tuple),
    )


@st.composite
def bundles(draw: Any, *, with_nd: bool = True, kilo: bool = False) -> VmBundle:
    """Bundles a codec must carry losslessly for CTX (identity comes from the context).

    ``kilo``: what acme can hold: rates and bursts in whole thousands, no empty ACLs.
    """
    rate = st.integers(0, 2**32 - 1).map(lambda k: k * 1000) if kilo else st.integers(0, 2**64 - 1)
    burst = st.integers(0, 4_294_967).map(lambda k: k * 1000) if kilo else u32
    qos = draw(opt(st.builds(QosProfile, opt(rate), opt(burst), opt(st.integers(0, 63)))))
    profile = draw(
        opt(
            st.builds(
                PortProfile, opt(st.integers(1, 4094)), opt(st.integers(68, 9216)), opt(st.integers(1, 4096))
            )
        )
    )
    static = StaticPolicies(
        acl=tuple(draw(st.lists(acls(1 if kilo else 0), max_size=3, unique_by=lambda a: a.name))),
        qos=qos,
        port_profile=profile,
        nat_static=tuple(NatStatic(ip, draw(v4)) for ip in draw(st.sets(st.sampled_from(CTX.ipv4s)))),
        firewall_rule=tuple(draw(st.lists(firewall_rules(), max_size=3, unique_by=lambda r: r.name))),
        lb_member=tuple(
            draw(
                st.lists(
                    st.builds(LbMember, names, v4, port_num, st.integers(1, 100)),
                    max_size=3,
                    unique_by=lambda m: m.pool,
                )
            )
        ),
    )
    vni = draw(opt(st.integers(1, 16777215))) if static.acl or static.qos or static.port_profile else None
    identity = VmIdentity(tenant=CTX.tenant, segment=CTX.vlan, vni=vni, mac=CTX.macs, ip=CTX.ips)
    return VmBundle(CTX.vm_id, identity, static, draw(dynamic_info(with_nd)))


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(bundles())
def test_ietf_round_trip_is_lossless(bundle: VmBundle) -> None:
    codec = IetfCodec()
    edit = xmlkit.parse(xmlkit.to_bytes(codec.encode(bundle, CTX)))
    assert codec.decode(edit, None, CTX) == bundle


@FAST
@given(bundles(with_nd=False, kilo=True))
def test_acme_round_trip_is_lossless(bundle: VmBundle) -> None:
    codec = AcmeCodec()
    edit = xmlkit.parse(xmlkit.to_bytes(codec.encode(bundle, CTX)))
    assert codec.decode(edit, None, CTX) == bundle


@FAST
@given(bundles(with_nd=False, kilo=True))
def test_cross_round_trip_acme_ietf_acme(bundle: VmBundle) -> None:
    acme, ietf = AcmeCodec(), IetfCodec()
    via_acme = acme.decode(acme.encode(bundle, CTX), None, CTX)
    via_ietf = ietf.decode(ietf.encode(via_acme, CTX), None, CTX)
    assert acme.decode(acme.encode(via_ietf, CTX), None, CTX) == bundle


def test_acme_refuses_to_round_rates_and_has_no_nd() -> None:
    acme = AcmeCodec()
    with pytest.raises(UnsupportedPolicyError, match="rate-bps 1500 is not a multiple of 1000"):
        acme.encode(VmBundle("vm1", static=StaticPolicies(qos=QosProfile(rate_bps=1500))), CTX)
    empty = VmBundle("vm1", static=StaticPolicies(acl=(Acl("a", "ingress"),)))
    with pytest.raises(UnsupportedPolicyError, match="no rules"):
        acme.encode(empty, CTX)
    nd = VmBundle("vm1", dynamic=DynamicInfo(nd_entry=(NdEntry("2001:db8::5"),)))
    with pytest.raises(UnsupportedPolicyError, match="nd-entry"):
        acme.encode(nd, CTX)
    assert PolicyKind.ND_ENTRY not in acme.supported_kinds
    assert PolicyKind.ND_ENTRY in IetfCodec().supported_kinds


def test_acme_refuses_half_zones_and_bad_port_names() -> None:
    half = VmBundle("vm1", static=StaticPolicies(firewall_rule=(FirewallRule("r", "permit", from_zone="a"),)))
    with pytest.raises(UnsupportedPolicyError, match="zones"):
        AcmeCodec().encode(half, CTX)
    ctx = VmContext("vm1", "Gi0/1")
    with pytest.raises(UnsupportedPolicyError, match="not an ACME port name"):
        AcmeCodec().encode(VmBundle("vm1", static=StaticPolicies(port_profile=PortProfile(vlan=5))), ctx)


# ------------------------------------------------------------------------------------ scope guard


def _reply(codec: str) -> Any:
    return xmlkit.parse((DATA / codec / "leaf-full" / "reply.xml").read_bytes())


def _golden_ctx(codec: str) -> VmContext:
    return load_case(codec, "leaf-full")[0]


@pytest.mark.parametrize("codec", ["ietf", "acme"])
def test_scope_guard_refuses_port_of_another_vm(codec: str) -> None:
    ctx = _golden_ctx(codec)
    other = VmContext(ctx.vm_id, "ethernet-1/8", ctx.macs, ctx.ips, now=NOW)
    with pytest.raises(BundleError, match="belongs to VM 'vm-db-2'"):
        get_codec(codec).decode(_reply(codec), None, other)


@pytest.mark.parametrize("codec", ["ietf", "acme"])
def test_scope_guard_refuses_another_vms_entry_on_our_address(codec: str) -> None:
    ctx = _golden_ctx(codec)
    # claim vm-db-2's MAC and address as ours: its tagged entries must be refused, not silently taken
    greedy = VmContext(ctx.vm_id, "ethernet-9/9", ("02:00:00:0a:01:09",), ("10.1.0.9",), now=NOW)
    with pytest.raises(BundleError, match="vm-db-2"):
        get_codec(codec).decode(_reply(codec), _reply(codec), greedy)


@pytest.mark.parametrize("codec", ["ietf", "acme"])
def test_decode_skips_other_vms_entries_that_do_not_touch_ours(codec: str) -> None:
    ctx = _golden_ctx(codec)
    bundle = get_codec(codec).decode(_reply(codec), _reply(codec), ctx)
    text = json.dumps(bundle.counts(), default=str)
    assert "vm-db-2" not in repr(bundle) and "10.1.0.9" not in repr(bundle), text
    assert bundle.counts()[PolicyKind.LB_MEMBER] == 1


# ----------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize("codec", [IetfCodec(), AcmeCodec()], ids=["ietf", "acme"])
def test_filters_are_subtree_filters_in_device_namespaces(codec: DeviceCodec) -> None:
    allowed = {IF_NS, ACL_NS, NAT_NS, NMD_NS} if codec.name == "ietf" else {ACME_NS}
    for flt in (codec.config_filter(CTX), codec.state_filter(CTX)):
        again = xmlkit.parse(xmlkit.to_bytes(flt))
        assert again.tag == xmlkit.qualify(xmlkit.NC_NS, "filter") and again.get("type") == "subtree"
        assert {etree.QName(top).namespace for top in again} <= allowed
        texts = {el.text for el in again.iter() if el.text}
        assert CTX.vm_id in texts
    state_texts = {el.text for el in codec.state_filter(CTX).iter() if el.text}
    assert set(CTX.macs) <= state_texts and "10.1.0.5" in state_texts


# ----------------------------------------------------------------------------- removal, inventory


def test_ietf_removal_uses_real_nat_index_when_given_current_config() -> None:
    ctx, reply, bundle, _ = load_case("ietf", "leaf-full")
    codec = IetfCodec()
    derived = codec.encode_removal(bundle, ctx)
    real = codec.encode_removal(bundle, ctx, current=reply)
    index = f"{{{NAT_NS}}}index"
    assert [e.text for e in derived.iter(index)] == ["167837701"]  # 10.1.0.5 as an integer
    assert [e.text for e in real.iter(index)] == ["7"]
    removed = [el for el in real.iter() if el.get(xmlkit.qualify(xmlkit.NC_NS, "operation")) == "remove"]
    assert {xmlkit.local_name(el) for el in removed} >= {
        "acl",
        "acl-set",
        "mapping-entry",
        "rule",
        "member",
        "mac-entry",
        "firewall-session",
        "vm-id",
    }


def test_acme_removal_resets_the_port_and_removes_owned_entries() -> None:
    ctx, _, bundle, _ = load_case("acme", "leaf-full")
    out = AcmeCodec().encode_removal(bundle, ctx)
    op = xmlkit.qualify(xmlkit.NC_NS, "operation")
    port = next(out.iter(f"{{{ACME_NS}}}port"))
    assert port.get(op) == "replace" and [xmlkit.local_name(c) for c in port] == ["name"]
    removed = sorted(xmlkit.local_name(el) for el in out.iter() if el.get(op) == "remove")
    assert removed == ["arp", "conn", "l2-fdb", "nat-xlate", "policy", "real", "snooping", "static"]


@pytest.mark.parametrize("codec", ["ietf", "acme"])
def test_inventory_lists_ports_names_owners(codec: str) -> None:
    reply = _reply(codec)
    inv = get_codec(codec).inventory(reply, reply)
    assert {p.port: p.vm_id for p in inv.ports} == {"ethernet-1/7": "vm-web-1", "ethernet-1/8": "vm-db-2"}
    assert inv.vlans == {100, 200}
    assert "vm-db-2.sql" in inv.names and "vm-web-1.web-in" in inv.names
    assert inv.owners_of("02:00:00:0a:01:09") == {"vm-db-2"}
    assert {(n.internal_address, n.external_address) for n in inv.nat} >= {("10.1.0.9", "203.0.113.9")}


def test_registry() -> None:
    assert available() == ("acme", "ietf")
    assert isinstance(get_codec("ietf"), DeviceCodec) and get_codec("acme").name == "acme"
    with pytest.raises(InputError, match="unknown codec 'junos'"):
        get_codec("junos")


# ------------------------------------------------------------------------------ YANG validation


def _yanglint(data: Any, modules: list[str], features: list[str], tmp_path: Path) -> None:
    if shutil.which("yanglint") is None:
        pytest.fail("yanglint (Debian libyang2-tools) is required")
    payload = tmp_path / "data.xml"
    payload.write_bytes(b"".join(etree.tostring(c) for c in data))
    cmd = [
        "yanglint",
        "-f",
        "xml",
        "-t",
        "config",
        "-p",
        str(REPO / "yang"),
        "-p",
        str(YANG_DIR / "ietf"),
        "-p",
        str(YANG_DIR / "iana"),
    ]
    for f in features:
        cmd += ["-F", f]
    run = subprocess.run([*cmd, *modules, str(payload)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "YANGLINT[E]" not in run.stderr, run.stderr


def test_encoded_ietf_config_is_valid_yang_data(tmp_path: Path) -> None:
    ctx, _, bundle, _ = load_case("ietf", "leaf-full")
    _yanglint(
        IetfCodec().encode(bundle, ctx),
        [
            str(REPO / "yang" / "netmig-device.yang"),
            str(YANG_DIR / "ietf" / "ietf-access-control-list.yang"),
            str(YANG_DIR / "ietf" / "ietf-nat.yang"),
            str(YANG_DIR / "iana" / "iana-if-type.yang"),
        ],
        ["ietf-access-control-list:*", "ietf-nat:basic-nat44", "netmig-device:*"],
        tmp_path,
    )


def test_encoded_acme_config_is_valid_yang_data(tmp_path: Path) -> None:
    ctx, _, bundle, _ = load_case("acme", "leaf-full")
    _yanglint(
        AcmeCodec().encode(bundle.without([PolicyKind.ND_ENTRY]), ctx),
        [str(REPO / "yang" / "acme-fabric.yang")],
        [],
        tmp_path,
    )

"""Issue 3 "Done when": centralized migrations on the two-site fabric, proved by an independent reader.

Every migration runs netmig against a private copy of examples/two-site (real NETCONF over SSH); what the
destinations hold afterwards is read back with plain ncclient and lxml XPath (not netmig's codecs), and
the expected values are derived in the test from what the *source* devices hold, translated by hand:
VLAN 110->2110 (210->1210 back), NAT pool 203.0.113.0/24 -> 198.51.100.0/24, zones inside/outside <->
trust/untrust, QoS bits/s <-> police-kbps, the VM's port on the destination bridge.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from netmig.api import migrate
from netmig.cli import main
from netmig.feedback import MigrationResult
from netmig.model import PolicyKind
from netmig.modes.centralized import DryRun
from netmig.options import MigrationOptions
from netmig.simlab import rewrite_for_fabric
from netmig.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "two-site"
NS = {"a": "urn:acme:yang:acme-fabric", "if": "urn:ietf:params:xml:ns:yang:ietf-interfaces",
      "acl": "urn:ietf:params:xml:ns:yang:ietf-access-control-list",
      "nat": "urn:ietf:params:xml:ns:yang:ietf-nat", "nmd": "urn:netmig:yang:netmig-device"}
ALL = ("a-leaf1", "a-leaf2", "a-spine1", "a-fw1", "b-leaf1", "b-spine1", "b-fw1", "b-nat1")
WEB_MAC, WEB_IP = "52:54:00:10:00:01", "10.1.10.11"
APP_MAC, APP_IP = "52:54:00:20:00:01", "10.2.10.31"
DROP_ND = MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY}))


class Lab:
    """A private two-site fabric, the topology rewritten to reach it, and an independent ncclient reader."""

    def __init__(self, fabric: Any, nc_connect: Callable[..., Any]) -> None:
        self.fabric = fabric
        self.topology: Topology
        self.topology, self.environ = rewrite_for_fabric(load_topology(EXAMPLE / "topology.yaml"),
                                                         fabric.devices_json, fabric.known_hosts)
        self._nc = nc_connect
        self._managers: dict[str, Any] = {}

    def _mgr(self, device: str) -> Any:
        if device not in self._managers:
            self._managers[device] = self._nc(self.fabric, device)
        return self._managers[device]

    def running(self, device: str) -> Any:
        return self._mgr(device).get_config(source="running").data_ele

    def state(self, device: str) -> Any:
        return self._mgr(device).get().data_ele

    def snapshot(self, devices: tuple[str, ...] = ALL) -> dict[str, bytes]:
        return {d: etree.tostring(self.running(d), method="c14n") for d in devices}

    def migrate(self, vm: str, source: str, destination: str,
                options: MigrationOptions = DROP_ND) -> MigrationResult | DryRun:
        return migrate(vm, source=source, destination=destination, topology=self.topology,
                       options=options, environ=self.environ)


@pytest.fixture
def lab(fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> Lab:
    return Lab(fresh_fabric(EXAMPLE / "fabric.yaml"), nc_connect)


def x(node: Any, path: str, **params: str) -> list[Any]:
    found = node.xpath(path, namespaces=NS, **params)
    assert isinstance(found, list)
    return found


def one(node: Any, path: str, **params: str) -> str:
    found = x(node, path, **params)
    assert len(found) == 1, f"{path} {params}: {found}"
    return str(found[0])


def texts(node: Any, path: str, **params: str) -> list[str]:
    return [str(v) for v in x(node, path, **params)]


def val(node: Any, name: str, ns: str = "a") -> str | None:
    got = x(node, f"{ns}:{name}/text()")
    return str(got[0]) if got else None


# ---------------------------------------------------------------------------------- expectations by hand

PROTO = {"6": "tcp", "17": "udp", "1": "icmp", None: "ip"}


def ietf_acl_as_acme_lines(running: Any, acl: str) -> list[tuple[Any, ...]]:
    """The acme filter-lines an IETF ACL must become (sequence order kept), derived independently."""
    lines = []
    for ace in x(running, "//acl:acl[acl:name=$n]/acl:aces/acl:ace", n=acl):
        proto = texts(ace, "acl:matches/acl:ipv4/acl:protocol/text()")
        eq = texts(ace, "acl:matches/*/acl:destination-port/acl:port/text()")
        lo = texts(ace, "acl:matches/*/acl:destination-port/acl:lower-port/text()")
        hi = texts(ace, "acl:matches/*/acl:destination-port/acl:upper-port/text()")
        dport = eq[0] if eq else f"{lo[0]}-{hi[0]}" if lo else None
        src = texts(ace, "acl:matches/acl:ipv4/acl:source-ipv4-network/text()")
        dst = texts(ace, "acl:matches/acl:ipv4/acl:destination-ipv4-network/text()")
        verdict = "allow" if one(ace, "acl:actions/acl:forwarding/text()").endswith("accept") else "block"
        lines.append((int(one(ace, "acl:name/text()")[1:]), PROTO[proto[0] if proto else None],
                      src[0] if src else None, dst[0] if dst else None, dport, verdict))
    assert lines, f"source holds no ACL {acl}"
    return [line[1:] for line in sorted(lines)]


def acme_lines(port: Any, list_name: str) -> list[tuple[Any, ...]]:
    lines = []
    for fl in x(port, "a:filter-line[a:list-name=$n]", n=list_name):
        assert val(fl, "direction") == "in"
        lines.append((int(one(fl, "a:seq/text()")), val(fl, "proto"), val(fl, "src"), val(fl, "dst"),
                      val(fl, "dport"), val(fl, "verdict")))
    return [line[1:] for line in sorted(lines)]


def acme_as_ietf_aces(port: Any, list_name: str) -> list[tuple[Any, ...]]:
    """(protocol number, src, dst, port spec, forwarding) per line, in seq order, from an acme port."""
    numbers = {"tcp": "6", "udp": "17", "icmp": "1", "ip": None}
    out = []
    for fl in sorted(x(port, "a:filter-line[a:list-name=$n]", n=list_name),
                     key=lambda f: int(one(f, "a:seq/text()"))):
        out.append((numbers[val(fl, "proto") or "ip"], val(fl, "src"), val(fl, "dst"), val(fl, "dport"),
                    "accept" if val(fl, "verdict") == "allow" else "drop"))
    assert out
    return out


def ietf_aces(running: Any, acl: str) -> list[tuple[Any, ...]]:
    out = []
    aces = x(running, "//acl:acl[acl:name=$n]/acl:aces/acl:ace", n=acl)
    for ace in sorted(aces, key=lambda a: int(one(a, "acl:name/text()")[1:])):
        proto = texts(ace, "acl:matches/acl:ipv4/acl:protocol/text()")
        eq = texts(ace, "acl:matches/*/acl:destination-port/acl:port/text()")
        lo = texts(ace, "acl:matches/*/acl:destination-port/acl:lower-port/text()")
        hi = texts(ace, "acl:matches/*/acl:destination-port/acl:upper-port/text()")
        src = texts(ace, "acl:matches/acl:ipv4/acl:source-ipv4-network/text()")
        dst = texts(ace, "acl:matches/acl:ipv4/acl:destination-ipv4-network/text()")
        fwd = one(ace, "acl:actions/acl:forwarding/text()").split(":")[-1]
        out.append((proto[0] if proto else None, src[0] if src else None, dst[0] if dst else None,
                    eq[0] if eq else f"{lo[0]}-{hi[0]}" if lo else None, fwd))
    return out


def nat_pool_b(address: str) -> str:
    """203.0.113.0/24 (site A's pool) -> 198.51.100.0/24 (site B's), same host part."""
    assert address.startswith("203.0.113.")
    return "198.51.100." + address.rsplit(".", 1)[1]


# ----------------------------------------------------------------------------------------------- tests

def test_ietf_site_to_acme_site_moves_every_kind_translated(lab: Lab) -> None:
    before = lab.snapshot()
    src_leaf, src_fw = lab.running("a-leaf1"), lab.running("a-fw1")
    src_fw_state = lab.state("a-fw1")
    result = lab.migrate("vm-web-01", "host-a1", "host-b3")
    assert isinstance(result, MigrationResult) and result.ok
    assert result.dropped == ("b-leaf1:nd-entry",)
    assert {d.device for d in result.devices} == {"b-leaf1", "b-spine1", "b-fw1", "b-nat1"}

    # b-leaf1: the port profile, QoS and ACL on ethernet-1/3, VLAN 110 -> 2110, bits/s -> kbit/s
    leaf = lab.running("b-leaf1")
    port = x(leaf, "a:acme-fabric/a:port[a:name='ethernet-1/3']")[0]
    src_if = x(src_leaf, "//if:interface[if:name='eth3']")[0]
    assert leaf_values(port, "owner", "tenant", "vlan", "mtu-bytes", "mac-limit", "mark-dscp") == \
        ("vm-web-01", "blue", "2110", one(src_if, "nmd:mtu/text()"), one(src_if, "nmd:max-macs/text()"),
         one(src_if, "nmd:qos/nmd:dscp/text()"))
    assert int(one(port, "a:police-kbps/text()")) == int(one(src_if, "nmd:qos/nmd:rate-bps/text()")) // 1000
    assert int(one(port, "a:burst-kb/text()")) == int(one(src_if, "nmd:qos/nmd:burst-bytes/text()")) // 1000
    assert acme_lines(port, "web-in") == ietf_acl_as_acme_lines(src_leaf, "vm-web-01.web-in")
    # load balancing moved from the firewall at A to the leaf at B
    real = x(leaf, "//a:slb/a:group[a:name='web']/a:real[a:ip=$ip]", ip=WEB_IP)
    assert [leaf_values(r, "port", "weight", "owner") for r in real] == [("443", "50", "vm-web-01")]
    assert x(leaf, "//a:slb//a:real[a:ip='10.1.10.12']") == []  # vm-web-02 stays at A
    # learned state seeded and merged into the live tables, on the destination port and VLAN
    tables = x(lab.state("b-leaf1"), "a:acme-fabric/a:tables")[0]
    assert leaf_values(x(tables, "a:l2-fdb[a:mac=$m]", m=WEB_MAC)[0], "vlan", "port", "owner") == \
        ("2110", "ethernet-1/3", "vm-web-01")
    assert one(tables, "a:arp[a:ip=$ip]/a:mac/text()", ip=WEB_IP) == WEB_MAC
    assert leaf_values(x(tables, "a:snooping[a:mac=$m]", m=WEB_MAC)[0], "ip", "vlan", "port") == \
        (WEB_IP, "2110", "ethernet-1/3")
    assert x(lab.state("b-leaf1"), "//a:nd") == []  # dropped, as reported

    # b-fw1: firewall rules with zones, and the firewall sessions
    fw = lab.running("b-fw1")
    for rule in x(src_fw, "//nmd:firewall/nmd:rule[nmd:vm-id='vm-web-01']"):
        name = one(rule, "nmd:name/text()")
        pol = x(fw, "//a:security/a:policy[a:id=$id]", id=name)
        assert len(pol) == 1, name
        zones = {"inside": "trust", "outside": "untrust"}
        frm, to = (one(rule, f"nmd:{z}-zone/text()") for z in ("from", "to"))
        assert one(pol[0], "a:zones/text()") == f"{zones.get(frm, frm)}>{zones.get(to, to)}"
        assert one(pol[0], "a:order/text()") == one(rule, "nmd:sequence/text()")
        assert one(pol[0], "a:then/text()") == one(rule, "nmd:action/text()")
        assert one(pol[0], "a:match/a:dport/text()") == one(rule, "nmd:destination-port/text()")
        assert one(pol[0], "a:match/a:dst/text()") == one(rule, "nmd:destination-prefix/text()")
        assert one(pol[0], "a:owner/text()") == "vm-web-01"
    assert x(fw, "//a:policy[a:id='vm-db-01.allow-sql']") == []  # another VM's rule does not follow
    src_conns = {(one(s, "nmd:source-address/text()"), one(s, "nmd:source-port/text()"))
                 for s in x(src_fw_state, "//nmd:learned/nmd:firewall-session[nmd:vm-id='vm-web-01']")}
    conns = {(one(c, "a:src/text()"), one(c, "a:sport/text()"))
             for c in x(lab.state("b-fw1"), "//a:tables/a:conn[a:owner='vm-web-01']")}
    assert conns == src_conns and len(conns) == 2

    # b-nat1: static NAT and NAT sessions in site B's pool
    src_ext = one(src_fw, "//nat:mapping-entry[nat:internal-src-address=$a]/nat:external-src-address/text()",
                  a=f"{WEB_IP}/32").split("/")[0]
    assert src_ext == "203.0.113.11"
    nat = lab.running("b-nat1")
    assert one(nat, "//a:nat/a:static[a:inside=$ip]/a:outside/text()", ip=WEB_IP) == nat_pool_b(src_ext)
    assert one(nat, "//a:nat/a:static[a:inside=$ip]/a:owner/text()", ip=WEB_IP) == "vm-web-01"
    assert one(nat, "//a:nat/a:static[a:inside=$ip]/a:outside/text()", ip=APP_IP) == "203.0.113.31"
    xlate = x(lab.state("b-nat1"), "//a:tables/a:nat-xlate[a:inside=$ip]", ip=WEB_IP)
    src_sessions = x(src_fw_state, "//nmd:learned/nmd:nat-session[nmd:vm-id='vm-web-01']")
    assert len(xlate) == len(src_sessions) == 3
    assert {one(s, "a:outside/text()") for s in xlate} == {"198.51.100.11"}
    assert {one(s, "a:inside-port/text()") for s in xlate} == \
        {one(s, "nmd:internal-port/text()") for s in src_sessions}

    # b-spine1: the VM's MAC on the new VLAN (no port: the spine learns it) and its ARP entry
    spine = x(lab.state("b-spine1"), "//a:tables")[0]
    assert one(spine, "a:l2-fdb[a:mac=$m]/a:vlan/text()", m=WEB_MAC) == "2110"
    assert one(spine, "a:arp[a:ip=$ip]/a:owner/text()", ip=WEB_IP) == "vm-web-01"

    # make before break: the source devices hold exactly what they held
    after = lab.snapshot(("a-leaf1", "a-leaf2", "a-spine1", "a-fw1"))
    assert after == {d: before[d] for d in after}
    assert x(lab.state("a-leaf1"), "//nmd:learned/nmd:mac-entry[nmd:mac=$m]", m=WEB_MAC)


def leaf_values(node: Any, *names: str, ns: str = "a") -> tuple[str | None, ...]:
    return tuple(val(node, n, ns) for n in names)


def test_acme_site_to_ietf_site_moves_every_kind_translated(lab: Lab) -> None:
    before = lab.snapshot()
    src_leaf, src_fw, src_nat = lab.running("b-leaf1"), lab.running("b-fw1"), lab.running("b-nat1")
    result = lab.migrate("vm-app-01", "host-b2", "host-a3", MigrationOptions())
    assert isinstance(result, MigrationResult) and result.ok and result.dropped == ()

    leaf = lab.running("a-leaf1")
    src_port = x(src_leaf, "//a:port[a:name='ethernet-1/2']")[0]
    iface = x(leaf, "//if:interface[if:name='eth5']")[0]
    assert leaf_values(iface, "vm-id", "tenant", "access-vlan", "mtu", "max-macs", ns="nmd") == \
        ("vm-app-01", "green", "1210", val(src_port, "mtu-bytes"), val(src_port, "mac-limit"))
    assert int(one(iface, "nmd:qos/nmd:rate-bps/text()")) == int(one(src_port, "a:police-kbps/text()")) * 1000
    assert int(one(iface, "nmd:qos/nmd:burst-bytes/text()")) == int(one(src_port, "a:burst-kb/text()")) * 1000
    assert one(iface, "nmd:qos/nmd:dscp/text()") == one(src_port, "a:mark-dscp/text()")
    assert ietf_aces(leaf, "vm-app-01.app-in") == acme_as_ietf_aces(src_port, "app-in")
    assert texts(leaf, "//acl:attachment-points/acl:interface[acl:interface-id='eth5']"
                       "/acl:ingress/acl:acl-sets/acl:acl-set/acl:name/text()") == ["vm-app-01.app-in"]
    learned = x(lab.state("a-leaf1"), "//nmd:dynamic-info/nmd:learned")[0]
    mac = x(learned, "nmd:mac-entry[nmd:mac=$m]", m=APP_MAC)[0]
    assert leaf_values(mac, "vlan", "port", "vm-id", "origin", ns="nmd") == \
        ("1210", "eth5", "vm-app-01", "seeded")
    assert one(learned, "nmd:arp-entry[nmd:ip=$ip]/nmd:origin/text()", ip=APP_IP) == "seeded"
    dhcp = x(learned, "nmd:dhcp-binding[nmd:mac=$m]", m=APP_MAC)[0]
    assert leaf_values(dhcp, "ip", "vlan", "port", ns="nmd") == (APP_IP, "1210", "eth5")

    fw = lab.running("a-fw1")
    for pol in x(src_fw, "//a:security/a:policy[a:owner='vm-app-01']"):
        rule = x(fw, "//nmd:firewall/nmd:rule[nmd:name=$n]", n=one(pol, "a:id/text()"))[0]
        back = {"trust": "inside", "untrust": "outside"}
        frm, to = one(pol, "a:zones/text()").split(">")
        got = leaf_values(rule, "from-zone", "to-zone", "action", "sequence", "destination-port", ns="nmd")
        assert got == (back[frm], back[to], val(pol, "then"), val(pol, "order"),
                       one(pol, "a:match/a:dport/text()"))
    src_out = one(src_nat, "//a:static[a:inside=$ip]/a:outside/text()", ip=APP_IP)
    entry = x(fw, "//nat:mapping-entry[nat:internal-src-address=$a]", a=f"{APP_IP}/32")
    assert len(entry) == 1 and one(entry[0], "nat:type/text()") == "static"
    # B's address is not in B's pool (198.51.100.0/24): it is kept as it is
    assert one(entry[0], "nat:external-src-address/text()") == f"{src_out}/32"
    assert leaf_values(x(fw, "//nmd:pool[nmd:name='app']/nmd:member[nmd:address=$ip]", ip=APP_IP)[0],
                       "port", "weight", "vm-id", ns="nmd") == ("8080", "100", "vm-app-01")
    fw_learned = x(lab.state("a-fw1"), "//nmd:learned")[0]
    assert len(x(fw_learned, "nmd:nat-session[nmd:vm-id='vm-app-01'][nmd:origin='seeded']")) == 2
    assert len(x(fw_learned, "nmd:firewall-session[nmd:vm-id='vm-app-01'][nmd:origin='seeded']")) == 2
    assert one(fw_learned, "nmd:arp-entry[nmd:ip=$ip]/nmd:origin/text()", ip=APP_IP) == "seeded"
    spine = x(lab.state("a-spine1"), "//nmd:learned")[0]
    assert one(spine, "nmd:mac-entry[nmd:mac=$m]/nmd:vlan/text()", m=APP_MAC) == "1210"
    # devices other than the bridge get no stray interface from the VM's identity
    for device in ("a-fw1", "a-spine1"):
        assert x(lab.running(device), "//if:interface[not(normalize-space(if:name))]") == [], device

    after = lab.snapshot(("b-leaf1", "b-spine1", "b-fw1", "b-nat1", "a-leaf2"))
    assert after == {d: before[d] for d in after}


def test_same_flavour_migration_with_cleanup_leaves_nothing_at_the_source(lab: Lab) -> None:
    before = lab.snapshot()
    result = lab.migrate("vm-web-01", "host-a1", "host-a4", MigrationOptions(cleanup_source=True))
    assert isinstance(result, MigrationResult) and result.ok and result.dropped == ()

    leaf2 = lab.running("a-leaf2")
    iface = x(leaf2, "//if:interface[if:name='eth5']")[0]
    assert leaf_values(iface, "vm-id", "tenant", "access-vlan", ns="nmd") == ("vm-web-01", "blue", "110")
    old = etree.fromstring(before["a-leaf1"])
    assert ietf_aces(leaf2, "vm-web-01.web-in") == ietf_aces(old, "vm-web-01.web-in")
    learned = x(lab.state("a-leaf2"), "//nmd:learned")[0]
    assert one(learned, "nmd:nd-entry[nmd:mac=$m]/nmd:origin/text()", m=WEB_MAC) == "seeded"  # IETF keeps ND
    assert one(learned, "nmd:mac-entry[nmd:mac=$m]/nmd:port/text()", m=WEB_MAC) == "eth5"
    # vm-db-01 on the same device is untouched
    db_before = x(etree.fromstring(before["a-leaf2"]), "//if:interface[if:name='eth3']")[0]
    assert etree.tostring(x(leaf2, "//if:interface[if:name='eth3']")[0], method="c14n") == \
        etree.tostring(db_before, method="c14n")

    # the source bridge holds nothing of the VM any more
    leaf1 = lab.running("a-leaf1")
    assert x(leaf1, "//if:interface[if:name='eth3']/nmd:*") == []
    assert x(leaf1, "//acl:acl[starts-with(acl:name, 'vm-web-01.')]") == []
    assert x(leaf1, "//acl:attachment-points/acl:interface[acl:interface-id='eth3']//acl:acl-set") == []
    assert x(leaf1, "//nmd:seeded/*[nmd:vm-id='vm-web-01']") == []
    # a-fw1 serves both hosts: it keeps the VM's policies as they were (and vm-db-01's, vm-web-02's)
    fw_before, fw_after = etree.fromstring(before["a-fw1"]), lab.running("a-fw1")
    for section in ("nmd:firewall", "nat:nat", "nmd:load-balancer", "if:interfaces"):
        assert [etree.tostring(e, method="c14n") for e in x(fw_after, f"//{section}")] == \
            [etree.tostring(e, method="c14n") for e in x(fw_before, f"//{section}")], section
    # ... and as a destination it got the learned state again (fresh seeds)
    assert len(x(fw_after, "//nmd:seeded/nmd:nat-session[nmd:vm-id='vm-web-01']")) == 3
    assert lab.snapshot(("b-leaf1", "b-fw1", "b-nat1", "b-spine1")) == \
        {d: before[d] for d in ("b-leaf1", "b-fw1", "b-nat1", "b-spine1")}


def test_dry_run_changes_nothing_anywhere(lab: Lab) -> None:
    before = lab.snapshot()
    dry = lab.migrate("vm-web-01", "host-a1", "host-b3",
                      MigrationOptions(dry_run=True, allow_drop=frozenset({PolicyKind.ND_ENTRY})))
    assert isinstance(dry, DryRun)
    assert {p.device for p in dry.planned} == {"b-leaf1", "b-spine1", "b-fw1", "b-nat1"}
    assert any("198.51.100.11" in p.edit_xml for p in dry.planned if p.device == "b-nat1")
    assert lab.snapshot() == before


def _cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["migrate", *args, "--sim", str(EXAMPLE), "--sim-state", str(tmp_path / "sim")],
                out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_text_success(tmp_path: Path) -> None:
    code, out, err = _cli(tmp_path, "vm-web-01", "--from", "host-a1", "--to", "host-b3",
                          "--allow-drop", "nd-entry")
    assert code == 0, err
    assert out.startswith("SUCCESS  vm-web-01")
    assert "dropped:  b-leaf1:nd-entry" in out
    assert "nat-static 1" in out and "firewall-rule 2" in out
    assert "Traceback" not in err


def test_cli_json_with_cleanup(tmp_path: Path, nc_connect: Callable[..., Any]) -> None:
    code, out, err = _cli(tmp_path, "vm-app-01", "--from", "host-b2", "--to", "host-a3", "--json",
                          "--cleanup-source")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["outcome"] == "SUCCESS" and doc["vm_id"] == "vm-app-01"
    moved = doc["moved"]
    assert moved["acl"] == 1 and moved["nat-session"] == 2 and moved["firewall-rule"] == 1
    devices = {d["device"]: d for d in doc["devices"]}
    assert {"a-leaf1", "a-fw1", "a-spine1", "b-leaf1", "b-fw1", "b-nat1"} <= set(devices)
    assert all(d["ok"] for d in devices.values())
    assert "cleanup-source" in doc["timings_ms"]
    # the simulator keeps its datastores in --sim-state: restart it there and read the sources back
    from netconf_sim.fabric import running_fabric
    with running_fabric(EXAMPLE / "fabric.yaml", tmp_path / "sim") as fab:
        leaf = nc_connect(fab, "b-leaf1").get_config(source="running").data_ele
        assert x(leaf, "//a:port[a:name='ethernet-1/2']/*[not(self::a:name)]") == []
        assert x(leaf, "//a:port[a:owner='vm-app-01']") == []
        for device in ("b-fw1", "b-nat1"):
            cfg = nc_connect(fab, device).get_config(source="running").data_ele
            assert x(cfg, "//*[a:owner='vm-app-01']") == [], device
        fw = nc_connect(fab, "a-fw1").get_config(source="running").data_ele
        assert x(fw, "//nmd:rule[nmd:vm-id='vm-app-01']") and x(fw, "//nmd:rule[nmd:vm-id='vm-web-01']")


def test_cli_dry_run_prints_the_edits(tmp_path: Path) -> None:
    code, out, err = _cli(tmp_path, "vm-web-01", "--from", "host-a1", "--to", "host-b3", "--allow-drop",
                          "nd-entry", "--dry-run", "--format", "xml")
    assert code == 0, err
    assert out.startswith("DRY RUN  vm-web-01: nothing was changed")
    assert "--- b-nat1" in out and "<outside>198.51.100.11</outside>" in out
    assert "<vlan>2110</vlan>" in out

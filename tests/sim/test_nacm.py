"""NACM (RFC 8341) in netconf-sim, and netmig under least-privilege accounts (issue 6, Security).

(a) plain ncclient against a one-device fabric: a denied protocol operation (access-denied, protocol),
    kill-session denied by default, close-session always allowed; a write denied by module-name
    (access-denied, application, error-path) and one permitted by a path rule in front of a broader deny,
    a mixed edit refused whole; reads silently filtered by path and by module.
(b) netmig migrates vm-web-01 with tests/data/fabrics/nacm, where its account on each device may only
    run the RPCs of the transaction and create/update the subtrees it writes on that device's model.
(c) the same with b-nat1's nat write rule removed: the migration rolls back (exit 5, one FAIL line naming
    access-denied and b-nat1) and no device changed.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree
from lxml.builder import ElementMaker
from ncclient.operations import RPCError
from netconf_sim.fabric import FabricError, load_fabric, running_fabric

from netmig.api import migrate
from netmig.cli import main
from netmig.errors import DeviceError, MigrationRolledBackError
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.simlab import sim_lab
from tests.conftest import connect_manager

ROOT = Path(__file__).resolve().parents[2]
NACM_LAB = ROOT / "tests" / "data" / "fabrics" / "nacm"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
ACL_NS = "urn:ietf:params:xml:ns:yang:ietf-access-control-list"
ACME = "urn:acme:yang:acme-fabric"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
ALL = ("a-leaf1", "a-leaf2", "a-spine1", "a-fw1", "b-leaf1", "b-spine1", "b-fw1", "b-nat1")
ADMIN = {"username": "admin", "password": "admin"}
DELETE = {f"{{{NC}}}operation": "delete"}
NCX, IFX, ACLX, ACMEX = (ElementMaker(namespace=ns, nsmap={None: ns}) for ns in (NC, IF_NS, ACL_NS, ACME))
DROP_ND = MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY}))

RULES: dict[str, Any] = {
    "read-default": "permit", "write-default": "permit", "exec-default": "permit",
    "groups": [{"name": "admin", "user-name": ["admin"]}],
    "rule-list": [
        {"name": "admin", "group": ["admin"],
         "rule": [{"name": "all", "access-operations": "*", "action": "permit"}]},
        {"name": "ops", "group": ["ops"], "rule": [
            {"name": "no-lock", "module-name": "ietf-netconf", "rpc-name": "lock",
             "access-operations": "exec", "action": "deny"},
            {"name": "no-close", "module-name": "ietf-netconf", "rpc-name": "close-session",
             "access-operations": "exec", "action": "deny"},
            {"name": "no-acl", "module-name": "ietf-access-control-list",
             "access-operations": "create update delete", "action": "deny"},
            {"name": "descr", "path": "/ietf-interfaces:interfaces/interface/description",
             "access-operations": "create update delete", "action": "permit"},
            {"name": "no-if", "path": "/ietf-interfaces:interfaces",
             "access-operations": "create update delete", "action": "deny"},
            {"name": "hide-type", "path": "/ietf-interfaces:interfaces/interface/type",
             "access-operations": "read", "action": "deny"},
            {"name": "hide-yanglib", "module-name": "ietf-yang-library", "access-operations": "read",
             "action": "deny"},
        ]},
    ],
}


def one_device(rules: dict[str, Any]) -> dict[str, Any]:
    return {"devices": {"leaf": {
        "profile": "ietf-leaf", "ports": ["eth1", "eth2"], "nacm": rules,
        "users": [{"username": "alice", "password": "alice-pw", "groups": ["ops"]}, ADMIN]}}}


@pytest.fixture
def leaf(tmp_path: Path, schema_cache: Any) -> Iterator[Any]:
    with running_fabric(one_device(RULES), tmp_path / "state", schemas=schema_cache) as fabric:
        yield fabric


def config(*children: Any) -> Any:
    return NCX.config(*children)


def iface(name: str, *leaves: Any) -> Any:
    return IFX.interfaces(IFX.interface(IFX.name(name), *leaves))


def denied(call: Callable[[], Any]) -> RPCError:
    with pytest.raises(RPCError) as info:
        call()
    assert info.value.tag == "access-denied", info.value
    return info.value


def c14n(element: Any) -> bytes:
    return etree.tostring(element, method="c14n")


# ---------------------------------------------------------------------------------- (a) rule types

def test_primary_login_is_the_first_user_and_every_account_logs_in(leaf: Any, nc_connect: Callable[..., Any]
                                                                     ) -> None:
    ep = leaf.endpoints["leaf"]
    assert (ep.username, ep.password) == ("alice", "alice-pw")
    assert nc_connect(leaf, "leaf").connected
    assert nc_connect(leaf, "leaf", **ADMIN).connected


def test_exec_denied_by_rule_and_by_default_close_session_always_allowed(
        leaf: Any, nc_connect: Callable[..., Any]) -> None:
    alice, admin = nc_connect(leaf, "leaf"), nc_connect(leaf, "leaf", **ADMIN)
    err = denied(lambda: alice.lock("candidate"))
    assert err.type == "protocol" and "lock" in (err.path or "")
    admin.lock("candidate")  # the rule is alice's group's only
    admin.unlock("candidate")
    assert alice.get_config(source="running").ok  # exec-default permit
    err = denied(lambda: alice.kill_session(admin.session_id))  # default-deny-all: no rule permits it
    assert err.type == "protocol"
    assert admin.connected
    alice.close_session()  # a deny rule on close-session is ignored (RFC 8341 3.4.4)
    assert not alice.connected


def test_write_denied_by_module_and_nothing_changes(leaf: Any, nc_connect: Callable[..., Any]) -> None:
    alice, admin = nc_connect(leaf, "leaf"), nc_connect(leaf, "leaf", **ADMIN)
    acl = config(ACLX.acls(ACLX.acl(ACLX.name("blue-in"))))
    err = denied(lambda: alice.edit_config(target="candidate", config=acl))
    assert err.type == "application"
    assert err.path == "/acl:acls"  # the first node it would create
    before = c14n(admin.get_config(source="candidate").data_ele)
    assert f"{{{ACL_NS}}}acls" not in before.decode()
    admin.edit_config(target="candidate", config=acl)  # admin may
    admin.discard_changes()


def test_write_permitted_by_path_in_front_of_a_broader_deny(leaf: Any, nc_connect: Callable[..., Any]
                                                            ) -> None:
    alice, admin = nc_connect(leaf, "leaf"), nc_connect(leaf, "leaf", **ADMIN)
    alice.edit_config(target="candidate", config=config(iface("eth1", IFX.description("uplink"))))
    alice.commit()
    running = admin.get_config(source="running").data_ele
    assert running.xpath("//i:interface[i:name='eth1']/i:description/text()", namespaces={"i": IF_NS}) == [
        "uplink"]
    err = denied(lambda: alice.edit_config(target="candidate",
                                           config=config(iface("eth1", IFX.enabled("false")))))
    assert err.type == "application" and "enabled" in (err.path or "")
    # one node denied refuses the whole edit: neither leaf changes
    both = iface("eth2", IFX.description("db"), IFX.enabled("false"))
    denied(lambda: alice.edit_config(target="candidate", config=config(both)))
    err = denied(lambda: alice.edit_config(target="candidate", config=config(
        iface("eth1", IFX.description(DELETE), IFX.enabled("false")))))
    assert "enabled" in (err.path or "")
    candidate = admin.get_config(source="candidate").data_ele
    ns = {"i": IF_NS}
    assert candidate.xpath("//i:interface[i:name='eth2']/i:description", namespaces=ns) == []
    assert candidate.xpath("//i:interface/i:enabled/text()", namespaces=ns) == ["true", "true"]
    assert candidate.xpath("//i:interface[i:name='eth1']/i:description/text()", namespaces=ns) == ["uplink"]
    # a new interface entry is a create under the denied /interfaces
    err = denied(lambda: alice.edit_config(target="candidate", config=config(iface("eth9"))))
    assert "eth9" in (err.path or "")


def test_read_filtered_by_path_and_by_module(leaf: Any, nc_connect: Callable[..., Any]) -> None:
    alice, admin = nc_connect(leaf, "leaf"), nc_connect(leaf, "leaf", **ADMIN)
    ns = {"i": IF_NS, "yl": "urn:ietf:params:xml:ns:yang:ietf-yang-library"}
    for mgr, visible in ((admin, True), (alice, False)):
        data = mgr.get_config(source="running").data_ele
        assert data.xpath("//i:interface/i:name/text()", namespaces=ns) == ["eth1", "eth2"]
        assert bool(data.xpath("//i:interface/i:type", namespaces=ns)) is visible
        assert data.xpath("//i:interface/i:enabled/text()", namespaces=ns) == ["true", "true"]
        got = mgr.get().data_ele
        assert bool(got.xpath("//yl:yang-library", namespaces=ns)) is visible
        assert bool(got.xpath("//i:interface/i:type", namespaces=ns)) is visible
        assert got.xpath("//i:interface/i:enabled/text()", namespaces=ns) == ["true", "true"]


def test_bad_nacm_section_is_one_fabric_problem() -> None:
    bad = one_device({**RULES, "rule-list": [{"name": "x", "group": ["ops"], "rule": [
        {"name": "p", "path": "/ietf-interfaces:interfaces/interface[name='eth1']", "action": "permit"}]}]})
    with pytest.raises(FabricError) as info:
        load_fabric(bad)
    assert len(info.value.problems) == 1
    assert "devices.leaf.nacm" in str(info.value) and "predicates" in str(info.value)


# ------------------------------------------------------------------ (b) netmig with least privilege

def running_all(fabric: Any) -> dict[str, bytes]:
    """Every device's running config, read over NETCONF with the admin account."""
    out = {}
    for name in ALL:
        mgr = connect_manager(fabric, name, **ADMIN)
        try:
            out[name] = c14n(mgr.get_config(source="running").data_ele)
        finally:
            mgr.close_session()
    return out


def test_netmig_migrates_with_a_least_privilege_account(tmp_path: Path) -> None:
    with sim_lab(NACM_LAB, state_dir=tmp_path / "state") as lab:
        fabric: Any = lab.fabric
        assert {d.credentials.username for d in lab.topology.devices.values()} == {"netmig"}
        # the account really is limited: no delete on b-fw1, no edit at all on a source
        mgr = connect_manager(fabric, "b-fw1")
        try:
            drop = config(ACMEX("acme-fabric", ACMEX.security(DELETE)))
            assert denied(lambda: mgr.edit_config(target="candidate", config=drop)).type == "application"
        finally:
            mgr.close_session()
        mgr = connect_manager(fabric, "a-leaf1")
        try:
            assert denied(lambda: mgr.lock("candidate")).type == "protocol"
        finally:
            mgr.close_session()
        before = running_all(fabric)
        result = migrate("vm-web-01", source="host-a1", destination="host-b3", topology=lab.topology,
                         environ=lab.environ, options=DROP_ND)
        assert result.outcome == "SUCCESS"
        after = running_all(fabric)
    assert {n for n in ALL if before[n] != after[n]} == {"b-leaf1", "b-spine1", "b-fw1", "b-nat1"}
    ns = {"a": ACME}
    leaf = etree.fromstring(after["b-leaf1"])
    assert leaf.xpath("//a:port[a:name='ethernet-1/3']/a:owner/text()", namespaces=ns) == ["vm-web-01"]
    fw = etree.fromstring(after["b-fw1"])
    assert set(fw.xpath("//a:security/a:policy[a:owner='vm-web-01']/a:id/text()", namespaces=ns)) == {
        "vm-web-01.allow-https", "vm-web-01.deny-telnet"}
    nat = etree.fromstring(after["b-nat1"])
    assert nat.xpath("//a:nat/a:static[a:owner='vm-web-01']/a:inside/text()", namespaces=ns) == ["10.1.10.11"]


# ------------------------------------------------------------------ (c) missing write access

def without_nat_write(tmp_path: Path) -> Path:
    """A copy of the NACM lab where netmig may not write b-nat1's nat subtree."""
    lab = tmp_path / "lab"
    shutil.copytree(NACM_LAB, lab)
    data = yaml.safe_load((lab / "fabric.yaml").read_text())
    netmig_rules = data["devices"]["b-nat1"]["nacm"]["rule-list"][1]
    assert netmig_rules["name"] == "netmig"
    kept = [r for r in netmig_rules["rule"] if r["name"] != "write-nat"]
    assert len(kept) == len(netmig_rules["rule"]) - 1
    data["devices"]["b-nat1"]["nacm"] = {**data["devices"]["b-nat1"]["nacm"], "rule-list": [
        data["devices"]["b-nat1"]["nacm"]["rule-list"][0], {**netmig_rules, "rule": kept}]}
    (lab / "fabric.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def test_missing_write_access_on_one_destination_rolls_back(tmp_path: Path) -> None:
    with sim_lab(without_nat_write(tmp_path), state_dir=tmp_path / "state") as lab:
        before = running_all(lab.fabric)
        with pytest.raises((MigrationRolledBackError, DeviceError)) as info:
            migrate("vm-web-01", source="host-a1", destination="host-b3", topology=lab.topology,
                    environ=lab.environ, options=DROP_ND)
        assert "access-denied" in str(info.value) and "b-nat1" in str(info.value)
        assert running_all(lab.fabric) == before


def test_cli_missing_write_access_is_one_line_and_changes_nothing(tmp_path: Path, schema_cache: Any) -> None:
    lab = without_nat_write(tmp_path)
    state = tmp_path / "state"
    with running_fabric(lab / "fabric.yaml", tmp_path / "fresh", schemas=schema_cache) as fresh:
        pristine = running_all(fresh)
    out, err = io.StringIO(), io.StringIO()
    code = main(["migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3", "--allow-drop", "nd-entry",
                 "--sim", str(lab), "--sim-state", str(state)], out=out, err=err)
    assert code in (3, 5), err.getvalue()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "access-denied" in lines[0] and "b-nat1" in lines[0]
    with running_fabric(lab / "fabric.yaml", state, schemas=schema_cache) as again:  # the same datastores
        assert running_all(again) == pristine

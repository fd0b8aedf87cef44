"""Issue 2 checks that no other test covered: per-device deviations, edit-config options over the wire,
and the ``netconf-sim serve`` lifecycle (SIGINT, restart with persisted datastores, rollback at stop).

Every device here is reached with ncclient over real SSH on 127.0.0.1, host keys verified against the
fabric's known_hosts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError
from netconf_sim.fabric import FabricError, load_fabric
from netconf_sim.profiles import IF_NS, NMD_NS

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
YANGLIB_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
NS = {"if": IF_NS, "nmd": NMD_NS, "yl": YANGLIB_NS}
DEV_MODULE = "lab-leaf-deviations"
DEVIATION_YANG = f"""module {DEV_MODULE} {{
  yang-version 1.1;
  namespace "urn:lab:yang:{DEV_MODULE}";
  prefix lab-dev;
  import ietf-interfaces {{ prefix if; }}
  organization "netmig tests";
  contact "netmig";
  description "A leaf that cannot store interface descriptions.";
  revision 2026-11-01 {{ description "Initial."; }}
  deviation "/if:interfaces/if:interface/if:description" {{
    deviate not-supported;
  }}
}}
"""


def _xml(reply: Any) -> etree._Element:
    return etree.fromstring(reply.xml.encode())


def _vals(root: etree._Element, path: str) -> list[str]:
    return [str(v) for v in root.xpath(path, namespaces=NS)]


def _config(*children: str) -> str:
    return f'<config xmlns="{NC}" xmlns:nc="{NC}">{"".join(children)}</config>'


def _iface(body: str, op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    return f'<interface{attr}>{body}</interface>'


def _ifaces(*entries: str) -> str:
    return f'<interfaces xmlns="{IF_NS}">{"".join(entries)}</interfaces>'


def _names(mgr: Any, source: str) -> list[str]:
    return _vals(_xml(mgr.get_config(source=source)), "//if:interface/if:name/text()")


def _canon(mgr: Any, source: str) -> bytes:
    return etree.tostring(_xml(mgr.get_config(source=source))[0], method="c14n")


def _write_fabric(base: Path, *, deviations: bool = True) -> Path:
    (base / "yang").mkdir(parents=True, exist_ok=True)
    (base / "yang" / f"{DEV_MODULE}.yang").write_text(DEVIATION_YANG)
    extra = f"    deviations: [yang/{DEV_MODULE}.yang]\n" if deviations else ""
    text = ("devices:\n"
            "  lab-leaf1:\n    profile: ietf-leaf\n    username: admin\n    password: admin\n"
            f"    ports: [eth1, eth2]\n{extra}"
            "  lab-leaf2:\n    profile: ietf-leaf\n    username: admin\n    password: admin\n"
            "    ports: [eth1, eth2]\n")
    fabric = base / "fabric.yaml"
    fabric.write_text(text)
    return fabric


# -- deviations per device ---------------------------------------------------------------------------
def test_deviation_module_removes_node_on_that_device_only(
        fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any], tmp_path: Path) -> None:
    fab = fresh_fabric(_write_fabric(tmp_path / "lab"))
    deviated, plain = nc_connect(fab, "lab-leaf1"), nc_connect(fab, "lab-leaf2")
    caps = list(deviated.server_capabilities)
    ifcap = next(c for c in caps if "module=ietf-interfaces" in c)
    assert f"deviations={DEV_MODULE}" in ifcap
    assert any(f"module={DEV_MODULE}" in c for c in caps)
    assert not any("deviations=" in c for c in plain.server_capabilities)
    lib = _xml(deviated.get(filter=("subtree", f'<yang-library xmlns="{YANGLIB_NS}"/>')))
    assert _vals(lib, "//yl:module[yl:name='ietf-interfaces']/yl:deviation/text()") == [DEV_MODULE]
    assert "deviate not-supported" in deviated.get_schema(DEV_MODULE).data
    with pytest.raises(RPCError) as info:
        plain.get_schema(DEV_MODULE)
    assert info.value.tag == "invalid-value"
    edit = _config(_ifaces(_iface("<name>eth1</name><description>uplink</description>")))
    before = _canon(deviated, "candidate")
    with pytest.raises(RPCError) as info:
        deviated.edit_config(target="candidate", config=edit)
    assert info.value.tag == "unknown-element"
    assert info.value.path == "/if:interfaces/if:interface[if:name='eth1']", info.value.path
    assert info.value.info is not None and "<bad-element>description</bad-element>" in info.value.info
    assert _canon(deviated, "candidate") == before
    plain.edit_config(target="candidate", config=edit)
    plain.commit()
    assert _vals(_xml(plain.get_config(source="running")),
                 "//if:interface[if:name='eth1']/if:description/text()") == ["uplink"]


def test_bad_deviation_entries_are_one_line_errors(tmp_path: Path) -> None:
    fabric = _write_fabric(tmp_path)
    (tmp_path / "notyang.txt").write_text("x")
    text = fabric.read_text().replace(f"[yang/{DEV_MODULE}.yang]", "[yang/missing.yang, notyang.txt]")
    fabric.write_text(text)
    with pytest.raises(FabricError) as info:
        load_fabric(fabric)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{fabric}:7: devices.lab-leaf1.deviations[0]: no such file")
    assert problems[1].startswith(f"{fabric}:7: devices.lab-leaf1.deviations[1]: 'notyang.txt' is not a")
    assert all("\n" not in p for p in problems)


def test_deviation_module_that_does_not_parse_names_the_device(tmp_path: Path) -> None:
    from netconf_sim.fabric import Fabric

    fabric = _write_fabric(tmp_path)
    (tmp_path / "yang" / f"{DEV_MODULE}.yang").write_text("module lab-leaf-deviations { broken")
    with pytest.raises(FabricError) as info:
        Fabric(load_fabric(fabric), tmp_path / "state")
    assert len(info.value.problems) == 1
    assert "devices.lab-leaf1.deviations: " in info.value.problems[0]
    assert DEV_MODULE in info.value.problems[0]


# -- edit-config options over the wire ----------------------------------------------------------------
def test_test_option_test_only_checks_without_changing(
        fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any], tmp_path: Path) -> None:
    mgr = nc_connect(fresh_fabric(_write_fabric(tmp_path, deviations=False)), "lab-leaf1")
    before = _canon(mgr, "candidate")
    ok = _config(_ifaces(_iface(f'<name>eth2</name><access-vlan xmlns="{NMD_NS}">220</access-vlan>')))
    mgr.edit_config(target="candidate", config=ok, test_option="test-only")
    assert _canon(mgr, "candidate") == before
    bad = _config(_ifaces(_iface(f'<name>eth2</name><access-vlan xmlns="{NMD_NS}">5000</access-vlan>')))
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=bad, test_option="test-only")
    assert info.value.tag == "invalid-value" and "access-vlan" in (info.value.path or "")
    assert _canon(mgr, "candidate") == before
    mgr.edit_config(target="candidate", config=ok, test_option="test-then-set")
    assert _vals(_xml(mgr.get_config(source="candidate")),
                 "//if:interface[if:name='eth2']/nmd:access-vlan/text()") == ["220"]


def _two_part_edit() -> str:
    """A good change to eth2 followed by a create of eth1, which exists: data-exists."""
    return _config(_ifaces(
        _iface(f'<name>eth2</name><access-vlan xmlns="{NMD_NS}">230</access-vlan>'),
        _iface(f"<name>eth1</name><type xmlns:ianaift='{IANAIFT}'>ianaift:ethernetCsmacd</type>",
               op="create"),
        _iface(f'<name>eth3</name><type xmlns:ianaift="{IANAIFT}">ianaift:ethernetCsmacd</type>')))


@pytest.mark.parametrize("option", ["rollback-on-error", "stop-on-error"])
def test_error_option_rollback_and_stop_leave_candidate_unchanged(
        fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any], tmp_path: Path,
        option: str) -> None:
    mgr = nc_connect(fresh_fabric(_write_fabric(tmp_path, deviations=False)), "lab-leaf1")
    assert ":rollback-on-error" in " ".join(mgr.server_capabilities)
    before = _canon(mgr, "candidate")
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=_two_part_edit(), error_option=option)
    assert info.value.tag == "data-exists"
    assert "eth1" in (info.value.path or ""), info.value.path
    assert _canon(mgr, "candidate") == before


def test_error_option_continue_on_error_applies_the_rest(
        fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any], tmp_path: Path) -> None:
    mgr = nc_connect(fresh_fabric(_write_fabric(tmp_path, deviations=False)), "lab-leaf1")
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=_two_part_edit(), error_option="continue-on-error")
    assert info.value.tag == "data-exists"
    cand = _xml(mgr.get_config(source="candidate"))
    assert _vals(cand, "//if:interface[if:name='eth2']/nmd:access-vlan/text()") == ["230"]
    assert "eth3" in _vals(cand, "//if:interface/if:name/text()")


def test_default_operation_none_and_replace(fresh_fabric: Callable[..., Any],
                                            nc_connect: Callable[..., Any], tmp_path: Path) -> None:
    mgr = nc_connect(fresh_fabric(_write_fabric(tmp_path, deviations=False)), "lab-leaf1")
    # none: an element without an operation touches nothing; a missing target is data-missing
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", default_operation="none",
                        config=_config(_ifaces(_iface("<name>eth9</name><description>x</description>"))))
    assert info.value.tag == "data-missing"
    mgr.edit_config(target="candidate", default_operation="none", config=_config(_ifaces(_iface(
        '<name>eth1</name><enabled>false</enabled><description nc:operation="merge">kept</description>'))))
    cand = _xml(mgr.get_config(source="candidate"))
    assert _vals(cand, "//if:interface[if:name='eth1']/if:description/text()") == ["kept"]
    assert _vals(cand, "//if:interface[if:name='eth1']/if:enabled/text()") != ["false"]
    # replace: the whole datastore becomes exactly the given config
    mgr.edit_config(target="candidate", default_operation="replace", config=_config(_ifaces(_iface(
        f"<name>eth7</name><type xmlns:ianaift='{IANAIFT}'>ianaift:ethernetCsmacd</type>"))))
    assert _names(mgr, "candidate") == ["eth7"]
    assert _names(mgr, "running") == ["eth1", "eth2"]
    mgr.discard_changes()
    assert _names(mgr, "candidate") == ["eth1", "eth2"]


# -- netconf-sim serve: SIGINT, restart, datastores kept, pending confirmed commit rolled back -------------
@contextmanager
def _serve(fabric: Path, state: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, int]]]:
    command = [sys.executable, "-m", "netconf_sim.cli", "serve", str(fabric), "--state-dir", str(state),
               "--ephemeral"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert all(line.startswith("ready lab-leaf") for line in lines), lines
        yield proc, {line.split()[1]: int(line.split()[2].rsplit(":", 1)[1]) for line in lines}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _connect(state: Path, port: int) -> Any:
    records = json.loads((state / "devices.json").read_text())["devices"]
    assert any(r["port"] == port for r in records)
    return manager.connect(host="127.0.0.1", port=port, username="admin", password="admin",
                           hostkey_verify=True, ssh_config=str(state / "ssh_config"), allow_agent=False,
                           look_for_keys=False, timeout=30)


def test_serve_sigint_stops_cleanly_and_restart_keeps_committed_config(tmp_path: Path) -> None:
    fabric, state = _write_fabric(tmp_path / "lab", deviations=False), tmp_path / "state"
    with _serve(fabric, state) as (proc, ports):
        mgr = _connect(state, ports["lab-leaf2"])
        mgr.edit_config(target="candidate", config=_config(_ifaces(
            _iface("<name>eth1</name><description>survives</description>"))))
        mgr.commit()
        mgr.edit_config(target="candidate", config=_config(_ifaces(
            _iface("<name>eth2</name><description>pending</description>"))))
        mgr.commit(confirmed=True, timeout="600")  # never confirmed: the stop must roll it back
        assert "pending" in etree.tostring(_xml(mgr.get_config(source="running"))).decode()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped") and "Traceback" not in err, err
    with _serve(fabric, state) as (proc, ports):
        mgr = _connect(state, ports["lab-leaf2"])  # same host key: known_hosts still verifies
        running = _xml(mgr.get_config(source="running"))
        assert _vals(running, "//if:interface[if:name='eth1']/if:description/text()") == ["survives"]
        assert _vals(running, "//if:interface[if:name='eth2']/if:description/text()") == []
        mgr.close_session()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0

"""Issue 3 "Done when", the failure side: every refusal or failure leaves every device as it was.

(a) a destination lacking a module or feature fails before any change; (b) a conflicting entry on a
destination fails naming it (or is skipped and reported with skip-conflicting); (c) a destination
rejecting the edit at validate or commit rolls every destination back; (d) wrong VM / host / topology
give one line and exit 2; (e) an unreachable device gives exit 3. Device state is read with plain ncclient.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from devicelab import ALL_DEVICES, DeviceLab
from ncclient.xml_ import to_ele

from netmig.api import migrate
from netmig.check import ConflictPolicy
from netmig.cli import main
from netmig.errors import (
    ConnectError,
    MigrationRolledBackError,
    PolicyConflictError,
    UnsupportedPolicyError,
)
from netmig.feedback import MigrationResult
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.settings import Timeouts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "two-site"
NO_NAT = ROOT / "tests" / "data" / "fabrics" / "fw-without-nat"
ACME = "urn:acme:yang:acme-fabric"
NS = {"a": ACME, "nmd": "urn:netmig:yang:netmig-device", "nat": "urn:ietf:params:xml:ns:yang:ietf-nat"}
ALL = ALL_DEVICES
K = PolicyKind
DROP_ND = frozenset({K.ND_ENTRY})
FAST = Timeouts(connect_s=3, rpc_s=10, connect_attempts=1, connect_backoff_s=0)


class Lab(DeviceLab):
    """The example fabric plus helpers to break it."""

    def migrate(self, vm: str, source: str, destination: str, **options: Any) -> Any:
        opts = MigrationOptions(**{"allow_drop": DROP_ND, **options})
        return migrate(vm, source=source, destination=destination, topology=self.topology, options=opts,
                       environ=self.environ)

    def preload(self, device: str, config: str) -> None:
        """Commit ``config`` on ``device`` with ncclient (another VM's entry, put there by someone else)."""
        mgr = self.mgr(device)
        mgr.edit_config(target="candidate", config=to_ele(config))
        mgr.commit()


@pytest.fixture
def lab(fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> Lab:
    return Lab(fresh_fabric(EXAMPLE / "fabric.yaml"), EXAMPLE, nc_connect)


def acme(body: str) -> str:
    return (f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><acme-fabric xmlns="{ACME}">'
            f"{body}</acme-fabric></config>")


# ------------------------------------------------------------------------- (a) capability, before change

def test_destination_without_the_module_or_feature_fails_before_any_change(
        fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> None:
    lab = Lab(fresh_fabric(NO_NAT / "fabric.yaml"), NO_NAT, nc_connect)
    before = lab.snapshot()
    with pytest.raises(UnsupportedPolicyError) as feature:
        lab.migrate("vm-app-01", "host-b2", "host-a3")
    assert feature.value.device == "a-fw1" and feature.value.kind == "firewall-rule"
    assert "feature netmig-device:firewall not supported" in str(feature.value)
    allowed = frozenset({K.FIREWALL_RULE, K.FIREWALL_SESSION, K.LB_MEMBER, K.NAT_SESSION})
    with pytest.raises(UnsupportedPolicyError, match="a-fw1: cannot express nat-static: module ietf-nat"):
        lab.migrate("vm-app-01", "host-b2", "host-a3", allow_drop=allowed)
    assert lab.snapshot() == before


def test_cli_reports_the_missing_feature_in_one_line_with_exit_4(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["migrate", "vm-app-01", "--from", "host-b2", "--to", "host-a3", "--sim", str(NO_NAT),
                 "--sim-state", str(tmp_path / "sim")], out=out, err=err)
    assert code == 4
    assert err.getvalue().count("\n") == 1 and "a-fw1: cannot express firewall-rule" in err.getvalue()


# --------------------------------------------------------------------------------------- (b) conflicts

CONFLICTS = {
    "nat": ("b-nat1", acme("<nat><static><inside>10.2.99.9</inside><outside>198.51.100.11</outside>"
                           "<owner>vm-other</owner></static></nat>"), "198.51.100.11", K.NAT_STATIC),
    "port": ("b-leaf1", acme("<port><name>ethernet-1/3</name><owner>vm-other</owner><tenant>red</tenant>"
                             "<vlan>300</vlan></port>"), "vm-other", None),
}


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_conflicting_entry_on_a_destination_fails_naming_it_and_changes_nothing(lab: Lab, case: str) -> None:
    device, config, needle, _ = CONFLICTS[case]
    lab.preload(device, config)
    before = lab.snapshot()
    with pytest.raises(PolicyConflictError) as info:
        lab.migrate("vm-web-01", "host-a1", "host-b3")
    assert info.value.exit_code == 4
    conflicts = info.value.conflicts
    assert any(c.startswith(f"{device}: ") and needle in c for c in conflicts), conflicts
    assert lab.snapshot() == before


def test_skip_conflicting_moves_the_rest_and_reports_the_conflict(lab: Lab) -> None:
    device, config, needle, kind = CONFLICTS["nat"]
    lab.preload(device, config)
    result = lab.migrate("vm-web-01", "host-a1", "host-b3", on_conflict=ConflictPolicy.SKIP)
    assert isinstance(result, MigrationResult) and result.ok
    assert len(result.conflicts) == 1 and result.conflicts[0].startswith("b-nat1: nat-static: ")
    assert needle in result.conflicts[0]
    nat = lab.running("b-nat1")
    assert nat.xpath("//a:nat/a:static[a:inside='10.1.10.11']", namespaces=NS) == []  # skipped
    assert nat.xpath("//a:static[a:inside='10.2.99.9']/a:owner/text()", namespaces=NS) == ["vm-other"]
    # every other kind moved: the policies on b-fw1 and the NAT sessions on b-nat1 itself
    assert len(nat.xpath("//a:preload/a:nat-xlate[a:owner='vm-web-01']", namespaces=NS)) == 3
    assert len(lab.running("b-fw1").xpath("//a:policy[a:owner='vm-web-01']", namespaces=NS)) == 2
    assert kind is K.NAT_STATIC


# ----------------------------------------------------------------------- (c) rejected edit -> rollback

@pytest.mark.parametrize(("device", "operation"), [("b-nat1", "validate"), ("b-fw1", "confirmed-commit"),
                                                   ("b-leaf1", "edit-config")])
def test_a_destination_rejecting_the_change_rolls_every_destination_back(lab: Lab, device: str,
                                                                        operation: str) -> None:
    before = lab.snapshot()
    lab.fabric.device(device).faults.set(kind="rpc-error", operation=operation, error_tag="operation-failed")
    with pytest.raises(MigrationRolledBackError) as info:
        lab.migrate("vm-web-01", "host-a1", "host-b3")
    lab.fabric.device(device).faults.clear()
    assert info.value.exit_code == 5
    failed = [o.device for o in info.value.outcomes if not o.ok]
    assert device in failed, info.value.outcomes
    assert lab.snapshot() == before  # every destination read back as it was, every source intact
    for name in ("b-leaf1", "b-spine1", "b-fw1", "b-nat1"):
        state = lab.mgr(name).get().data_ele
        assert state.xpath("//a:tables/*[a:owner='vm-web-01']", namespaces=NS) == [], name


# ------------------------------------------------------------------------- (d) input errors via the CLI

@pytest.mark.parametrize(("argv", "needle"), [
    (["vm-nope-99", "--from", "host-a3", "--to", "host-b3"], "no source device holds anything"),
    (["vm-nope-99", "--from", "host-a1", "--to", "host-b3"], "belongs to VM 'vm-web-01'"),
    (["vm-web-01", "--from", "host-a1", "--to", "host-q9"], "unknown host 'host-q9'"),
    (["vm-web-01", "--from", "host-a1", "--to", "host-a1"], "are the same"),
])
def test_wrong_vm_or_host_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], needle: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["migrate", *argv, "--sim", str(EXAMPLE), "--sim-state", str(tmp_path / "sim")], out=out,
                err=err)
    assert code == 2 and out.getvalue() == ""
    text = err.getvalue()
    assert text.count("\n") == 1 and needle in text and "Traceback" not in text


def test_malformed_topology_in_a_sim_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "fabric.yaml").write_text((EXAMPLE / "fabric.yaml").read_text().replace(
        "config: config/", f"config: {EXAMPLE}/config/"))
    (lab / "topology.yaml").write_text((EXAMPLE / "topology.yaml").read_text().replace(
        "host-b3: {site: B, bridge: b-leaf1", "host-b3: {site: B, bridge: b-leaf9"))
    err = io.StringIO()
    code = main(["migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3", "--sim", str(lab),
                 "--sim-state", str(tmp_path / "sim")], out=io.StringIO(), err=err)
    assert code == 2
    text = err.getvalue()
    assert text.count("\n") == 1 and "b-leaf9" in text and "topology.yaml:" in text


# ------------------------------------------------------------------------------- (e) unreachable device

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_destination_fails_with_connect_error_and_changes_nothing(lab: Lab) -> None:
    before = lab.snapshot()
    devices = dict(lab.topology.devices)
    devices["b-nat1"] = replace(devices["b-nat1"], port=closed_port())
    topology = replace(lab.topology, devices=devices)
    with pytest.raises(ConnectError) as info:
        migrate("vm-web-01", source="host-a1", destination="host-b3", topology=topology, environ=lab.environ,
                options=MigrationOptions(allow_drop=DROP_ND, timeouts=FAST))
    assert info.value.device.startswith("b-nat1 (127.0.0.1:") and info.value.exit_code == 3
    assert lab.snapshot() == before


def test_cli_unreachable_device_exit_3(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A topology file (not --sim) with the real ports, except a-fw1 pointing at a closed port."""
    before = lab.snapshot()
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    for name, device in doc["devices"].items():
        ep = lab.fabric.endpoints[name]
        device.update({"port": ep.port, "username": ep.username, "password-env": "NETMIG_TEST_PW"})
    doc["devices"]["a-fw1"]["port"] = closed_port()
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("NETMIG_TEST_PW", lab.fabric.endpoints["a-fw1"].password)
    out, err = io.StringIO(), io.StringIO()
    code = main(["migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3", "--allow-drop", "nd-entry",
                 "--topology", str(path), "--known-hosts", str(lab.fabric.known_hosts)], out=out, err=err)
    assert code == 3, err.getvalue()
    assert err.getvalue().count("\n") == 1 and "a-fw1" in err.getvalue() and "Traceback" not in err.getvalue()
    assert lab.snapshot() == before

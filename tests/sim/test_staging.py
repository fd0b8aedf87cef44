"""Pre-staging over SSH: stage while the VM runs, commit at suspension with only the changed learned state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from netmig import staging
from netmig.errors import InputError, MigrationRolledBackError
from netmig.feedback import Outcome
from netmig.model import PolicyKind, VmBundle
from netmig.model.bundle import from_dict
from netmig.options import MigrationOptions
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site"
OPTIONS = MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY}))


def _lab(fresh_fabric: Any) -> tuple[Any, Any, dict[str, str]]:
    fabric = fresh_fabric(EXAMPLE / "fabric.yaml")
    topo, environ = rewrite_for_fabric(load_topology(EXAMPLE / "topology.yaml"), fabric.devices_json,
                                       fabric.known_hosts)
    return fabric, topo, environ


def _running(fabric: Any, device: str) -> str:
    return etree.tostring(fabric.device(device).engine.running_view()).decode()


def _sessions(fabric: Any, device: str) -> list[dict[str, Any]]:
    return [dict(e.fields) for e in fabric.device(device).learned.entries("firewall-session")]


def test_stage_then_commit_moves_new_learned_state_and_times_the_suspension(fresh_fabric: Any) -> None:
    fabric, topo, environ = _lab(fresh_fabric)
    stage = staging.prepare("vm-web-01", source="host-a1", destination="host-b3", topology=topo,
                            environ=environ, options=OPTIONS)
    assert stage.staged and "vm-web-01" not in _running(fabric, "b-fw1")
    assert fabric.device("b-fw1").engine.candidate_dirty()  # staged, not committed
    # while staged, the VM opens a new connection at the source
    fabric.device("a-fw1").learned.add("firewall-session", vm_id="vm-web-01", protocol="tcp",
                                       source_address="10.1.10.11", source_port=41234,
                                       destination_address="192.0.2.9", destination_port=443,
                                       state="established")
    result = stage.commit()
    assert result.outcome is Outcome.SUCCESS and not stage.staged
    assert result.timings_ms["suspension"] > 0 and "pre-copy" in result.timings_ms
    assert result.timings_ms["suspension.pull-state"] <= result.timings_ms["suspension"]
    assert "vm-web-01" in _running(fabric, "b-fw1")
    assert any(s["source-port"] == "41234" for s in _sessions(fabric, "b-fw1"))
    assert any(s["source-port"] == "50000" and s["destination-address"] == "10.1.10.11"
               for s in _sessions(fabric, "b-fw1"))  # the pre-copied ones are there too
    assert not fabric.device("b-fw1").engine.candidate_dirty()
    with pytest.raises(InputError, match="already committed"):
        stage.commit()


def test_a_staged_candidate_lost_on_the_device_is_caught_by_the_verify(fresh_fabric: Any) -> None:
    """The suspension's verify skips decoding only when running answers the very bytes the staged
    candidate answered (verified during the pre-copy); a device that loses the staged edit (as netconfd
    does after validate) commits nothing, and the migration must roll back everywhere."""
    fabric, topo, environ = _lab(fresh_fabric)
    before = {d: _running(fabric, d) for d in ("b-leaf1", "b-fw1", "b-nat1")}
    stage = staging.prepare("vm-web-01", source="host-a1", destination="host-b3", topology=topo,
                            environ=environ, options=OPTIONS)
    fabric.device("b-fw1").engine.discard_changes()  # the device drops the staged change behind our back
    with pytest.raises(MigrationRolledBackError, match=r"b-fw1.*verify: running lacks the change"):
        stage.commit()
    assert {d: _running(fabric, d) for d in before} == before


def test_unchanged_learned_state_is_not_decoded_again_at_suspension(fresh_fabric: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fabric, topo, environ = _lab(fresh_fabric)
    stage = staging.prepare("vm-web-01", source="host-a1", destination="host-b3", topology=topo,
                            environ=environ, options=OPTIONS)
    decoded: list[str] = []
    for name, handle in stage._handles.items():
        real = handle.codec.decode
        monkeypatch.setattr(handle.codec, "decode",
                            lambda *a, _real=real, _name=name, **k: decoded.append(_name) or _real(*a, **k))
    result = stage.commit()
    assert result.ok and decoded == []  # same bytes as the pre-copy's read: its decode is reused
    assert any(s["source-port"] == "50000" and s["destination-address"] == "10.1.10.11"
               for s in _sessions(fabric, "b-fw1"))  # and the pre-copied learned state landed


def test_abort_discards_and_unlocks(fresh_fabric: Any) -> None:
    fabric, topo, environ = _lab(fresh_fabric)
    before = _running(fabric, "b-leaf1")
    with staging.prepare("vm-web-01", source="host-a1", destination="host-b3", topology=topo,
                         environ=environ, options=OPTIONS) as stage:
        assert fabric.device("b-leaf1").engine.candidate_dirty()
    assert not stage.staged
    assert not fabric.device("b-leaf1").engine.candidate_dirty()
    assert _running(fabric, "b-leaf1") == before
    # the candidates are unlocked: a second staging and commit go through
    again = staging.prepare("vm-web-01", source="host-a1", destination="host-b3", topology=topo,
                            environ=environ, options=OPTIONS)
    assert again.commit().ok
    assert "vm-web-01" in _running(fabric, "b-leaf1")


def test_di_delta_ignores_timers_and_sees_changes_and_removals() -> None:
    def bundle(*sessions: tuple[int, int, str]) -> VmBundle:
        return from_dict(VmBundle, {"vm-id": "vm-1", "dynamic": {"firewall-session": [
            {"protocol": "tcp", "source-address": "192.0.2.1", "source-port": port,
             "destination-address": "10.0.0.1", "destination-port": 443, "state": state, "expiry-s": expiry}
            for port, expiry, state in sessions]}})
    before = bundle((1, 100, "established"), (2, 100, "established"), (3, 100, "established"))
    after = bundle((1, 40, "established"), (2, 40, "closing"), (4, 100, "new"))
    delta = staging.di_delta(before, after)
    assert [s.source_port for s in delta.added.dynamic.firewall_session] == [2, 4]
    assert [s.source_port for s in delta.removed.dynamic.firewall_session] == [3]
    assert staging.di_delta(before, before).empty


def test_cli_prepare_then_commit_migration_from_another_process(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    sockets = tmp_path / "sock"
    prep = subprocess.Popen([sys.executable, "-m", "netmig.cli", "prepare", "vm-web-01", "--from", "host-a1",
                             "--to", "host-b3", "--sim", str(EXAMPLE), "--allow-drop", "nd-entry",
                             "--socket-dir", str(sockets), "--hold", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert prep.stdout is not None
        line = prep.stdout.readline()
        assert line.startswith("STAGED "), (line, prep.stderr.read() if prep.stderr else "")
        stage_id = line.split()[1]
        assert (sockets / f"{stage_id}.sock").exists()
        done = subprocess.run([sys.executable, "-m", "netmig.cli", "commit-migration", stage_id, "--json",
                               "--socket-dir", str(sockets)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert reply["outcome"] == "SUCCESS" and reply["vm_id"] == "vm-web-01"
        assert {"suspension", "pre-copy", "suspension.commit"} <= set(reply["timings_ms"])
        assert prep.wait(timeout=60) == 0
        assert not (sockets / f"{stage_id}.sock").exists()
    finally:
        if prep.poll() is None:
            prep.kill()
            prep.wait()

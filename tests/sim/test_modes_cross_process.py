"""Two coordinator processes at once, every mode: migrations of different VMs through the same devices.

Inside one process migrations queue per device (netmig.devicegate); two ``netmig migrate`` runs meet
only the devices' own candidate locks and pending confirmed commits. vm-web-01 (host-a1) and vm-db-01
(host-a2) both move to site B's leaf b-leaf1, so both write b-leaf1, b-spine1 and the middleboxes. Each
run is a child ``python`` process driving the real CLI (``netmig.cli.main``) against a fabric served by
this test process; the two children are released together. With the default bound both must succeed
and leave the devices as two sequential migrations do; with a tiny ``busy_wait_s`` (and the first
confirming commit on b-leaf1 held back so the devices stay busy), the loser fails with one clear line
naming a busy device, a non-zero exit code, and nothing of its migration anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from netconf_sim.faults import FaultRule
from test_modes import SITE_A, SITE_B, lab, run, running_configs

from netmig.options import Mode

MODES = [Mode.CENTRALIZED, Mode.MIDDLE, Mode.D_PUSH, Mode.D_PULL]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site"
JOBS = (("vm-web-01", "host-a1", "host-b3", "52:54:00:10:00:01"),
        ("vm-db-01", "host-a2", "host-b1", "52:54:00:10:00:02"))

# The child: the real CLI, with the fabric's topology and a chosen busy_wait_s; it waits for the go file.
CHILD = """
import sys, time
from dataclasses import replace
from pathlib import Path
from netmig import cli
from netmig.settings import Timeouts
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology

example, devices_json, known_hosts, busy, ready, go = sys.argv[1:7]
topology, _ = rewrite_for_fabric(load_topology(Path(example) / "topology.yaml"), Path(devices_json),
                                 Path(known_hosts))
cli.load_topology = lambda _path: topology
base = cli._options
cli._options = lambda args: replace(base(args), timeouts=Timeouts(busy_wait_s=float(busy)))
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.002)
sys.exit(cli.main(sys.argv[7:]))
"""


def _together(running: Any, tmp_path: Path, mode: Mode | tuple[Mode, Mode],
              busy_wait_s: float) -> list[subprocess.CompletedProcess[str]]:
    """Both migrations in two child processes released at the same moment (one mode for both, or one
    per job); their completed processes."""
    modes = mode if isinstance(mode, tuple) else (mode, mode)
    fabric = running.fabric
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETMIG_SIM_PASSWORD")}
    env.update(running.environ)
    go = tmp_path / f"go-{time.monotonic_ns()}"
    children = []
    for i, (vm, source, destination, _) in enumerate(JOBS):
        ready = tmp_path / f"ready-{i}-{time.monotonic_ns()}"
        argv = ["migrate", vm, "--from", source, "--to", destination, "--topology", "unused.yaml",
                "--mode", modes[i].value, "--allow-drop", "nd-entry"]
        children.append((ready, subprocess.Popen(
            [sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json), str(fabric.known_hosts),
             str(busy_wait_s), str(ready), str(go), *argv],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in children):
        assert time.monotonic() < deadline, "children did not start"
        assert all(p.poll() is None for _, p in children), [p.communicate() for _, p in children]
        time.sleep(0.01)
    go.touch()
    done = []
    for _, proc in children:
        out, err = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _quiet(running: Any) -> None:
    """No device keeps a pending confirmed commit or a candidate lock."""
    fabric = running.fabric
    for name in (*SITE_A, *SITE_B):
        runtime = fabric.call(lambda n=name: fabric.device(n).runtime)
        assert fabric.call(lambda r=runtime: r.pending) is None, f"{name}: a confirmed commit is pending"
        assert fabric.call(lambda r=runtime: dict(r.locks)) == {}, f"{name}: a lock is held"


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_serialize_and_both_move(tmp_path: Path, mode: Mode) -> None:
    """Both succeed; the devices end as after the two migrations one after the other. The first
    confirming commit on b-leaf1 is held back 2 s, so the other process surely meets b-leaf1 busy
    (its lock, or its pending confirmed commit) and has to wait rather than fail."""
    names = (*SITE_A, *SITE_B)
    with lab(tmp_path) as running:
        for vm, source, destination, _ in JOBS:
            assert run(running, tmp_path, mode, vm, source, destination, deadline_s=30).ok
        sequential = running_configs(running, names)
    with lab(tmp_path) as running:
        before = running_configs(running, names)
        running.fabric.device("b-leaf1").faults.add(
            FaultRule("latency", operation="confirming-commit", nth=1, delay_s=2.0))
        done = _together(running, tmp_path, mode, busy_wait_s=60)
        assert running.fabric.device("b-leaf1").faults.fired, "the held-back confirm never happened"
        for proc in done:
            assert proc.returncode == 0, f"{mode.value}: exit {proc.returncode}: {proc.stderr.strip()}"
            assert "SUCCESS" in proc.stdout, proc.stdout
        _quiet(running)
        after = running_configs(running, names)
    assert after != before
    for name in names:
        assert after[name] == sequential[name], f"{mode.value}: {name} differs from two sequential migrations"


@pytest.mark.parametrize("mode", MODES)
def test_tiny_busy_wait_loser_fails_cleanly(tmp_path: Path, mode: Mode) -> None:
    """The first confirming commit on b-leaf1 is held back 4 s: with busy_wait_s=0.5 the other process
    gives up with one line naming a busy device, exits non-zero and leaves nothing of its VM behind."""
    with lab(tmp_path) as running:
        running.fabric.device("b-leaf1").faults.add(
            FaultRule("latency", operation="confirming-commit", nth=1, delay_s=4.0))
        done = _together(running, tmp_path, mode, busy_wait_s=0.5)
        codes = [p.returncode for p in done]
        assert sorted(c == 0 for c in codes) == [False, True], \
            f"{mode.value}: exits {codes}: {[p.stderr.strip() for p in done]}"
        loser = next(i for i, p in enumerate(done) if p.returncode != 0)
        winner = 1 - loser
        lines = done[loser].stderr.strip().splitlines()
        assert len(lines) == 1, lines
        line = lines[0]
        vm = JOBS[loser][0]
        assert line.startswith(f"FAIL  {vm}: "), line
        assert any(d in line for d in SITE_B), f"no busy device named: {line}"
        assert any(w in line for w in ("busy", "held by", "locked by", "pending")), line
        _quiet(running)
        configs = running_configs(running, (*SITE_A, *SITE_B))
    lost_mac, lost_vm = JOBS[loser][3], JOBS[loser][0]
    kept_vm = JOBS[winner][0]
    for name in SITE_B:  # nothing half-applied: the loser's VM is nowhere at site B
        assert lost_mac not in configs[name].lower() and lost_vm not in configs[name], \
            f"{mode.value}: {name} keeps part of {lost_vm}"
    assert kept_vm in configs["b-leaf1"] or JOBS[winner][3] in configs["b-leaf1"].lower()


@pytest.mark.parametrize("modes", [(Mode.D_PUSH, Mode.CENTRALIZED), (Mode.D_PULL, Mode.MIDDLE)],
                         ids=lambda m: f"{m[0].value}+{m[1].value}")
def test_two_processes_in_different_modes_both_move(tmp_path: Path, modes: tuple[Mode, Mode]) -> None:
    """A distributed-mode migration holds its destinations with a persistent confirmed commit but not
    their locks: the other coordinator (centralized or middle) locks, edits, and has its commit refused
    with in-use. It must roll back and start over, not fail: both succeed, as two sequential runs."""
    names = (*SITE_A, *SITE_B)
    with lab(tmp_path) as running:
        for (vm, source, destination, _), mode in zip(JOBS, modes, strict=True):
            assert run(running, tmp_path, mode, vm, source, destination, deadline_s=30).ok
        sequential = running_configs(running, names)
    with lab(tmp_path) as running:
        running.fabric.device("b-leaf1").faults.add(
            FaultRule("latency", operation="confirming-commit", nth=1, delay_s=2.0))
        done = _together(running, tmp_path, modes, busy_wait_s=60)
        for proc, mode in zip(done, modes, strict=True):
            assert proc.returncode == 0, f"{mode.value}: exit {proc.returncode}: {proc.stderr.strip()}"
        _quiet(running)
        after = running_configs(running, names)
    for name in names:
        assert after[name] == sequential[name], f"{modes}: {name} differs from two sequential migrations"

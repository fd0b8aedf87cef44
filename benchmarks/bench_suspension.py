"""Suspension time for one VM (issue 7): netmig pre-staged vs netmig one-shot vs the baseline script vs
the floor, side by side on one generated fabric served by netconf-sim in its own process.

    python benchmarks/bench_suspension.py [--rounds 5]

Each VM has 100 ACL rules, 10 NAT mappings, 200 learned entries and 4 destination devices (leaf, spine,
firewall, NAT box). Every round migrates fresh VMs (one per contender). Suspension is what the VM waits:
- pre-staged: ``Stage.commit()`` (state-only read, delta, commit confirmed, verify, confirm, unlock);
- one-shot: netmig's whole prepare + transaction, started when the VM suspends;
- baseline: the whole ncclient-docs script (baseline_script.py);
- floor (commit): the issue's floor: one lock-free commit round trip per destination device, in
  parallel, of the same staged change (another fresh VM's change is edited into each destination's
  candidate without a lock, untimed; then one plain ``<commit/>`` per device, timed). The protocol's
  minimum for a network-wide commit of this change: the devices' own commit work included, no lock, no
  confirmed commit, no reads, no client work;
- floor (empty commit): one ``<commit/>`` round trip per destination with nothing staged (the round trip
  alone, shown for scale);
- floor (sequence): the round trips a confirmed, verified suspension cannot avoid, bare, over netmig's
  transport with no client-side work: the state read on every source (parallel), then per destination
  (parallel) a ``<commit/>``, the verify read of running and a second ``<commit/>`` standing for the
  confirm (on clean candidates, so the server's commit work is left out);
- floor (engine): the simulator's own service time for the pre-staged phase's work, by calling its
  DeviceEngine directly in this process (edit-config of the DI delta + commit + get-config of running,
  per destination, summed: the server is one event loop).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_script
import fabricgen

from netmig import staging
from netmig.devices import handles_for, ssh_policy_for
from netmig.modes.centralized import prepare as prepare_centralized
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.topology import resolve
from netmig.transaction import NetworkTransaction

CONTENDERS = ("pre-staged", "one-shot", "baseline")
PER_ROUND = len(CONTENDERS) + 1  # + the VM whose change floor (commit) commits


def _one_shot(topo, environ, vm, opts) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    plan = resolve(topo, vm.vm_id, vm.source_host, vm.destination_host)
    prepared = prepare_centralized(plan, topo, opts, environ=environ)
    NetworkTransaction(prepared.changes, ssh=ssh_policy_for(topo, opts.ssh), timeouts=opts.timeouts,
                       commit=opts.commit).run()
    return (time.perf_counter() - started) * 1000


def _commit_floor(topo, environ, vm, opts) -> float:  # type: ignore[no-untyped-def]
    plan = resolve(topo, vm.vm_id, vm.source_host, vm.destination_host)
    prepared = prepare_centralized(plan, topo, opts, environ=environ)
    ssh = ssh_policy_for(topo, opts.ssh)
    sessions = [(DeviceSession(c.endpoint, ssh=ssh).open(), c) for c in prepared.changes]
    try:
        for session, change in sessions:  # staged, untimed: no lock, straight into the candidate
            assert not change.extra_ops
            session.edit_config("candidate", change.edit)
        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            started = time.perf_counter()
            list(pool.map(lambda pair: pair[0].commit(), sessions))
            return (time.perf_counter() - started) * 1000
    finally:
        for session, _ in sessions:
            session.close()


def _rpc_floor(topo, environ, vm, opts) -> float:  # type: ignore[no-untyped-def]
    plan = resolve(topo, vm.vm_id, vm.source_host, vm.destination_host)
    handles = handles_for(plan.destination_devices, environ)
    ssh = ssh_policy_for(topo, opts.ssh)
    sessions = [DeviceSession(h.endpoint, ssh=ssh).open() for h in handles.values()]
    try:
        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            list(pool.map(lambda s: s.commit(), sessions))  # warm
            started = time.perf_counter()
            list(pool.map(lambda s: s.commit(), sessions))
            return (time.perf_counter() - started) * 1000
    finally:
        for s in sessions:
            s.close()


def _sequence_floor(topo, environ, vm, opts, replay) -> float:  # type: ignore[no-untyped-def]
    plan = resolve(topo, vm.vm_id, vm.source_host, vm.destination_host)
    handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
    ssh = ssh_policy_for(topo, opts.ssh)
    sources = {n: DeviceSession(handles[n].endpoint, ssh=ssh).open() for n in replay["sources"]}
    dests = {n: DeviceSession(handles[n].endpoint, ssh=ssh).open() for n in replay["destinations"]}

    def destination(name: str) -> None:
        s = dests[name]
        s.commit()
        s.get_config("running", replay["destinations"][name][1])
        s.commit()

    try:
        with ThreadPoolExecutor(max_workers=len(sources) + len(dests)) as pool:
            list(pool.map(lambda n: sources[n].get(replay["sources"][n]), sources))  # warm
            started = time.perf_counter()
            list(pool.map(lambda n: sources[n].get(replay["sources"][n]), sources))
            list(pool.map(destination, dests))
            return (time.perf_counter() - started) * 1000
    finally:
        for s in (*sources.values(), *dests.values()):
            s.close()


def _engine_floor(gen: Any, replay: dict[str, Any], workdir: Path) -> float:
    """The simulator's own service time for the pre-staged suspension's requests, engines called
    directly in this process (no SSH, no client): the state reads at the sources, then per destination
    commit of the staged candidate and the verify read of running. Summed: the server is one loop."""
    from netconf_sim.fabric import running_fabric

    with running_fabric(gen.fabric, workdir) as fab:
        for name, (edit, _) in replay["destinations"].items():
            fab.device(name).engine.edit_config("candidate", edit)  # the pre-copy: not timed
        started = time.perf_counter()
        for name, state_filter in replay["sources"].items():
            fab.device(name).engine.get(state_filter)
        for name, (_, verify_filter) in replay["destinations"].items():
            engine = fab.device(name).engine
            engine.commit()
            engine.get_config("running", verify_filter)
        return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rounds = args.rounds
    gen = fabricgen.generate(PER_ROUND * rounds, leaves=14, rules=100, nat=10, learned_fw=(100, 95))
    opts = MigrationOptions()
    times: dict[str, list[float]] = {c: [] for c in (*CONTENDERS, "floor (commit)", "floor (empty commit)",
                                                     "floor (sequence)", "floor (engine)")}
    precopy: list[float] = []
    replay: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-susp-") as tmp, \
            fabricgen.served(gen, Path(tmp) / "sim") as (state, topo, environ):
        for r in range(rounds):
            vms = gen.vms[r * PER_ROUND:(r + 1) * PER_ROUND]
            stage = staging.prepare(vms[0].vm_id, source=vms[0].source_host,
                                    destination=vms[0].destination_host, topology=topo, environ=environ,
                                    options=opts)
            precopy.append(stage.timings_ms["pre-copy"])
            started = time.perf_counter()
            result = stage.commit()
            times["pre-staged"].append((time.perf_counter() - started) * 1000)
            assert result.ok and result.timings_ms["suspension"] <= times["pre-staged"][-1]
            if not replay:
                contexts = stage._source_contexts()
                codecs = {n: stage._handles[n].codec for n in contexts}
                replay = {"sources": {n: codecs[n].state_filter(c) for n, c in contexts.items()},
                          "destinations": {c.endpoint.name: (c.edit, c.verify_filter)
                                           for c in stage.prepared.changes},
                          "vm": vms[0]}  # the VM whose devices these filters read
            times["one-shot"].append(_one_shot(topo, environ, vms[1], opts))
            started = time.perf_counter()
            changed = baseline_script.migrate_vm(topo, vms[2].vm_id, vms[2].source_host,
                                                 vms[2].destination_host, environ=environ,
                                                 ssh_config=state / "ssh_config")
            times["baseline"].append((time.perf_counter() - started) * 1000)
            assert changed == 4, changed
            times["floor (commit)"].append(_commit_floor(topo, environ, vms[3], opts))
            times["floor (empty commit)"].append(_rpc_floor(topo, environ, vms[0], opts))
            times["floor (sequence)"].append(_sequence_floor(topo, environ, replay["vm"], opts, replay))
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as work:
            times["floor (engine)"].append(_engine_floor(gen, replay, Path(work)))
    floor = statistics.median(times["floor (commit)"])
    empty = statistics.median(times["floor (empty commit)"])
    sequence_floor = statistics.median(times["floor (sequence)"])
    engine_floor = statistics.median(times["floor (engine)"])
    base = statistics.median(times["baseline"])
    print(f"suspension of one VM (100 ACL rules, 10 NAT, 200 learned entries, 4 destinations), "
          f"{rounds} rounds, median (min..max) ms; pre-copy (VM running) median "
          f"{statistics.median(precopy):.1f} ms")
    print(f"{'contender':<22}{'median ms':>10}{'min':>8}{'max':>8}{'x faster than baseline':>24}"
          f"{'x floor(commit)':>17}{'x empty commit':>16}{'x floor(sequence)':>19}{'x floor(engine)':>17}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<22}{med:>10.1f}{min(values):>8.1f}{max(values):>8.1f}{base / med:>24.1f}"
              f"{med / floor:>17.1f}{med / empty:>16.1f}{med / sequence_floor:>19.1f}"
              f"{med / engine_floor:>17.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare the four migration modes on examples/two-site: wall time and the coordinator's CPU time.

The fabric runs in its own process (``netconf-sim serve --ephemeral``), so ``time.process_time()`` of
this process is netmig's CPU alone. Each migration (vm-web-01, host-a1 -> host-b3) gets a fresh fabric;
``--repeat`` runs per mode after one warm-up; medians are printed.

    python benchmarks/bench_modes.py [--repeat 5]
    python benchmarks/bench_modes.py --many 200 [--workers 16] [--modes centralized,middle,d-push,d-pull]

``--many N`` is the draft's "many VMs migrate at one time" case: per mode, a fresh generated two-site
fabric (benchmarks/fabricgen.py, 14 leaves per site, served by ``netconf-sim serve`` in its own process)
first migrates 3 VMs one after another (median: the 1-VM figure on the same fabric), then starts N other
VMs at once, each a ``netmig.api.migrate(..., options=MigrationOptions(mode=...))`` in a pool of
``--workers`` threads. It reports total wall, VMs/s, failures and the coordinator's CPU (process_time of
this process: every worker thread, no device). Each mode runs in its own child process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from netmig.api import migrate
from netmig.devicegate import held_s
from netmig.devices import handles_for
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.settings import Timeouts
from netmig.simlab import rewrite_for_fabric
from netmig.store import SqliteStore
from netmig.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "two-site"


def _serve(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "netconf_sim.cli", "serve", str(EXAMPLE / "fabric.yaml"),
                             "--state-dir", str(state), "--ephemeral"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = 0
    while ready < 8:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("netconf-sim exited before it was ready")
        ready += line.startswith("ready ")
    return proc


def once(mode: Mode) -> tuple[float, float]:
    """One migration of vm-web-01 (host-a1 -> host-b3) on a fresh fabric: (wall ms, coordinator CPU ms)."""
    with tempfile.TemporaryDirectory(prefix="bench-modes-") as tmp:
        state = Path(tmp)
        proc = _serve(state)
        try:
            topo, environ = rewrite_for_fabric(load_topology(EXAMPLE / "topology.yaml"),
                                               state / "devices.json", state / "known_hosts")
            options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
            wall, cpu = time.perf_counter(), time.process_time()
            migrate("vm-web-01", source="host-a1", destination="host-b3", topology=topo, options=options,
                    environ=environ, store=SqliteStore(state / "store.sqlite"), feedback_deadline_s=30)
            return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def bench(mode: Mode, repeat: int) -> tuple[list[float], list[float]]:
    once(mode)  # warm-up: imports, schema parsing
    runs = [once(mode) for _ in range(repeat)]
    return [w for w, _ in runs], [c for _, c in runs]


def many(mode: Mode, count: int, workers: int, busy_wait_s: float, singles: int = 3) -> dict[str, Any]:
    """``singles`` VMs one by one, then ``count`` others at once, on one fresh generated fabric."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fabricgen

    gen = fabricgen.generate(count + singles, leaves=14, rules=3, nat=1, learned_fw=(0, 2))
    options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}),
                               timeouts=Timeouts(busy_wait_s=busy_wait_s))
    with tempfile.TemporaryDirectory(prefix="bench-modes-many-") as tmp, \
            fabricgen.served(gen, Path(tmp) / "sim") as (state, topo, environ):
        store = SqliteStore(state / "store.sqlite")

        def one(vm: Any) -> tuple[float, str | None]:
            ms, error = fabricgen.timed_migrate(vm, topology=topo, options=options, environ=environ,
                                                store=store)
            if error is not None:
                print(f"  {mode.value} {vm.vm_id}: {error[:250]}", file=sys.stderr, flush=True)
            return ms, error

        single = [one(vm) for vm in gen.vms[:singles]]
        held0 = held_s()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            runs = list(pool.map(one, gen.vms[singles:]))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        held = {k: v - held0.get(k, 0.0) for k, v in held_s().items()}
        names = {f"{d.endpoint.host}:{d.endpoint.port}": n for n, d in
                 handles_for(topo.devices.values(), environ).items()}
        busiest = max(held, key=lambda k: held[k]) if held else None
    errors = [e for _, e in runs if e is not None]
    return {"mode": mode.value, "one_ms": statistics.median(w for w, _ in single),
            "one_failed": sum(e is not None for _, e in single), "count": count, "workers": workers,
            "wall_s": wall, "cpu_s": cpu, "failed": len(errors),
            "p50_ms": statistics.median(w for w, _ in runs), "max_ms": max(w for w, _ in runs),
            "first_error": errors[0][:300] if errors else None,
            "busiest": names.get(busiest, busiest) if busiest else None,
            "busiest_held_s": held[busiest] if busiest else 0.0}


def main_many(args: argparse.Namespace) -> None:
    if args.one_mode:
        print(json.dumps(many(Mode(args.one_mode), args.many, args.workers, args.busy_wait_s)))
        return
    print(f"{'mode':12}{'1 VM ms':>9}{'VMs':>6}{'fail':>6}{'wall s':>9}{'VMs/s':>8}{'p50 ms':>9}"
          f"{'max ms':>9}{'CPU s':>8}{'CPU ms/VM':>10}  busiest device held s   ({args.workers} threads)",
          flush=True)
    for mode in args.modes.split(","):
        proc = subprocess.run([sys.executable, __file__, "--many", str(args.many), "--workers",
                               str(args.workers), "--busy-wait-s", str(args.busy_wait_s), "--one-mode", mode],
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"{mode:12} failed (exit {proc.returncode})", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        done = r["count"] - r["failed"]
        print(f"{r['mode']:12}{r['one_ms']:9.0f}{r['count']:6d}{r['failed']:6d}{r['wall_s']:9.1f}"
              f"{done / r['wall_s']:8.2f}{r['p50_ms']:9.0f}{r['max_ms']:9.0f}{r['cpu_s']:8.1f}"
              f"{1000 * r['cpu_s'] / r['count']:10.1f}  {r['busiest']} {r['busiest_held_s']:.1f}", flush=True)
        if r["first_error"]:
            print(f"    first error: {r['first_error']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--many", type=int, default=0, help="VMs migrating at once (0: the 1-VM table)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--busy-wait-s", type=float, default=600.0,
                        help="Timeouts.busy_wait_s: how long a migration may wait for devices others hold")
    parser.add_argument("--modes", default=",".join(m.value for m in Mode))
    parser.add_argument("--one-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.many:
        main_many(args)
        return
    print(f"{'mode':12} {'wall ms (median)':>17} {'coordinator CPU ms':>19}  (1 VM, n={args.repeat})")
    for mode in Mode:
        walls, cpus = bench(mode, args.repeat)
        print(f"{mode.value:12} {statistics.median(walls):17.1f} {statistics.median(cpus):19.1f}")


if __name__ == "__main__":
    main()

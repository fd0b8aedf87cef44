"""Mass migration (issue 7): 10, 100, 1000, 5000 VMs over a generated 33-device fabric, per mode and for
the baseline script, one table showing how the cost grows with the number of VMs.

    python benchmarks/bench_mass.py [--sizes 10,100,1000,5000] [--modes batch,batch-middle,batch-d-push,...]
                                    [--mode-sizes 10,100] [--baseline-sizes 10,100] [--baseline-limit-s 300]

Modes: ``batch`` is netmig's mass migration (netmig.batch.migrate_many: centralized, group commit per
destination device) over ``--sizes``; ``batch-middle`` the same in the middle mode (static policies group
committed; each VM's DI exported from its sources as an opaque blob into a SQLite transfer store and
imported by ``import-di`` under its group's confirmed commit; nd-entry may be dropped, as for the
singles); ``batch-d-push``/``batch-d-pull`` the same in the distributed modes (static policies staged with
one confirmed commit per destination per group, then one vdp-associate per VM sharing it through the
group-id; the devices transfer the DI device-to-device, netmig.batch_distributed); ``centralized``,
``middle``, ``d-push`` and ``d-pull`` run the VMs as concurrent single migrations (netmig.api.migrate
with that mode, ``--workers`` at a time, as bench_modes.py --many) over ``--sizes`` capped to
``--mode-sizes``; the baseline (baseline_script.py, one VM after another) runs ``--baseline-sizes``
and stops once it has run ``--baseline-limit-s`` (its rate is measured on the VMs it finished).

Each run is a fresh child process against a fresh fabric served by netconf-sim in its own process, so
the coordinator's CPU (process_time) and peak memory are its own: ``peak MB`` is the child's peak RSS
while it migrates (VmHWM, reset once the fabric is served; it includes ``setup MB``, what the child held
before: the generated fabric and the loaded topology). Per-VM
suspension: batch = the VM's group transaction (the VMs of a group resume together); singles = the VM's
whole migrate() call; baseline = the whole script for that VM. ``growth`` is the wall time per VM
relative to the same mode's smallest size (1.0 everywhere: linear; above 1: superlinear).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fabricgen

SINGLES = ("centralized", "middle", "d-push", "d-pull")
BATCHES = ("batch", "batch-middle", "batch-d-push", "batch-d-pull")
LABELS = {"batch": "batch (group commit)", "batch-middle": "batch-middle (group commit)",
          "batch-d-push": "batch-d-push (group commit)", "batch-d-pull": "batch-d-pull (group commit)",
          "baseline": "baseline script",
          **{m: f"{m} (concurrent singles)" for m in SINGLES}}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _status_mb(field: str) -> float | None:
    """A VmRSS/VmHWM figure of this process from /proc (Linux), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Restart the peak-RSS count (VmHWM) from the current RSS; False where /proc cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _one(size: int, mode: str, limit_s: float, group_size: int, workers: int = 16) -> dict[str, Any]:
    gen = fabricgen.generate(size, leaves=14, rules=3, nat=1, learned_fw=(0, 2))
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mass-") as tmp, \
            fabricgen.served(gen, Path(tmp) / "sim") as (state, topo, environ):
        setup_mb = _status_mb("VmRSS")  # the generated fabric and topology, held by the benchmark itself
        reset = _reset_peak()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        suspensions: list[float] = []
        done = failed = 0
        first_error: str | None = None
        if mode in BATCHES:
            from netmig.batch import BatchItem, migrate_many
            from netmig.model import PolicyKind
            from netmig.options import MigrationOptions, Mode
            from netmig.store import SqliteStore

            items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
            options = MigrationOptions() if mode == "batch" else MigrationOptions(
                mode=Mode(mode.removeprefix("batch-")), allow_drop=frozenset({PolicyKind.ND_ENTRY}))
            store = SqliteStore(state / "store.sqlite") if mode == "batch-middle" else None
            result = migrate_many(items, topology=topo, environ=environ, workers=4, group_size=group_size,
                                  options=options, store=store)
            done = len(result.succeeded)
            failed = len(result.failed)
            suspensions = [r.suspension_ms for r in result.results if r.suspension_ms is not None]
            first_error = next((r.error for r in result.failed), None)
            timings = dict(result.timings_ms)
        elif mode in SINGLES:
            from netmig.model import PolicyKind
            from netmig.options import MigrationOptions, Mode
            from netmig.settings import Timeouts
            from netmig.store import SqliteStore

            # as bench_modes.py --many: wait (up to 600 s) for devices the other migrations hold
            options = MigrationOptions(mode=Mode(mode), allow_drop=frozenset({PolicyKind.ND_ENTRY}),
                                       timeouts=Timeouts(busy_wait_s=600))
            store = SqliteStore(state / "store.sqlite")

            def single(vm: Any) -> tuple[float, str | None]:
                return fabricgen.timed_migrate(vm, topology=topo, options=options, environ=environ,
                                               store=store)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                runs = list(pool.map(single, gen.vms))
            suspensions = [ms for ms, _ in runs]
            errors = [e for _, e in runs if e is not None]
            done, failed = len(runs) - len(errors), len(errors)
            first_error = errors[0] if errors else None
        else:
            import baseline_script

            for vm in gen.vms:
                started = time.perf_counter()
                try:
                    baseline_script.migrate_vm(topo, vm.vm_id, vm.source_host, vm.destination_host,
                                               environ=environ, ssh_config=state / "ssh_config")
                    done += 1
                except Exception as exc:
                    failed += 1
                    first_error = first_error or repr(exc)
                suspensions.append((time.perf_counter() - started) * 1000)
                if time.perf_counter() - wall0 > limit_s:
                    break
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        peak = _status_mb("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "mode": mode, "attempted": done + failed, "done": done, "failed": failed,
            "wall_s": wall, "cpu_s": cpu, "p50_ms": _pct(suspensions, 0.5), "p99_ms": _pct(suspensions, 0.99),
            "peak_mb": peak,
            "setup_mb": setup_mb, "error": first_error,
            "timings_ms": timings}


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def plan(args: argparse.Namespace) -> list[tuple[int, str]]:
    """The (size, mode) runs the flags ask for, smallest first."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - {*BATCHES, "baseline", *SINGLES})
    if unknown:
        raise SystemExit(f"unknown modes: {', '.join(unknown)}")
    sizes, cap = _ints(args.sizes), set(_ints(args.mode_sizes))
    runs = [(s, m) for m in BATCHES if m in modes for s in sizes]
    runs += [(s, m) for m in modes if m in SINGLES for s in sizes if s in cap]
    if "baseline" in modes:
        runs += [(s, "baseline") for s in _ints(args.baseline_sizes)]
    return sorted(runs, key=lambda r: (list(LABELS).index(r[1]), r[0]))


def table(rows: list[dict[str, Any]], limit_s: float) -> str:
    """The result table: rate, x baseline, suspension, CPU, memory and growth per (mode, size)."""
    base_rates = [r["done"] / r["wall_s"] for r in rows if r["mode"] == "baseline" and r["done"]]
    base_rate = statistics.median(base_rates) if base_rates else float("nan")
    smallest: dict[str, float] = {}
    for r in sorted(rows, key=lambda r: r["size"]):
        smallest.setdefault(r["mode"], r["wall_s"] / max(1, r["attempted"]))
    lines = [f"{'mode':<33}{'VMs':>6}{'ok':>6}{'fail':>5}{'total s':>9}{'VMs/s':>8}{'x base':>8}"
             f"{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/VM':>10}{'peak MB':>9}{'setup MB':>9}{'growth':>8}"]
    for r in rows:
        rate = r["done"] / r["wall_s"] if r["wall_s"] else 0.0
        n = max(1, r["attempted"])
        growth = (r["wall_s"] / n) / smallest[r["mode"]]
        lines.append(f"{LABELS[r['mode']]:<33}{r['size']:>6}{r['done']:>6}{r['failed']:>5}{r['wall_s']:>9.1f}"
                     f"{rate:>8.2f}{rate / base_rate:>8.1f}{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
                     f"{1000 * r['cpu_s'] / n:>10.1f}{r['peak_mb']:>9.0f}{r.get('setup_mb') or 0:>9.0f}"
                     f"{growth:>8.2f}")
        if r.get("timings_ms"):
            phases = r["timings_ms"].items()
            lines.append("    phases: " + ", ".join(f"{k} {v / 1000:.1f} s" for k, v in phases))
        if r["error"]:
            lines.append(f"    first error: {r['error'][:200]}")
    lines.append(f"(baseline rate {base_rate:.3f} VMs/s, measured on the VMs it finished within "
                 f"{limit_s:.0f} s per size)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,5000", help="sizes for batch (and singles, capped)")
    parser.add_argument("--modes", default="batch,centralized,middle,d-push,d-pull,baseline")
    parser.add_argument("--mode-sizes", default="10,100", help="the sizes the concurrent-singles modes run")
    parser.add_argument("--baseline-limit-s", type=float, default=300.0)
    parser.add_argument("--baseline-sizes", default="10,100")
    parser.add_argument("--group-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16, help="concurrent single migrations")
    parser.add_argument("--json", type=Path, help="also append each row to this file (JSON lines)")
    parser.add_argument("--rows", type=Path, nargs="+", help="only print the table of rows saved with --json")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(int(args.one[0]), args.one[1], args.baseline_limit_s, args.group_size,
                              args.workers)))
        return 0
    if args.rows:
        lines = [line for file in args.rows for line in file.read_text().splitlines()]
        rows = [json.loads(line) for line in lines if line.strip()]
        print(table(rows, args.baseline_limit_s))
        return 0
    rows = []
    for size, mode in plan(args):
        proc = subprocess.run([sys.executable, __file__, "--one", str(size), mode, "--baseline-limit-s",
                               str(args.baseline_limit_s), "--group-size", str(args.group_size),
                               "--workers", str(args.workers)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{mode} {size}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps(row) + "\n")
        print(f"  done {mode:>11} {size:>5}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    print(table(rows, args.baseline_limit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())

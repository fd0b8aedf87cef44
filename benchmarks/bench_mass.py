"""Mass migration (issue 7): 10, 100, 1000, 5000 VMs over a generated 33-device fabric, netmig's batch
(group commit per destination device) vs the baseline script, one table.

    python benchmarks/bench_mass.py [--sizes 10,100,1000,5000] [--baseline-limit-s 300]

Each size runs in a fresh child process against a fresh fabric served by netconf-sim in its own process,
so the coordinator's CPU (process_time) and peak memory (ru_maxrss of the child) are its own. The baseline
(baseline_script.py, one VM after another) stops once it has run ``--baseline-limit-s``; its rate is
measured on the VMs it finished. Per-VM suspension: netmig = the VM's group transaction (VMs of a group
resume together); baseline = the whole script for that VM.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fabricgen


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _one(size: int, mode: str, limit_s: float, group_size: int) -> dict[str, Any]:
    from netmig.batch import BatchItem, migrate_many

    gen = fabricgen.generate(size, leaves=14, rules=3, nat=1, learned_fw=(0, 2))
    with tempfile.TemporaryDirectory(prefix="bench-mass-") as tmp, \
            fabricgen.served(gen, Path(tmp) / "sim") as (state, topo, environ):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        suspensions: list[float] = []
        done = failed = 0
        if mode == "netmig":
            items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
            result = migrate_many(items, topology=topo, environ=environ, workers=4, group_size=group_size)
            done = len(result.succeeded)
            failed = len(result.failed)
            suspensions = [r.suspension_ms for r in result.results if r.suspension_ms is not None]
            first_error = next((r.error for r in result.failed), None)
        else:
            import baseline_script

            first_error = None
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
    return {"size": size, "mode": mode, "attempted": done + failed, "done": done, "failed": failed,
            "wall_s": wall, "cpu_s": cpu, "p50_ms": _pct(suspensions, 0.5), "p99_ms": _pct(suspensions, 0.99),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "error": first_error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--baseline-limit-s", type=float, default=300.0)
    parser.add_argument("--baseline-sizes", default="10,100")
    parser.add_argument("--group-size", type=int, default=1000)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(int(args.one[0]), args.one[1], args.baseline_limit_s, args.group_size)))
        return 0
    rows = []
    runs = [(int(s), "netmig") for s in args.sizes.split(",")]
    runs += [(int(s), "baseline") for s in args.baseline_sizes.split(",") if s]
    for size, mode in sorted(runs):
        proc = subprocess.run([sys.executable, __file__, "--one", str(size), mode, "--baseline-limit-s",
                               str(args.baseline_limit_s), "--group-size", str(args.group_size)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{mode} {size}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  done {mode:>8} {size:>5}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    base_rates = [r["done"] / r["wall_s"] for r in rows if r["mode"] == "baseline" and r["done"]]
    base_rate = statistics.median(base_rates) if base_rates else float("nan")
    print(f"{'mode':<9}{'VMs':>6}{'ok':>6}{'fail':>5}{'total s':>9}{'VMs/s':>8}{'x base':>8}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'CPU s':>8}{'CPU ms/VM':>10}{'peak MB':>9}")
    for r in rows:
        rate = r["done"] / r["wall_s"] if r["wall_s"] else 0.0
        n = max(1, r["attempted"])
        print(f"{r['mode']:<9}{r['size']:>6}{r['done']:>6}{r['failed']:>5}{r['wall_s']:>9.1f}{rate:>8.2f}"
              f"{rate / base_rate:>8.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['cpu_s']:>8.1f}"
              f"{1000 * r['cpu_s'] / n:>10.2f}{r['peak_mb']:>9.0f}")
        if r["error"]:
            print(f"    first error: {r['error'][:200]}")
    print(f"(baseline rate {base_rate:.3f} VMs/s, measured on the VMs it finished within "
          f"{args.baseline_limit_s:.0f} s per size)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

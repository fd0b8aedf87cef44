"""Compare the four migration modes on examples/two-site: wall time and the coordinator's CPU time.

The fabric runs in its own process (``netconf-sim serve --ephemeral``), so ``time.process_time()`` of
this process is netmig's CPU alone. Each migration (vm-web-01, host-a1 -> host-b3) gets a fresh fabric;
``--repeat`` runs per mode after one warm-up; medians are printed.

    python benchmarks/bench_modes.py [--repeat 5]

Not yet: the 200-VMs-at-once case needs a generated fabric with 200 attached VMs (see the issue 4 note).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netmig.api import migrate
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'mode':12} {'wall ms (median)':>17} {'coordinator CPU ms':>19}  (1 VM, n={args.repeat})")
    for mode in Mode:
        walls, cpus = bench(mode, args.repeat)
        print(f"{mode.value:12} {statistics.median(walls):17.1f} {statistics.median(cpus):19.1f}")


if __name__ == "__main__":
    main()

"""Topology load time vs size: generated two-site topologies with N VMs (2N hosts), loaded by netmig.

Run: ``python benchmarks/bench_topology.py [N ...]`` (default 100 1000 5000). Not collected by pytest.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fabricgen import _topology, _vm

from netmig.topology.load import parse_topology
from netmig.topology.schema import data_model


def topology_text(vms: int, leaves: int = 14) -> str:
    """YAML of the topology fabricgen generates for ``vms`` VMs (without building device configs)."""
    ports = [f"p{k + 1}" for k in range(max(1, -(-vms // leaves)))]
    specs = tuple(_vm(i, leaves, 1) for i in range(vms))
    return yaml.safe_dump(_topology(leaves, ports, specs), sort_keys=False)


def main(sizes: list[int]) -> None:
    data_model()  # compile the module outside the timings
    print(f"{'VMs':>6} {'hosts':>6} {'load s':>8}")
    for size in sizes:
        text = topology_text(size)
        start = time.perf_counter()
        topo = parse_topology(text, file=f"<generated {size}>")
        elapsed = time.perf_counter() - start
        print(f"{size:>6} {len(topo.hosts):>6} {elapsed:>8.2f}", flush=True)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100, 1000, 5000])

"""netconf-sim's service time for one VM's filtered reads as the device grows (issue 7).

    python benchmarks/bench_sim_filters.py [--sizes 10,100,1000,5000] [--reads 20]

A generated fabric with one leaf per site puts every VM on ``a-leaf00`` (interface, ACL, QoS, 4 learned
entries each) and ``a-fw1`` (NAT mapping, firewall rule, NAT and firewall sessions each). For a sample
of ``--reads`` VMs spread over the device, the engines (no SSH) serve netmig's own per-VM filters:
``get-config`` of running with the IETF codec's config filter and ``<get>`` with its state filter. The
first read of a size is shown apart (it builds the datastore's filter index); the others are the median.
The per-read cost should stay about flat from 10 to 5000 VMs, except where the answer itself grows
(the IETF config filter takes the whole ACL list: ACL names are known only from the attachment).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fabricgen
from netconf_sim.fabric import Fabric
from netconf_sim.fabricfile import load_fabric

from netmig.codecs.base import VmContext
from netmig.codecs.registry import get_codec

DEVICES = {"a-leaf00": "", "a-fw1": None}  # device -> the VM's port on it ("" = the VM's own port)


def _ms(fn: object, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def measure(size: int, reads: int) -> list[tuple[str, float, float, float, int]]:
    """Per device: (name, first get-config ms, median get-config ms, median get ms, bytes answered)."""
    from lxml import etree

    gen = fabricgen.generate(size, leaves=1, rules=3, nat=1)
    codec, now = get_codec("ietf"), datetime(2026, 1, 1, tzinfo=UTC)
    step = max(1, size // reads)
    sample = gen.vms[::step][:reads]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-filters-") as tmp:
        fabric = Fabric(load_fabric(gen.fabric), tmp)
        for name in DEVICES:
            engine = fabric.device(name).engine
            ctxs = [VmContext(vm.vm_id, vm.port if name == "a-leaf00" else "", macs=(vm.mac,), ips=vm.ips,
                              tenant="blue", vlan=vm.vlan, now=now) for vm in sample]
            config_filters = [codec.config_filter(c) for c in ctxs]
            state_filters = [codec.state_filter(c) for c in ctxs]
            first = _ms(engine.get_config, "running", config_filters[0])
            config_ms = [_ms(engine.get_config, "running", f) for f in config_filters]
            state_ms = [_ms(engine.get, f) for f in state_filters]
            answer = len(etree.tostring(engine.get_config("running", config_filters[0])))
            answer += len(etree.tostring(engine.get(state_filters[0])))
            rows.append((name, first, statistics.median(config_ms), statistics.median(state_ms), answer))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'VMs':>6}  {'device':<9}{'first get-config ms':>21}{'get-config ms':>15}{'get ms':>9}"
          f"{'answer bytes':>14}")
    for size in (int(s) for s in args.sizes.split(",") if s):
        for name, first, config, state, answer in measure(size, args.reads):
            print(f"{size:>6}  {name:<9}{first:>21.2f}{config:>15.2f}{state:>9.2f}{answer:>14}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

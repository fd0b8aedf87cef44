"""Wall time of one centralized migration, split by phase (run on demand; not collected by pytest).

    python benchmarks/bench_migrate.py [--runs 5] [--acl-rules 100] [--nat 10] [--learned 200]

The fabric is the two-site example made bigger in memory: vm-web-01 gets ``--acl-rules`` ACL rules on
a-leaf1, ``--nat`` IPv4 addresses each with a static NAT mapping on a-fw1, and ``--learned`` learned
entries (half NAT sessions, half firewall sessions on a-fw1, plus the leaves' MAC/ARP/DHCP). It migrates
from host-a1 (IETF site) to host-b3 (acme site: 4 destination devices). Each run starts a fresh fabric
(not timed) and times one ``netmig.migrate``; the table shows the median and min/max of each phase.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lxml import etree
from netconf_sim.fabric import running_fabric
from netconf_sim.schema import SchemaCache

from netmig.api import migrate
from netmig.feedback import MigrationResult
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two-site"
ACL_NS = "urn:ietf:params:xml:ns:yang:ietf-access-control-list"
NAT_NS = "urn:ietf:params:xml:ns:yang:ietf-nat"
PHASES = ("pull", "translate", "check", "apply.prepare", "apply.commit", "apply.verify", "apply.confirm")
VM = "vm-web-01"


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _sub(parent: Any, ns: str, name: str, text: object | None = None) -> Any:
    el = etree.SubElement(parent, _q(ns, name))
    if text is not None:
        el.text = str(text)
    return el


def vm_ips(nat: int) -> list[str]:
    """10.1.10.11 (the example's address) and more from .101 up (.12 is vm-web-02's)."""
    return ["10.1.10.11", *(f"10.1.10.{100 + i}" for i in range(1, nat))]


def leaf_config(rules: int) -> str:
    """a-leaf1's example config with the VM's ACL grown to ``rules`` aces."""
    root = etree.parse(str(EXAMPLE / "config" / "a-leaf1.xml")).getroot()
    aces = root.find(f".//{_q(ACL_NS, 'acl')}[{_q(ACL_NS, 'name')}='{VM}.web-in']/{_q(ACL_NS, 'aces')}")
    assert aces is not None
    for ace in list(aces):
        aces.remove(ace)
    for i in range(rules):
        ace = _sub(aces, ACL_NS, "ace")
        _sub(ace, ACL_NS, "name", f"r{(i + 1) * 10}")
        matches = _sub(ace, ACL_NS, "matches")
        ipv4 = _sub(matches, ACL_NS, "ipv4")
        _sub(ipv4, ACL_NS, "protocol", 6)
        _sub(ipv4, ACL_NS, "destination-ipv4-network", "10.1.10.11/32")
        _sub(ipv4, ACL_NS, "source-ipv4-network", f"10.{i // 250}.{i % 250}.0/24")
        port = _sub(_sub(matches, ACL_NS, "tcp"), ACL_NS, "destination-port")
        _sub(port, ACL_NS, "operator", "eq")
        _sub(port, ACL_NS, "port", 1000 + i)
        _sub(_sub(ace, ACL_NS, "actions"), ACL_NS, "forwarding", "acl:accept" if i % 2 else "acl:drop")
    return etree.tostring(root, encoding="unicode")


def fw_config(nat: int) -> str:
    """a-fw1's example config with one static NAT mapping per VM address."""
    root = etree.parse(str(EXAMPLE / "config" / "a-fw1.xml")).getroot()
    table = root.find(f".//{_q(NAT_NS, 'mapping-table')}")
    assert table is not None
    for entry in list(table):
        table.remove(entry)
    for i, ip in enumerate(vm_ips(nat)):
        entry = _sub(table, NAT_NS, "mapping-entry")
        _sub(entry, NAT_NS, "index", i + 1)
        _sub(entry, NAT_NS, "type", "static")
        _sub(entry, NAT_NS, "internal-src-address", f"{ip}/32")
        _sub(entry, NAT_NS, "external-src-address", f"203.0.113.{ip.rsplit('.', 1)[1]}/32")
    return etree.tostring(root, encoding="unicode")


def fabric_dict(rules: int, nat: int, learned: int) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLE / "fabric.yaml").read_text())
    for device in doc["devices"].values():
        if isinstance(device.get("config"), str):
            device["config"] = str(EXAMPLE / device["config"])
        device.pop("port", None)
    doc["devices"]["a-leaf1"]["config"] = leaf_config(rules)
    doc["devices"]["a-fw1"]["config"] = fw_config(nat)
    ips = vm_ips(nat)
    for name in ("a-leaf1", "a-spine1", "a-fw1"):
        for vm in doc["devices"][name]["vms"]:
            if vm["vm-id"] == VM:
                vm["ips"] = [*ips, *[a for a in vm["ips"] if ":" in a and name == "a-leaf1"]]
    fw_vm = next(v for v in doc["devices"]["a-fw1"]["vms"] if v["vm-id"] == VM)
    fw_vm["learned"] = {"nat-session": learned // 2, "firewall-session": learned - learned // 2}
    return dict(doc)


def topology_file(directory: Path, nat: int) -> Path:
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["vms"][VM]["ips"] = vm_ips(nat)
    path = directory / "topology.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def one_run(fabric: dict[str, Any], topology: Path, state: Path, schemas: SchemaCache) -> dict[str, float]:
    with running_fabric(copy.deepcopy(fabric), state, schemas=schemas) as fab:
        topo, environ = rewrite_for_fabric(load_topology(topology), fab.devices_json, fab.known_hosts)
        started = time.perf_counter()
        result = migrate(VM, source="host-a1", destination="host-b3", topology=topo, environ=environ,
                         options=MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY})))
        wall = (time.perf_counter() - started) * 1000
    assert isinstance(result, MigrationResult) and result.ok
    moved = {f"moved:{k}": float(v) for k, v in result.moved.items()}
    return {**result.timings_ms, "total (wall)": wall, **moved}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--acl-rules", type=int, default=100)
    parser.add_argument("--nat", type=int, default=10)
    parser.add_argument("--learned", type=int, default=200)
    args = parser.parse_args(argv)
    fabric = fabric_dict(args.acl_rules, args.nat, args.learned)
    schemas = SchemaCache()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
        topology = topology_file(Path(tmp), args.nat)
        one_run(fabric, topology, Path(tmp) / "warmup", schemas)  # YANG compiled once, imports warm
        for i in range(args.runs):
            results.append(one_run(fabric, topology, Path(tmp) / f"run-{i}", schemas))
    moved = {k.split(":", 1)[1]: int(v) for k, v in results[0].items() if k.startswith("moved:")}
    print(f"vm-web-01 host-a1 -> host-b3: {args.acl_rules} ACL rules, {args.nat} NAT mappings, "
          f"{args.learned} learned sessions; 4 destinations; median of {args.runs} runs")
    print(f"moved: {', '.join(f'{k} {v}' for k, v in sorted(moved.items()))}")
    print(f"{'phase':<16}{'median ms':>10}{'min':>9}{'max':>9}")
    for phase in (*PHASES, "total (wall)"):
        values = [r.get(phase, 0.0) for r in results]
        print(f"{phase:<16}{statistics.median(values):>10.1f}{min(values):>9.1f}{max(values):>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate big two-site fabrics (netconf-sim fabric dict) and the matching netmig topology, for benchmarks
and tests.

Site A speaks the IETF models (``leaves`` leaves, one spine, one firewall doing NAT); site B the acme
vendor model (``leaves`` leaves, one spine, a firewall and a NAT box): ``2 * leaves + 5`` devices (33 with
the default 14 leaves). VM ``i`` sits on leaf ``i % leaves`` port ``p<i // leaves>`` at site A and migrates
to the same leaf/port at site B. Each VM's static policies are built as a canonical bundle and encoded with
netmig's own IETF codec, so the source devices hold exactly what netmig reads back. Learned state is
seeded by the simulator from the ``vms`` entries. ``occupied`` VMs already sit on their B port (a
conflict for whoever migrates there).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from netmig.codecs.base import VmContext
from netmig.codecs.registry import get_codec
from netmig.model.bundle import VmBundle, from_dict
from netmig.topology.model import Topology

__all__ = ["GeneratedFabric", "VmSpec", "generate", "merge_config", "running", "timed_migrate",
           "write_topology"]

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


@dataclass(frozen=True, slots=True)
class VmSpec:
    """One generated VM: where it is, where it goes, its addresses."""

    vm_id: str
    leaf: int
    port: str
    mac: str
    ips: tuple[str, ...]
    vlan: int

    @property
    def b_port(self) -> str:
        """The port at site B (acme names ports ethernet-N/M)."""
        return f"ethernet-1/{self.port[1:]}"

    @property
    def source_host(self) -> str:
        return f"ha-{self.leaf:02d}-{self.port}"

    @property
    def destination_host(self) -> str:
        return f"hb-{self.leaf:02d}-{self.port}"


@dataclass(frozen=True, slots=True)
class GeneratedFabric:
    fabric: dict[str, Any]
    topology: dict[str, Any]
    vms: tuple[VmSpec, ...]


def _vm(i: int, leaves: int, n_ips: int) -> VmSpec:
    base = int(ipaddress.IPv4Address("10.100.0.0")) + i * 16
    ips = tuple(str(ipaddress.IPv4Address(base + 1 + k)) for k in range(n_ips))
    mac = "52:54:" + ":".join(f"{(i >> shift) & 255:02x}" for shift in (24, 16, 8, 0))
    return VmSpec(f"vm-{i:05d}", i % leaves, f"p{i // leaves + 1}", mac, ips, 100 + i % 50)


def _leaf_bundle(vm: VmSpec, rules: int) -> VmBundle:
    ip = vm.ips[0]
    acl_rules = [{"sequence": 10 * (k + 1), "action": "permit", "protocol": "tcp",
                  "destination-prefix": f"{ip}/32", "destination-port-min": 1000 + k}
                 for k in range(rules - 1)]
    acl_rules.append({"sequence": 10 * rules, "action": "deny", "protocol": "any"})
    return from_dict(VmBundle, {
        "vm-id": vm.vm_id, "identity": {"tenant": "blue", "mac": [vm.mac], "ip": list(vm.ips)},
        "static": {"acl": [{"name": "in", "direction": "ingress", "rule": acl_rules}],
                   "qos": {"rate-bps": "100000000", "burst-bytes": 128000, "dscp": 26},
                   "port-profile": {"vlan": vm.vlan, "mtu": 1500, "max-macs": 4}}})


def _fw_bundle(vm: VmSpec, nat: int) -> VmBundle:
    statics = [{"internal-address": vm.ips[k], "external-address": _nat_address(vm, k)} for k in range(nat)]
    return from_dict(VmBundle, {
        "vm-id": vm.vm_id, "identity": {"tenant": "blue", "mac": [vm.mac], "ip": list(vm.ips)},
        "static": {"nat-static": statics,
                   "firewall-rule": [{"name": "allow-https", "action": "permit", "sequence": 10,
                                      "from-zone": "untrust", "to-zone": "trust", "protocol": "tcp",
                                      "destination-prefix": f"{vm.ips[0]}/32", "destination-port": 443}]}})


def _nat_address(vm: VmSpec, k: int) -> str:
    index = int(vm.vm_id.split("-")[1]) * 16 + k
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("100.64.0.0")) + index))


def _strip(el: etree._Element) -> etree._Element:
    for node in el.iter():
        for attr in list(node.attrib):
            if attr.startswith(f"{{{NC_NS}}}"):
                del node.attrib[attr]
    return el


def _identity(el: etree._Element) -> tuple[str, str | None]:
    first = next(iter(el), None)
    if first is not None and len(first) == 0:
        return (str(el.tag), f"{first.tag!s}={first.text}")
    return (str(el.tag), None)


def merge_config(into: etree._Element, other: etree._Element) -> None:
    """Merge ``other``'s children into ``into``: containers by name, list entries by their first leaf."""
    index = {_identity(c): c for c in into if isinstance(c.tag, str)}
    for child in other:
        if not isinstance(child.tag, str):
            continue
        same = index.get(_identity(child))
        if same is None:
            into.append(child)
            index[_identity(child)] = child
        elif len(child) == 0:
            same.text = child.text
        else:
            merge_config(same, child)


def generate(vms: int, *, leaves: int = 14, rules: int = 3, nat: int = 1, ips: int = 1,
             learned_fw: tuple[int, int] = (0, 2), occupied: Iterable[int] = (),
             ports_per_leaf: int | None = None) -> GeneratedFabric:
    """A fabric dict for ``netconf_sim.fabric.running_fabric`` and a topology dict for netmig."""
    per_leaf = ports_per_leaf or max(1, -(-vms // leaves))
    ports = [f"p{k + 1}" for k in range(per_leaf)]
    specs = tuple(_vm(i, leaves, max(ips, nat)) for i in range(vms))
    ietf, now = get_codec("ietf"), datetime(2026, 1, 1, tzinfo=UTC)
    from netconf_sim.profiles import PROFILES

    def base(profile: str, dev_ports: list[str]) -> etree._Element:
        root = PROFILES[profile].default_config(tuple(dev_ports))
        return root

    configs: dict[str, etree._Element] = {}
    seeds: dict[str, list[dict[str, Any]]] = {}
    for leaf in range(leaves):
        configs[f"a-leaf{leaf:02d}"] = base("ietf-leaf", ports)
    configs["a-fw1"] = base("ietf-fw", ["inside", "outside"])
    nat_s, fw_s = learned_fw
    for vm in specs:
        leaf_name = f"a-leaf{vm.leaf:02d}"
        ctx = VmContext(vm.vm_id, vm.port, macs=(vm.mac,), ips=vm.ips, tenant="blue", vlan=vm.vlan, now=now)
        merge_config(configs[leaf_name], _strip(ietf.encode(_leaf_bundle(vm, rules), ctx)))
        if nat:
            fctx = VmContext(vm.vm_id, "", macs=(vm.mac,), ips=vm.ips, tenant="blue", vlan=vm.vlan, now=now)
            merge_config(configs["a-fw1"], _strip(ietf.encode(_fw_bundle(vm, nat), fctx)))
        common = {"vm-id": vm.vm_id, "vlan": vm.vlan, "macs": [vm.mac], "ips": list(vm.ips)}
        seeds.setdefault(leaf_name, []).append({**common, "port": vm.port, "tenant": "blue",
                                           "learned": {"mac-entry": 1, "arp-entry": 1, "nd-entry": 0,
                                                       "dhcp-binding": 1}})
        seeds.setdefault("a-spine1", []).append({**common, "learned": {"mac-entry": 1, "arp-entry": 1,
                                                                       "nd-entry": 0}})
        seeds.setdefault("a-fw1", []).append({**common, "port": "inside", "nat-address": _nat_address(vm, 0),
                                              "learned": {"arp-entry": 0, "nat-session": nat_s,
                                                          "firewall-session": fw_s}})
    for i in occupied:  # someone already sits on the port this VM will take at site B
        vm = specs[i]
        seeds.setdefault(f"b-leaf{vm.leaf:02d}", []).append(
            {"vm-id": f"squatter-{i:05d}", "port": vm.b_port, "tenant": "red", "vlan": 3000,
             "macs": [f"52:54:ff:00:{(i >> 8) & 255:02x}:{i & 255:02x}"]})
    devices: dict[str, Any] = {}

    def device(name: str, profile: str, dev_ports: list[str] | None = None) -> None:
        entry: dict[str, Any] = {"profile": profile, "username": "admin", "password": "admin"}
        if dev_ports:
            entry["ports"] = dev_ports
        if name in configs:
            entry["config"] = etree.tostring(configs[name]).decode()
        if name in seeds:
            entry["vms"] = seeds[name]
        devices[name] = entry

    for leaf in range(leaves):
        device(f"a-leaf{leaf:02d}", "ietf-leaf", ports)
    device("a-spine1", "ietf-spine")
    device("a-fw1", "ietf-fw", ["inside", "outside"])
    b_ports = [f"ethernet-1/{p[1:]}" for p in ports]
    for leaf in range(leaves):
        device(f"b-leaf{leaf:02d}", "acme-leaf", b_ports)
    device("b-spine1", "acme-spine")
    device("b-fw1", "acme-fw")
    device("b-nat1", "acme-nat")
    return GeneratedFabric({"devices": devices}, _topology(leaves, ports, specs), specs)


def _topology(leaves: int, ports: list[str], specs: tuple[VmSpec, ...]) -> dict[str, Any]:
    devices: dict[str, Any] = {}

    def dev(name: str, site: str, role: str, codec: str, dev_ports: list[str] | None = None) -> None:
        entry: dict[str, Any] = {"address": "127.0.0.1", "port": 830, "site": site, "role": role,
                                 "codec": codec, "username": "admin", "password-env": "NETMIG_SIM_PASSWORD"}
        if dev_ports:
            entry["ports"] = dev_ports
        devices[name] = entry

    for leaf in range(leaves):
        dev(f"a-leaf{leaf:02d}", "A", "leaf", "ietf", ports)
    dev("a-spine1", "A", "spine", "ietf")
    dev("a-fw1", "A", "firewall", "ietf")
    for leaf in range(leaves):
        dev(f"b-leaf{leaf:02d}", "B", "leaf", "acme", [f"ethernet-1/{p[1:]}" for p in ports])
    dev("b-spine1", "B", "spine", "acme")
    dev("b-fw1", "B", "firewall", "acme")
    dev("b-nat1", "B", "nat", "acme")
    hosts = {}
    for vm in specs:
        hosts[vm.source_host] = {"site": "A", "bridge": f"a-leaf{vm.leaf:02d}", "port": vm.port}
        hosts[vm.destination_host] = {"site": "B", "bridge": f"b-leaf{vm.leaf:02d}", "port": vm.b_port}
    vms = {vm.vm_id: {"host": vm.source_host, "tenant": "blue", "macs": [vm.mac], "ips": list(vm.ips)}
           for vm in specs}
    return {
        "devices": devices,
        "vms": vms,
        "sites": {"A": {"upper": ["a-spine1"], "middleboxes": ["a-fw1"]},
                  "B": {"upper": ["b-spine1"], "middleboxes": ["b-fw1", "b-nat1"]}},
        "hosts": hosts,
        "mapping": {
            "nat-pools": {"A": "100.64.0.0/16", "B": "100.65.0.0/16"},
            "from": {"A": {"to": {"B": {
                "vlans": {100 + k: 2100 + k for k in range(50)},
                "zones": {"inside": "trust", "outside": "untrust"},
                "partners": {
                    "leaf-policies": {"kinds": ["acl", "qos", "port-profile", "mac-entry", "arp-entry",
                                                "nd-entry", "dhcp-binding"],
                                      "from-roles": ["leaf"], "to-roles": ["leaf"]},
                    "spine": {"kinds": ["mac-entry", "arp-entry"], "from-devices": ["a-spine1"],
                              "to-devices": ["b-spine1"]},
                    "firewall": {"kinds": ["firewall-rule", "firewall-session"], "from-devices": ["a-fw1"],
                                 "to-devices": ["b-fw1"]},
                    "nat": {"kinds": ["nat-static", "nat-session"], "from-devices": ["a-fw1"],
                            "to-devices": ["b-nat1"]},
                }}}}},
        },
    }


def load_generated_topology(gen: GeneratedFabric, path: Path, *, sample: int = 20) -> Topology:
    """The generated topology, fast: netmig's loader checks leaf by leaf (types, patterns) everything,
    but its yangson reference/must pass is quadratic in hosts (200 VMs: 12 s; 1000: minutes), so that
    pass runs on the devices, sites, mapping and the first ``sample`` VMs and their hosts; every other
    host and VM is type-checked only (they are generated alike)."""
    from netmig.topology.load import _compose, _Walker, parse_topology
    from netmig.topology.model import build_topology
    from netmig.topology.schema import TOP, data_model

    write_topology(gen, path)
    if len(gen.vms) <= sample:
        return parse_topology(path.read_text(), file=str(path), base_dir=path.parent)
    head = {vm.source_host for vm in gen.vms[:sample]} | {vm.destination_host for vm in gen.vms[:sample]}
    small = dict(gen.topology, hosts={h: v for h, v in gen.topology["hosts"].items() if h in head},
                 vms={k: v for k, v in gen.topology["vms"].items() if v["host"] in head})
    parse_topology(yaml.safe_dump(small, sort_keys=False), file=f"{path} (sample)", base_dir=path.parent)
    walker = _Walker(str(path))
    root = _compose(path.read_text(), str(path))
    body = walker.container(data_model().get_schema_node(f"/{TOP}"), root, "")
    if walker.problems:
        raise ValueError(f"generated topology is invalid: {walker.problems[:3]}")
    skeleton = data_model().from_raw({TOP: {k: v for k, v in body.items() if k not in ("hosts", "vms")}})
    raw = dict(skeleton.add_defaults().raw_value()[TOP], hosts=body["hosts"], vms=body["vms"])
    return build_topology(raw, source=str(path), base_dir=path.parent)


def write_topology(gen: GeneratedFabric, path: Path) -> Path:
    path.write_text(yaml.safe_dump(gen.topology, sort_keys=False))
    return path


@contextmanager
def running(gen: GeneratedFabric, state_dir: Path,
            **kwargs: Any) -> Iterator[tuple[Any, Topology, dict[str, str]]]:
    """Serve ``gen`` in netconf-sim; yield (fabric, topology reaching it, environ with the passwords)."""
    from netconf_sim.fabric import running_fabric

    from netmig.simlab import rewrite_for_fabric

    state_dir.mkdir(parents=True, exist_ok=True)
    with running_fabric(gen.fabric, state_dir, **kwargs) as fabric:
        topo = load_generated_topology(gen, state_dir / "topology.yaml")
        topo, environ = rewrite_for_fabric(topo, fabric.devices_json, fabric.known_hosts)
        yield fabric, topo, environ


@contextmanager
def served(gen: GeneratedFabric, state_dir: Path) -> Iterator[tuple[Path, Topology, dict[str, str]]]:
    """Serve ``gen`` with ``netconf-sim serve`` in its own process (so the coordinator's CPU and memory
    are measured alone); yield (state dir, topology reaching it, environ). The server is stopped after."""
    import json
    import subprocess
    import sys
    import time

    from netmig.simlab import rewrite_for_fabric

    state_dir.mkdir(parents=True, exist_ok=True)
    fabric_file = state_dir / "fabric.yaml"
    fabric_file.write_text(yaml.safe_dump(gen.fabric, sort_keys=False))
    devices_json = state_dir / "devices.json"
    devices_json.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "netconf_sim.cli", "serve", str(fabric_file),
                             "--state-dir", str(state_dir), "--ephemeral"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while True:
            if devices_json.exists():
                try:
                    served_count = len(json.loads(devices_json.read_text())["devices"])
                except ValueError:
                    served_count = -1
                if served_count == len(gen.fabric["devices"]):
                    break
            if proc.poll() is not None:
                why = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"netconf-sim exited: {why}")
            if time.monotonic() > deadline:
                raise TimeoutError("netconf-sim did not start")
            time.sleep(0.1)
        topo = load_generated_topology(gen, state_dir / "topology.yaml")
        topo, environ = rewrite_for_fabric(topo, devices_json, state_dir / "known_hosts")
        yield state_dir, topo, environ
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed_migrate(vm: VmSpec, *, topology: Topology, options: Any, environ: dict[str, str], store: Any,
                  feedback_deadline_s: float = 60) -> tuple[float, str | None]:
    """Migrate one generated VM as a single migration (netmig.api.migrate); (wall ms, error or None).

    What bench_mass.py and bench_modes.py run per VM when they start many single migrations at once."""
    import time

    from netmig.api import migrate

    started = time.perf_counter()
    try:
        migrate(vm.vm_id, source=vm.source_host, destination=vm.destination_host, topology=topology,
                options=options, environ=environ, store=store, feedback_deadline_s=feedback_deadline_s)
        return (time.perf_counter() - started) * 1000, None
    except Exception as exc:  # counted and reported: the benchmarks' tables show failures
        return (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"

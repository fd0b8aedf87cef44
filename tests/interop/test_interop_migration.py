"""Interop tier, netmig end to end: centralized migrations on real yuma123 netconfd devices.

netconfd -> netconfd (acme -> acme, ietf -> ietf), netconfd -> netconf-sim and netconf-sim -> netconfd
(across models), each checked afterwards by an independent read of the destination's running config
(a separate ncclient session and yangcli). Rollback: a destination rejecting the change leaves the other
destination as it was; a confirmed commit whose coordinator was SIGKILLed is rolled back by netconfd
itself after its timeout (with the device left quiet, FACTS.md quirk 2) while an overlapping migration
waits on ``in-use`` and then succeeds; a device without a quirk profile that loses the edit on
``<validate>`` is caught by netmig's verify and reported as a rolled-back migration.

Source configs are seeded from ``data/seed-*.xml`` (netconfd has no learned tables: DI comes from the
``preload`` / ``dynamic-info/seeded`` config trees). Every entry this module writes belongs to one of
:data:`OUR_VMS` and is removed before and after each test.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient.operations import RPCError

from netmig.api import migrate
from netmig.errors import MigrationRolledBackError
from netmig.feedback import MigrationResult, Outcome
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.quirks import quirk_profile
from netmig.settings import QuirkProfile, Timeouts
from netmig.topology import load_topology
from netmig.topology.model import Credentials, Topology

from .conftest import Endpoint, Fabric, connect, device_lock
from .test_netconfd_devices import is_yuma, yangcli_get_config

pytestmark = pytest.mark.interop

DATA = Path(__file__).resolve().parent / "data"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
ACME = "urn:acme:yang:acme-fabric"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
NMD = "urn:netmig:yang:netmig-device"
OUR_VMS = frozenset({"vm-nc-acme", "vm-nc-acme2", "vm-nc-ietf", "vm-nc-big", "vm-sim-ietf"})
NETCONFD = {"src-acme": ("acme", "source"), "src-ietf": ("ietf", "source"),
            "dst-acme": ("acme", "destination"), "dst-ietf": ("ietf", "destination")}
# list keys by element name (acme-fabric and netmig-device/ietf-interfaces), to build removals
KEYS = {"port": ("name",), "static": ("inside",), "policy": ("id",), "group": ("name",),
        "real": ("ip", "port"),
        "l2-fdb": ("mac", "vlan"), "arp": ("ip",), "snooping": ("mac",), "nat-xlate": ("proto", "inside",
        "inside-port"), "conn": ("proto", "src", "sport", "dst", "dport"), "interface": ("name",),
        "rule": ("name",), "pool": ("name",), "member": ("address", "port"), "mac-entry": ("mac", "vlan"),
        "arp-entry": ("ip",), "nd-entry": ("ip",), "dhcp-binding": ("mac",),
        "nat-session": ("protocol", "internal-address", "internal-port"),
        "firewall-session": ("protocol", "source-address", "source-port", "destination-address",
                             "destination-port")}
ROOTS = {"acme": ((ACME, "acme-fabric"),),
         "ietf": ((IF, "interfaces"), (NMD, "firewall"), (NMD, "load-balancer"), (NMD, "dynamic-info"))}
STAMPS = frozenset({"valid-until", "expires-at"})  # recomputed by every migration


# ----------------------------------------------------------------------------- lab
@dataclass(frozen=True)
class Lab:
    """The netconfd endpoints, the netconf-sim devices and one known_hosts for both."""

    devices: dict[str, Endpoint]  # topology device name -> endpoint
    nc: Fabric  # conftest Fabric over every device, with the combined known_hosts
    profiles: dict[str, QuirkProfile]  # quirk profile per device: the topology's, rfc6241 if not yuma123
    environ: dict[str, str]

    def topology(self, name: str = "topology.yaml", **quirks: QuirkProfile) -> Topology:
        """``data/NAME`` rewritten to reach the lab; ``quirks`` override a device's profile."""
        topo = load_topology(DATA / name)
        devices = {}
        for dev_name, dev in topo.devices.items():
            ep = self.devices[dev_name]
            var = "NETMIG_INTEROP_PW_" + dev_name.upper().replace("-", "_")
            creds = (Credentials(ep.username, password_env=var) if ep.password is not None
                     else Credentials(ep.username, key_file=Path(ep.key_file or "")))
            devices[dev_name] = replace(dev, address=ep.host, port=ep.port, credentials=creds,
                                        known_hosts=self.nc.known_hosts,
                                        quirks=quirks.get(dev_name.replace("-", "_"),
                                                          self.profiles[dev_name]))
        return replace(topo, devices=devices, known_hosts=self.nc.known_hosts)


@pytest.fixture(scope="module")
def lab(fabric: Fabric, tmp_path_factory: pytest.TempPathFactory, schema_cache: Any) -> Iterator[Lab]:
    from netconf_sim.fabric import running_fabric

    state = tmp_path_factory.mktemp("interop-sim")
    with running_fabric(DATA / "sim-fabric.yaml", state, schemas=schema_cache) as sim:
        devices: dict[str, Endpoint] = {}
        for name, (model, role) in NETCONFD.items():
            cands = fabric.pick(model, role)
            if not cands:
                pytest.skip(f"no {model} {role} endpoint for {name}")
            devices[name] = cands[0]
        for name, sep in sim.endpoints.items():
            devices[name] = Endpoint(name, sep.host, sep.port, sep.username, sep.password, None,
                                     "acme" if "acme" in name else "ietf", "sim")
        kh = state / "all_known_hosts"
        own = fabric.known_hosts.read_text() if fabric.known_hosts is not None else ""
        kh.write_text(own + sim.known_hosts.read_text())
        cfg = state / "all_ssh_config"
        cfg.write_text(f"Host *\n    UserKnownHostsFile {kh}\n")
        nc = Fabric(tuple(devices.values()), kh, cfg, fabric.harness)
        # each device's quirk profile as data/topology.yaml names it (yuma123-netconfd for the netconfd
        # devices, rfc6241 for netconf-sim); an endpoint whose hello shows another server gets rfc6241
        named = load_topology(DATA / "topology.yaml").devices
        profiles = {}
        for name, ep in devices.items():
            profiles[name] = named[name].quirks
            if ep.role == "sim":
                continue
            m = connect(nc, ep)
            try:
                if not is_yuma(m):
                    profiles[name] = quirk_profile("rfc6241")
            finally:
                m.close_session()
        environ = {"NETMIG_INTEROP_PW_" + n.upper().replace("-", "_"): ep.password
                   for n, ep in devices.items() if ep.password is not None}
        yield Lab(devices, nc, profiles, environ)


@contextmanager
def holding(lab: Lab, *names: str) -> Iterator[None]:
    """Lock the netconfd devices used (xdist-safe, port order); clean our VMs off them before and after."""
    eps = sorted((lab.devices[n] for n in names if lab.devices[n].role != "sim"), key=lambda e: e.port)
    with ExitStack() as stack:
        for ep in eps:
            stack.enter_context(device_lock(ep))
        for ep in eps:
            wipe(lab, ep)
        try:
            yield
        finally:
            for ep in eps:
                wipe(lab, ep)


# ----------------------------------------------------------------------------- device I/O (ncclient)
def model_filter(model: str) -> etree._Element:
    """<filter type="subtree"> selecting the model's top-level containers (ncclient takes it as is)."""
    flt = etree.Element(f"{{{NC}}}filter", type="subtree")
    for ns, name in ROOTS[model]:
        etree.SubElement(flt, f"{{{ns}}}{name}")
    return flt


def running(lab: Lab, ep: Endpoint) -> etree._Element:
    """The running config of the model's top-level containers, read by a new ncclient session."""
    m = connect(lab.nc, ep)
    try:
        data: etree._Element = m.get_config("running", filter=model_filter(ep.model)).data_ele
        return data
    finally:
        m.close_session()


def _owner(el: etree._Element) -> str | None:
    for ns, leaf in ((ACME, "owner"), (NMD, "vm-id")):
        found = el.find(f"{{{ns}}}{leaf}")
        if found is not None:
            return found.text
    return None


def _lineage(el: etree._Element) -> list[etree._Element]:
    """``el``'s ancestors below the reply's <data> (outermost first), then ``el``."""
    chain = [el]
    for a in el.iterancestors():
        if a.tag == f"{{{NC}}}data":
            break
        chain.append(a)
    return chain[::-1]


def _canon(el: etree._Element) -> str:
    """``name{child;child}`` with children sorted, ``name=text`` for leaves; timestamps left out."""
    name = etree.QName(el).localname
    kids = [k for k in el if isinstance(k.tag, str) and etree.QName(k).localname not in STAMPS]
    if not kids:
        return f"{name}={(el.text or '').strip()}"
    return name + "{" + ";".join(sorted(_canon(k) for k in kids)) + "}"


def entries(data: etree._Element, vm: str) -> set[str]:
    """Every list entry owned by ``vm``, as canonical XML text without timestamps (order-free)."""
    found = set()
    for el in data.iter():
        if not isinstance(el.tag, str) or not len(el) or _owner(el) != vm:
            continue
        path = "/".join(etree.QName(a).localname for a in _lineage(el))
        found.add(f"{path}:{_canon(el)}")
    return found


def _removal(data: etree._Element, vms: frozenset[str]) -> etree._Element | None:
    """A <config> removing every list entry owned by one of ``vms`` (ancestors keep their keys)."""
    config = etree.Element(f"{{{NC}}}config", nsmap={"nc": NC})
    any_entry = False
    for el in list(data.iter()):
        if not isinstance(el.tag, str) or not len(el) or _owner(el) not in vms:
            continue
        any_entry = True
        parent = config
        for node in _lineage(el):
            name = etree.QName(node).localname
            copy = etree.SubElement(parent, node.tag)
            for key in KEYS.get(name, ()):
                value = node.find(f"{{{etree.QName(node).namespace}}}{key}")
                if value is not None:
                    etree.SubElement(copy, value.tag).text = value.text
            parent = copy
        parent.set(f"{{{NC}}}operation", "remove")
    return config if any_entry else None


def wipe(lab: Lab, ep: Endpoint) -> None:
    """Remove our VMs' entries from ``ep``'s running config (cancelling a leftover confirmed commit)."""
    m = connect(lab.nc, ep)
    try:
        m.discard_changes()
        removal = _removal(m.get_config("running", filter=model_filter(ep.model)).data_ele, OUR_VMS)
        if removal is None:
            return
        m.edit_config(target="candidate", config=etree.tostring(removal).decode())
        try:
            m.commit()
        except RPCError:  # a persistent confirmed commit of a killed run is pending: let it time out quietly
            m.discard_changes()
            time.sleep(4)
            m.edit_config(target="candidate", config=etree.tostring(removal).decode())
            m.commit()
    finally:
        m.close_session()


def seed(lab: Lab, name: str, *files: str) -> None:
    """Commit the VM source configs in ``data/FILES`` to device ``name`` (edit-config + commit)."""
    ep = lab.devices[name]
    m = connect(lab.nc, ep)
    try:
        for f in files:
            root = etree.parse(str(DATA / f)).getroot()
            assert m.edit_config(target="candidate", config=etree.tostring(root).decode()).ok
        assert m.commit().ok
    finally:
        m.close_session()


def seeded(file: str, vm: str, renames: dict[str, str]) -> set[str]:
    """What a same-model destination must hold: the seed file's entries with ports renamed."""
    text = (DATA / file).read_text()
    for old, new in renames.items():
        text = text.replace(old, new)
    root = etree.fromstring(text.encode())
    data = etree.Element(f"{{{NC}}}data")
    data.extend(list(root))
    return entries(data, vm)


def yangcli_running(lab: Lab, ep: Endpoint, tmp: Path) -> etree._Element:
    """The same containers read through yangcli (a C client that shares no code with netmig)."""
    data = etree.Element(f"{{{NC}}}data")
    for _, name in ROOTS[ep.model]:
        reply = yangcli_get_config(ep, f"/{name}", tmp / ep.name)
        got = reply.find(f"{{{NC}}}data")
        if got is not None:
            data.extend(list(got))
    return data


def both_reads(lab: Lab, ep: Endpoint, tmp: Path, vm: str) -> tuple[set[str], set[str]]:
    return entries(running(lab, ep), vm), entries(yangcli_running(lab, ep, tmp), vm)


def leaf(data: etree._Element, path: str) -> list[str]:
    ns = {"a": ACME, "i": IF, "n": NMD}
    return [str(x) for x in data.xpath(path, namespaces=ns)]


def run(lab: Lab, vm: str, src: str, dst: str, topo: Topology, **options: Any) -> MigrationResult:
    result = migrate(vm, source=src, destination=dst, topology=topo, environ=lab.environ,
                     options=MigrationOptions(**options))
    assert isinstance(result, MigrationResult)
    assert result.outcome is Outcome.SUCCESS, result
    return result


# ----------------------------------------------------------------------------- netconfd -> netconfd
def test_netconfd_to_netconfd_acme_and_ietf(lab: Lab, tmp_path: Path) -> None:
    with holding(lab, "src-acme", "src-ietf", "dst-acme", "dst-ietf"):
        seed(lab, "src-acme", "seed-src-acme.xml")
        seed(lab, "src-ietf", "seed-src-ietf.xml")
        topo = lab.topology()
        started = time.perf_counter()
        acme = run(lab, "vm-nc-acme", "h-src-acme", "h-dst-acme", topo)
        ietf = run(lab, "vm-nc-ietf", "h-src-ietf", "h-dst-ietf", topo)
        took = time.perf_counter() - started
        assert [d.device for d in acme.devices] == ["dst-acme"] and all(d.ok for d in acme.devices)
        assert [d.device for d in ietf.devices] == ["dst-ietf"] and all(d.ok for d in ietf.devices)
        assert acme.dropped == () and ietf.dropped == ()
        want_acme = seeded("seed-src-acme.xml", "vm-nc-acme", {"ethernet-9/11": "ethernet-9/31"})
        want_ietf = seeded("seed-src-ietf.xml", "vm-nc-ietf", {"ethernet-9/21": "ethernet-9/41"})
        assert len(want_acme) == 9 and len(want_ietf) == 7  # port, nat, policy, real, 5 preloads / ...
        for ep, want, vm in ((lab.devices["dst-acme"], want_acme, "vm-nc-acme"),
                             (lab.devices["dst-ietf"], want_ietf, "vm-nc-ietf")):
            via_nc, via_yangcli = both_reads(lab, ep, tmp_path, vm)
            assert via_nc == want, sorted(via_nc ^ want)
            assert via_yangcli == want, sorted(via_yangcli ^ want)
        # the source keeps everything (make before break; no cleanup_source asked)
        assert entries(running(lab, lab.devices["src-acme"]), "vm-nc-acme") == seeded(
            "seed-src-acme.xml", "vm-nc-acme", {})
        assert took < 10, took


# ----------------------------------------------------------------------------- netconfd <-> netconf-sim
def test_netconfd_to_netconf_sim_across_models(lab: Lab, tmp_path: Path) -> None:
    with holding(lab, "src-ietf"):
        seed(lab, "src-ietf", "seed-src-ietf.xml")
        result = run(lab, "vm-nc-ietf", "h-src-ietf", "h-sim-acme", lab.topology(),
                     allow_drop=frozenset({PolicyKind.ND_ENTRY}))
        assert result.dropped == ("sim-acme:nd-entry",)
        ep = lab.devices["sim-acme"]
        for data in (running(lab, ep), yangcli_running(lab, ep, tmp_path)):
            port = "a:acme-fabric/a:port[a:name='ethernet-9/51']/a:"
            assert leaf(data, port + "owner/text()") == ["vm-nc-ietf"]
            assert leaf(data, port + "vlan/text()") == ["920"]
            assert leaf(data, port + "mtu-bytes/text()") == ["9000"]
            assert leaf(data, port + "police-kbps/text()") == ["100000"]  # 100 Mbit/s in kbit/s
            assert leaf(data, port + "burst-kb/text()") == ["128"]
            assert leaf(data, "a:acme-fabric/a:security/a:policy/a:id/text()") == ["vm-nc-ietf.allow-db"]
            assert leaf(data, "a:acme-fabric/a:security/a:policy/a:zones/text()") == ["inside>outside"]
            assert leaf(data, "a:acme-fabric/a:slb/a:group[a:name='db']/a:real/a:weight/text()") == ["30"]
            pre = "a:acme-fabric/a:preload/a:"
            assert leaf(data, pre + "l2-fdb/a:mac/text()") == ["52:54:00:99:00:02"]
            assert leaf(data, pre + "arp/a:ip/text()") == ["10.9.2.22"]
            assert leaf(data, pre + "snooping/a:port/text()") == ["ethernet-9/51"]


def test_netconf_sim_to_netconfd_across_models(lab: Lab, tmp_path: Path) -> None:
    with holding(lab, "dst-acme"):
        result = run(lab, "vm-sim-ietf", "h-sim-ietf", "h-dst-acme", lab.topology())
        assert [d.device for d in result.devices] == ["dst-acme"]
        ep = lab.devices["dst-acme"]
        for data in (running(lab, ep), yangcli_running(lab, ep, tmp_path)):
            port = "a:acme-fabric/a:port[a:name='ethernet-9/31']/a:"
            assert leaf(data, port + "owner/text()") == ["vm-sim-ietf"]
            assert leaf(data, port + "police-kbps/text()") == ["50000"]
            lines = "a:acme-fabric/a:port[a:name='ethernet-9/31']/a:filter-line/a:"
            assert leaf(data, lines + "verdict/text()") == ["allow", "block"]
            assert leaf(data, lines + "dport/text()") == ["8443-8443"]
            assert leaf(data, lines + "list-name/text()") == ["api-in", "api-in"]
            # learned on the simulator (config false there), preloaded into netconfd's config here
            assert len(leaf(data, "a:acme-fabric/a:preload/a:conn/a:owner/text()")) == 2
            assert leaf(data, "a:acme-fabric/a:preload/a:arp/a:ip/text()") == ["10.9.3.33"]


# ----------------------------------------------------------------------------- rollback on netconfd
def test_destination_rejecting_the_change_leaves_the_other_destination_untouched(lab: Lab) -> None:
    """dst-ietf answers in-use (a foreign persistent confirmed commit is pending there) beyond the bound."""
    with holding(lab, "src-ietf", "dst-acme", "dst-ietf"):
        seed(lab, "src-ietf", "seed-src-ietf.xml")
        before = {n: running(lab, lab.devices[n]) for n in ("dst-acme", "dst-ietf")}
        foreign = connect(lab.nc, lab.devices["dst-ietf"])
        try:
            foreign.commit(confirmed=True, timeout="60", persist="interop-foreign")
            started = time.monotonic()
            with pytest.raises(MigrationRolledBackError) as info:
                migrate("vm-nc-ietf", source="h-src-ietf", destination="h-dst-acme",
                        topology=lab.topology("topology-two-dst.yaml"), environ=lab.environ,
                        options=MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY}),
                                                 timeouts=Timeouts(busy_wait_s=3)))
            waited = time.monotonic() - started
            foreign.cancel_commit(persist_id="interop-foreign")
        finally:
            foreign.close_session()
        if not lab.profiles["dst-ietf"].commit_blocked_while_confirm_pending:
            pytest.skip("server does not block other sessions during a confirmed commit")
        assert 3 <= waited < 45, waited  # bounded wait on in-use, not an instant failure
        outcomes = {o.device: o for o in info.value.outcomes}
        assert "in-use" in str(outcomes["dst-ietf"].error), outcomes
        assert "confirmed-commit pending" in str(outcomes["dst-ietf"].error), outcomes
        assert outcomes["dst-acme"].phase_reached.value in ("discarded", "rolled-back"), outcomes
        for name, old in before.items():
            now = running(lab, lab.devices[name])
            assert entries(now, "vm-nc-ietf") == set(), name
            assert _canon(now) == _canon(old), name


def test_lost_edit_without_quirk_profile_is_caught_by_verify_and_rolled_back(lab: Lab) -> None:
    with holding(lab, "src-ietf", "dst-acme", "dst-ietf"):
        seed(lab, "src-ietf", "seed-src-ietf.xml")
        # dst-ietf as if nobody knew it was netconfd: validate the candidate (it then loses the edit)
        topo = lab.topology("topology-two-dst.yaml", dst_ietf=quirk_profile("rfc6241"))
        with pytest.raises(MigrationRolledBackError) as info:
            migrate("vm-nc-ietf", source="h-src-ietf", destination="h-dst-acme", topology=topo,
                    environ=lab.environ,
                    options=MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY})))
        if not lab.profiles["dst-ietf"].commit_blocked_while_confirm_pending:
            pytest.skip("not netconfd: validate of the candidate keeps the edit there")
        message = str(info.value)
        assert "dst-ietf" in message and "verify: running lacks the change" in message, message
        outcomes = {o.device: o for o in info.value.outcomes}
        assert outcomes["dst-acme"].phase_reached.value == "rolled-back", outcomes
        for name in ("dst-acme", "dst-ietf"):
            assert entries(running(lab, lab.devices[name]), "vm-nc-ietf") == set(), name


CHILD = """
import pickle, sys, time
from netmig.api import migrate
from netmig.options import MigrationOptions
from netmig.settings import CommitPolicy
topo, environ = pickle.loads(open(sys.argv[1], "rb").read())
def hook(device, step):
    print(device, step, flush=True)
    if str(step) == "verify":
        time.sleep(120)  # committed, not confirmed: wait to be killed
migrate("vm-nc-acme", source="h-src-acme", destination="h-dst-acme", topology=topo, environ=environ,
        on_step=hook, options=MigrationOptions(commit=CommitPolicy(confirm_timeout_s=2)))
"""


def test_killed_coordinator_is_rolled_back_by_netconfd_while_an_overlapping_migration_waits(
    lab: Lab, tmp_path: Path
) -> None:
    with holding(lab, "src-acme", "dst-acme"):
        seed(lab, "src-acme", "seed-src-acme.xml", "seed-src-acme2.xml")
        topo = lab.topology()
        blob = tmp_path / "topo.pickle"
        blob.write_bytes(pickle.dumps((topo, lab.environ)))
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(blob)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert child.stdout is not None
            steps = []
            for line in child.stdout:
                steps.append(line.split()[-1])
                if steps[-1] == "verify":
                    break
            assert steps[-3:] == ["validate", "commit-confirmed", "verify"], (steps, child.stderr)
            os.kill(child.pid, signal.SIGKILL)
            killed = time.monotonic()
        finally:
            child.kill()
            child.wait()
        dst = lab.devices["dst-acme"]
        want = seeded("seed-src-acme.xml", "vm-nc-acme", {"ethernet-9/11": "ethernet-9/31"})
        assert entries(running(lab, dst), "vm-nc-acme") == want  # committed (persist), not confirmed
        # An overlapping migration to the same device: its lock gets in-use until netconfd rolls the
        # orphan back; it retries quietly (the device needs 1 s of silence to fire the timer) and succeeds.
        result = run(lab, "vm-nc-acme2", "h-src-acme2", "h-dst-acme2", topo,
                     timeouts=Timeouts(busy_wait_s=20))
        waited = time.monotonic() - killed
        assert result.devices[0].ok
        if lab.profiles["dst-acme"].commit_blocked_while_confirm_pending:
            assert 2 <= waited < 15, waited  # the 2 s confirm-timeout, plus quiet time, plus retries
        data = running(lab, dst)
        assert entries(data, "vm-nc-acme") == set()  # rolled back by the device itself
        assert leaf(data, "a:acme-fabric/a:port[a:name='ethernet-9/32']/a:owner/text()") == ["vm-nc-acme2"]
        via_yangcli = yangcli_running(lab, dst, tmp_path)
        assert entries(via_yangcli, "vm-nc-acme") == set()
        assert len(entries(via_yangcli, "vm-nc-acme2")) == 1


def test_quirk_profiles_are_data() -> None:
    p = quirk_profile("yuma123-netconfd")
    assert (p.validate, p.confirmed_timer_needs_quiet_s, p.commit_blocked_while_confirm_pending) == (
        "inline", 1, True)
    assert quirk_profile("yuma123-netconfd", validate="skip").validate == "skip"
    with pytest.raises(KeyError, match="known: rfc6241, yuma123-netconfd"):
        quirk_profile("junos")


def test_interop_topologies_name_the_quirk_profiles() -> None:
    yuma, rfc = quirk_profile("yuma123-netconfd"), quirk_profile("rfc6241")
    for name in ("topology.yaml", "topology-two-dst.yaml"):
        devices = load_topology(DATA / name).devices
        assert {d: devices[d].quirks for d in NETCONFD if d in devices} == {
            d: yuma for d in NETCONFD if d in devices}, name
        assert all(devices[d].quirks == rfc for d in devices if d.startswith("sim-")), name
    assert len(load_topology(DATA / "topology-two-dst.yaml").devices) == 3

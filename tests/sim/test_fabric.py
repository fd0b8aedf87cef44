"""netconf-sim fabric runtime: state files, host keys, persistence, profiles, learned and seeded DI, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient.transport.errors import SSHError
from netconf_sim.fabric import running_fabric
from netconf_sim.profiles import ACME_NS, IF_NS, NMD_NS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site" / "fabric.yaml"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
SMALL = {"devices": {"s-leaf": {"profile": "ietf-leaf", "username": "u", "password": "pw",
                                "ports": ["eth1", "eth2"],
                                "vms": [{"vm-id": "vm1", "port": "eth1", "vlan": 10,
                                         "macs": ["52:54:00:00:00:aa"], "ips": ["192.0.2.10"]}]},
                     "s-acme": {"profile": "acme-leaf", "username": "u", "password": "pw",
                                "ports": ["ethernet-1/1"]}}}


def _xml(reply: Any) -> etree._Element:
    return etree.fromstring(reply.xml.encode())


def _texts(root: etree._Element, path: str, ns: dict[str, str]) -> list[str]:
    return [str(t) for t in root.xpath(path, namespaces=ns)]


def test_state_files_describe_every_device(two_site_fabric: Any) -> None:
    fab = two_site_fabric
    records = json.loads(fab.devices_json.read_text())["devices"]
    assert [r["name"] for r in records] == ["a-leaf1", "a-leaf2", "a-spine1", "a-fw1",
                                            "b-leaf1", "b-spine1", "b-fw1", "b-nat1"]
    for rec in records:
        ep = fab.endpoints[rec["name"]]
        assert (rec["host"], rec["port"], rec["username"], rec["password"], rec["profile"]) == (
            "127.0.0.1", ep.port, "admin", "admin", fab.device(rec["name"]).spec.profile)
    lines = fab.known_hosts.read_text().splitlines()
    assert len(lines) == 8
    assert {line.split()[0] for line in lines} == {f"[127.0.0.1]:{ep.port}" for ep in fab.endpoints.values()}
    assert len({line.split()[2] for line in lines}) == 8  # one host key per device


def test_hostkey_verification_accepts_fabric_key_and_rejects_others(
        two_site_fabric: Any, nc_connect: Callable[..., Any], tmp_path: Path) -> None:
    mgr = nc_connect(two_site_fabric, "a-leaf1")
    assert mgr.connected and mgr.session_id is not None
    # a known_hosts that holds another device's key for this address must be refused
    ep = two_site_fabric.endpoints["a-leaf1"]
    other = next(line for line in two_site_fabric.known_hosts.read_text().splitlines()
                 if not line.startswith(f"[127.0.0.1]:{ep.port} "))
    (tmp_path / "kh").write_text(f"[127.0.0.1]:{ep.port} " + " ".join(other.split()[1:]) + "\n")
    (tmp_path / "cfg").write_text(f"Host *\n  UserKnownHostsFile {tmp_path / 'kh'}\n")
    with pytest.raises(SSHError):
        nc_connect(two_site_fabric, "a-leaf1", ssh_config=str(tmp_path / "cfg"))


def test_capabilities_follow_profiles(two_site_fabric: Any, nc_connect: Callable[..., Any]) -> None:
    fw = " ".join(nc_connect(two_site_fabric, "a-fw1").server_capabilities)
    assert "urn:ietf:params:xml:ns:yang:ietf-nat?" in fw
    assert "module=netmig-device" in fw and "firewall" in fw and "load-balancer" in fw
    leaf = " ".join(nc_connect(two_site_fabric, "a-leaf1").server_capabilities)
    assert "ietf-nat" not in leaf and "module=ietf-access-control-list" in leaf
    acme = " ".join(nc_connect(two_site_fabric, "b-leaf1").server_capabilities)
    assert "module=acme-fabric" in acme and "ietf-access-control-list" not in acme


def test_learned_tables_in_native_shapes(two_site_fabric: Any, nc_connect: Callable[..., Any]) -> None:
    ns = {"nmd": NMD_NS, "acme": ACME_NS}
    leaf = _xml(nc_connect(two_site_fabric, "a-leaf1").get(
        filter=("subtree", f'<dynamic-info xmlns="{NMD_NS}"/>')))
    assert _texts(leaf, "//nmd:learned/nmd:mac-entry/nmd:mac/text()", ns) == ["52:54:00:10:00:01"]
    assert _texts(leaf, "//nmd:mac-entry/nmd:port/text()", ns) == ["eth3"]
    assert _texts(leaf, "//nmd:arp-entry/nmd:ip/text()", ns) == ["10.1.10.11"]
    assert _texts(leaf, "//nmd:dhcp-binding/nmd:vlan/text()", ns) == ["110"]
    assert _texts(leaf, "//nmd:learned/*/nmd:origin/text()", ns) == ["learned"] * 4
    fw = _xml(nc_connect(two_site_fabric, "a-fw1").get(
        filter=("subtree", f'<dynamic-info xmlns="{NMD_NS}"/>')))
    assert len(fw.xpath("//nmd:nat-session[nmd:vm-id='vm-web-01']", namespaces=ns)) == 3
    assert _texts(fw, "//nmd:nat-session/nmd:external-address/text()", ns) == ["203.0.113.11"] * 3
    assert len(fw.xpath("//nmd:firewall-session", namespaces=ns)) == 3
    expiry = int(fw.xpath("string(//nmd:nat-session/nmd:expiry-s)", namespaces=ns))
    assert 0 < expiry <= 7200
    nat = _xml(nc_connect(two_site_fabric, "b-nat1").get(
        filter=("subtree", f'<acme-fabric xmlns="{ACME_NS}"><tables/></acme-fabric>')))
    assert _texts(nat, "//acme:nat-xlate/acme:outside/text()", ns) == ["203.0.113.31"] * 2
    assert _texts(nat, "//acme:nat-xlate/acme:owner/text()", ns) == ["vm-app-01"] * 2
    assert nat.xpath("//acme:port", namespaces=ns) == []  # the filter selected tables only


def test_learned_mutation_api(fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric(SMALL)
    ns = {"nmd": NMD_NS}
    tables = fab.device("s-leaf").learned
    tables.add("mac-entry", vm_id="vm2", mac="52:54:00:00:00:bb", vlan=10, port="eth2", age_s=42)
    mgr = nc_connect(fab, "s-leaf")
    got = _xml(mgr.get(filter=("subtree", f'<dynamic-info xmlns="{NMD_NS}"/>')))
    assert _texts(got, "//nmd:mac-entry/nmd:mac/text()", ns) == ["52:54:00:00:00:aa", "52:54:00:00:00:bb"]
    assert 42 <= int(got.xpath("string(//nmd:mac-entry[nmd:vm-id='vm2']/nmd:age-s)", namespaces=ns)) < 50
    assert tables.remove("mac-entry", mac="52:54:00:00:00:bb", vlan=10)
    tables.clear(vm_id="vm1")
    got = _xml(mgr.get(filter=("subtree", f'<dynamic-info xmlns="{NMD_NS}"/>')))
    assert got.xpath("//nmd:mac-entry", namespaces=ns) == []
    with pytest.raises(KeyError):
        tables.add("nat-session", protocol="tcp", internal_address="1.1.1.1", internal_port=1)
    with pytest.raises(ValueError):
        tables.add("arp-entry", mac="52:54:00:00:00:bb")


def _seed_edit(expires: datetime, mac: str) -> str:
    stamp = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f'<config xmlns="{NC}"><dynamic-info xmlns="{NMD_NS}"><seeded><mac-entry>'
            f"<mac>{mac}</mac><vlan>10</vlan><port>eth2</port><vm-id>vm9</vm-id>"
            f"<expires-at>{stamp}</expires-at></mac-entry></seeded></dynamic-info></config>")


def test_committed_seeded_di_joins_learned_and_leaves_on_rollback(
        fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric(SMALL)
    ns = {"nmd": NMD_NS}
    mgr = nc_connect(fab, "s-leaf")
    later = datetime.now(UTC) + timedelta(hours=1)

    def learned() -> dict[str, str]:
        got = _xml(mgr.get(filter=("subtree", f'<dynamic-info xmlns="{NMD_NS}"><learned/></dynamic-info>')))
        return {e.findtext(f"{{{NMD_NS}}}mac") or "": e.findtext(f"{{{NMD_NS}}}origin") or ""
                for e in got.xpath("//nmd:learned/nmd:mac-entry", namespaces=ns)}

    mgr.edit_config(target="candidate", config=_seed_edit(later, "52:54:00:00:00:cc"))
    assert "52:54:00:00:00:cc" not in learned()  # not before commit
    mgr.commit(confirmed=True, timeout="1")
    assert learned() == {"52:54:00:00:00:aa": "learned", "52:54:00:00:00:cc": "seeded"}
    deadline = time.monotonic() + 10
    while "52:54:00:00:00:cc" in learned() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert learned() == {"52:54:00:00:00:aa": "learned"}  # the confirmed commit rolled back, seed gone

    mgr.edit_config(target="candidate", config=_seed_edit(datetime.now(UTC) - timedelta(minutes=1),
                                                          "52:54:00:00:00:dd"))
    mgr.commit()
    assert learned() == {"52:54:00:00:00:aa": "learned"}  # committed but already expired: ignored
    assert fab.device("s-leaf").learned.entries("mac-entry", include_expired=True)[-1].origin == "seeded"


def test_acme_preload_joins_tables(fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric(SMALL)
    mgr = nc_connect(fab, "s-acme")
    stamp = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    mgr.edit_config(target="candidate", config=(
        f'<config xmlns="{NC}"><acme-fabric xmlns="{ACME_NS}"><preload><arp><ip>192.0.2.77</ip>'
        f"<mac>52:54:00:00:00:77</mac><owner>vm7</owner><valid-until>{stamp}</valid-until>"
        "</arp></preload></acme-fabric></config>"))
    mgr.commit()
    got = _xml(mgr.get(filter=("subtree", f'<acme-fabric xmlns="{ACME_NS}"><tables/></acme-fabric>')))
    ns = {"acme": ACME_NS}
    assert _texts(got, "//acme:tables/acme:arp/acme:ip/text()", ns) == ["192.0.2.77"]
    ttl = int(got.xpath("string(//acme:tables/acme:arp/acme:ttl-s)", namespaces=ns))
    assert 3500 < ttl <= 3600


def test_default_config_and_persistence_across_restart(tmp_path: Path, schema_cache: Any,
                                                       nc_connect: Callable[..., Any]) -> None:
    state = tmp_path / "state"
    ns = {"if": IF_NS, "nmd": NMD_NS}
    with running_fabric(SMALL, state, schemas=schema_cache) as fab:
        mgr = nc_connect(fab, "s-leaf")
        running = _xml(mgr.get_config(source="running"))
        assert _texts(running, "//if:interface/if:name/text()", ns) == ["eth1", "eth2"]
        mgr.edit_config(target="candidate", config=(
            f'<config xmlns="{NC}"><interfaces xmlns="{IF_NS}"><interface><name>eth1</name>'
            f'<access-vlan xmlns="{NMD_NS}">77</access-vlan></interface></interfaces></config>'))
        mgr.commit()
        mgr.close_session()
        key_before = (state / "keys" / "s-leaf").read_bytes()
        known_before = fab.known_hosts.read_text().split()[2]
    with running_fabric(SMALL, state, schemas=schema_cache) as fab:
        assert (state / "keys" / "s-leaf").read_bytes() == key_before
        assert fab.known_hosts.read_text().split()[2] == known_before
        running = _xml(nc_connect(fab, "s-leaf").get_config(source="running"))
        assert _texts(running, "//nmd:access-vlan/text()", ns) == ["77"]


def test_example_initial_configs_are_valid(two_site_fabric: Any) -> None:
    for dev in two_site_fabric.devices.values():
        two_site_fabric.call(lambda d=dev: d.engine.validate("running"))
        assert len(two_site_fabric.call(dev.engine.running_view)) > 0, dev.name


@pytest.mark.skipif(shutil.which("yanglint") is None, reason="yanglint (libyang2-tools) not installed")
def test_example_configs_pass_yanglint(tmp_path: Path) -> None:
    from netconf_sim.fabricfile import load_fabric
    from netconf_sim.profiles import PROFILES
    from netconf_sim.schema import default_search_path

    paths = [str(p) for p in default_search_path()]
    for dev in load_fabric(EXAMPLE).devices:
        assert dev.config is not None
        data = tmp_path / f"{dev.name}.xml"
        data.write_bytes(b"".join(etree.tostring(child) for child in dev.config))
        profile = PROFILES[dev.profile]
        args = ["yanglint", "-t", "config"]
        for path in paths:
            args += ["-p", path]
        for module, feats in profile.features.items():
            args += ["-F", f"{module}:{','.join(feats)}"]
        files = [_module_file(m, paths) for m in profile.modules]
        run = subprocess.run([*args, *files, str(data)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{dev.name}: {run.stderr}"


def _module_file(name: str, paths: list[str]) -> str:
    for path in paths:
        candidate = Path(path) / f"{name}.yang"
        if candidate.is_file():
            return str(candidate)
        found = sorted(Path(path).glob(f"{name}@*.yang"))
        if found:
            return str(found[-1])
    raise AssertionError(f"module {name} not on {paths}")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netconf_sim.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_check_good_and_bad(tmp_path: Path) -> None:
    ok = _cli("check", str(EXAMPLE))
    assert ok.returncode == 0 and ok.stdout.startswith("ok ") and "8 devices" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  x:\n    profile: nope\n    username: u\n    password: p\n    port: -1\n")
    run = _cli("check", str(bad))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"{bad}:3: devices.x.profile: unknown profile 'nope' (known: acme-fw, acme-leaf, acme-nat, "
        "acme-spine, ietf-fw, ietf-leaf, ietf-spine)",
        f"{bad}:6: devices.x.port: -1 is out of range 0..65535"]
    assert "Traceback" not in run.stderr
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("devices:\n  x: {profile: acme-nat, username: u, password: p, config: \"<config "
                       "xmlns='urn:ietf:params:xml:ns:netconf:base:1.0'><acme-fabric "
                       "xmlns='urn:acme:yang:acme-fabric'><nat><static><inside>10.0.0.1</inside></static>"
                       "</nat></acme-fabric></config>\"}\n")
    run = _cli("check", str(invalid))
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"{invalid}:0: devices.x.config: ")


def test_cli_serve_prints_ready_lines_and_stops_on_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "netconf_sim.cli", "serve", str(EXAMPLE), "--state-dir",
               str(tmp_path / "st"), "--ephemeral"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        ready = [proc.stdout.readline().strip() for _ in range(8)]
        names = [line.split()[1] for line in ready]
        assert names == ["a-leaf1", "a-leaf2", "a-spine1", "a-fw1", "b-leaf1", "b-spine1", "b-fw1", "b-nat1"]
        assert all(line.startswith("ready ") and " 127.0.0.1:" in line for line in ready)
        assert ready[0].endswith("profile=ietf-leaf") and ready[7].endswith("profile=acme-nat")
        port = int(ready[0].split(":")[1].split()[0])
        records = json.loads((tmp_path / "st" / "devices.json").read_text())["devices"]
        assert records[0]["port"] == port
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped") and "Traceback" not in err

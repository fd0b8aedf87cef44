"""Fabric file loading: the example loads, and every kind of mistake is one FILE:LINE: path: problem line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from netconf_sim.fabricfile import FabricError, load_fabric

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site" / "fabric.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fabric.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(FabricError) as info:
        load_fabric(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_example_fabric_loads_with_expected_devices_and_hosts() -> None:
    spec = load_fabric(EXAMPLE)
    assert [d.name for d in spec.devices] == ["a-leaf1", "a-leaf2", "a-spine1", "a-fw1",
                                               "b-leaf1", "b-spine1", "b-fw1", "b-nat1"]
    assert spec.device("a-fw1").profile == "ietf-fw"
    assert spec.device("b-nat1").profile == "acme-nat"
    assert spec.device("b-leaf1").ports[0] == "ethernet-1/1"
    web = spec.device("a-leaf1").vms[0]
    assert (web.vm_id, web.port, web.vlan, web.macs) == ("vm-web-01", "eth3", 110, ("52:54:00:10:00:01",))
    assert spec.device("a-fw1").vms[0].learned == {"nat-session": 3, "firewall-session": 2}
    hosts = {(h.host, h.device, h.port) for h in spec.hosts}
    assert ("host-b2", "b-leaf1", "ethernet-1/2") in hosts and ("host-a1", "a-leaf1", "eth3") in hosts
    config = spec.device("a-leaf1").config
    assert config is not None and config.tag == "{urn:ietf:params:xml:ns:netconf:base:1.0}data"
    assert len(config) == 2  # interfaces + acls


def test_every_problem_is_collected_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        devices:
          d1:
            profile: nosuch-profile
            username: admin
            password: pw
            port: 70000
            colour: red
          d2:
            profile: ietf-leaf
            username: admin
            ports: [eth1]
            vms:
              - vm-id: vm1
                port: eth9
                vlan: 5000
                macs: [nonsense]
                ips: [10.0.0.300]
                learned: {mac-entry: -1, bogus-kind: 2}
        """)
    problems = _problems(path)
    src = str(path)
    assert f"{src}:3: devices.d1.profile: unknown profile 'nosuch-profile'" in problems[0]
    expected = {
        f"{src}:6: devices.d1.port: 70000 is out of range 0..65535",
        f"{src}:7: devices.d1.colour: unknown key",
        f"{src}:8: devices.d2.password: missing (give password or password-env)",
        f"{src}:14: devices.d2.vms[0].port: port 'eth9' is not in the device's ports",
        f"{src}:15: devices.d2.vms[0].vlan: 5000 is out of range 1..4094",
        f"{src}:16: devices.d2.vms[0].macs[0]: 'nonsense' is not a MAC address",
        f"{src}:17: devices.d2.vms[0].ips[0]: '10.0.0.300' is not an IP address",
        f"{src}:18: devices.d2.vms[0].learned.mac-entry: -1 is out of range 0..10000",
        f"{src}:18: devices.d2.vms[0].learned.bogus-kind: unknown key",
    }
    assert expected <= set(problems), set(problems) ^ expected
    assert all("\n" not in p for p in problems)


def test_missing_devices_and_yaml_syntax_errors(tmp_path: Path) -> None:
    assert _problems(_write(tmp_path, "hosts: {}\n")) == [f"{tmp_path / 'fabric.yaml'}:1: devices: missing"]
    broken = _write(tmp_path, "devices:\n  d1: [unclosed\n")
    (line,) = _problems(broken)
    assert line.startswith(f"{broken}:") and "(yaml)" in line
    dup = _write(tmp_path, "devices:\n  d1: {profile: ietf-leaf, username: a, password: b}\n"
                           "  d1: {profile: ietf-leaf, username: a, password: b}\n")
    assert f"{dup}:3: d1: duplicate key" in _problems(dup)


def test_config_file_and_inline_xml_and_password_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.xml").write_text("<config xmlns='urn:ietf:params:xml:ns:netconf:base:1.0'><a></config>")
    (tmp_path / "doctype.xml").write_text("<!DOCTYPE x [<!ENTITY e 'x'>]><config/>")
    path = _write(tmp_path, """
        devices:
          d1: {profile: ietf-spine, username: u, password-env: SIM_TEST_UNSET_VAR, config: bad.xml}
          d2: {profile: ietf-spine, username: u, password: p, config: doctype.xml}
          d3: {profile: ietf-spine, username: u, password: p, config: missing.xml,
               authorized-keys: [nokey.pub]}
          d4: {profile: ietf-spine, username: u, password: p, config: "<data/>"}
        """)
    monkeypatch.delenv("SIM_TEST_UNSET_VAR", raising=False)
    problems = _problems(path)
    text = "\n".join(problems)
    unset = "environment variable SIM_TEST_UNSET_VAR is not set"
    assert f"{path}:2: devices.d1.password-env: {unset}" in problems
    assert f"{path}:2: devices.d1.config: bad.xml: malformed XML" in text
    assert f"{path}:3: devices.d2.config: doctype.xml:" in text and "refused" in text
    assert f"{path}:4: devices.d3.config: no such file 'missing.xml'" in problems
    assert f"{path}:5: devices.d3.authorized-keys[0]: no such file 'nokey.pub'" in problems
    assert f"{path}:6: devices.d4.config: inline XML: root must be <config> or <data>" in text

    monkeypatch.setenv("SIM_TEST_PW", "s3cret")
    good = _write(tmp_path, """
        devices:
          d1:
            profile: acme-leaf
            username: u
            password-env: SIM_TEST_PW
            config: "<config xmlns='urn:ietf:params:xml:ns:netconf:base:1.0'><x xmlns='urn:x'/></config>"
        """)
    dev = load_fabric(good).device("d1")
    assert dev.password == "s3cret" and dev.port == 0
    assert dev.config is not None and [c.tag for c in dev.config] == ["{urn:x}x"]


def test_mapping_source_and_unknown_host_links() -> None:
    spec = load_fabric({"devices": {"x": {"profile": "acme-nat", "username": "u", "password": 7}}})
    assert spec.device("x").password == "7"
    with pytest.raises(FabricError) as info:
        load_fabric({"devices": {"x": {"profile": "acme-nat", "username": "u", "password": "p"}},
                     "hosts": {"h1": [{"device": "nope", "port": "e1"}, {"device": "x", "port": "e1"}]}})
    assert info.value.problems == ["<dict>:0: hosts.h1[0].device: unknown device 'nope'",
                                   "<dict>:0: hosts.h1[1].port: device x has no port 'e1'"]

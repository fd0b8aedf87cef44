"""Loading topology files: good ones build the expected objects, bad ones report each problem at file:line."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from netmig.errors import InputError, TopologyError
from netmig.quirks import PROFILES, quirk_profile
from netmig.topology import (
    Codec,
    Credentials,
    PolicyKind,
    Role,
    load_topology,
    parse_topology,
    resolve_password,
)
from netmig.topology.model import build_topology
from netmig.topology.schema import TOP, data_model, yang_dir

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "topology"
EXAMPLE = ROOT / "examples" / "two-site" / "topology.yaml"


def _problems(name: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        load_topology(DATA / name)
    return [str(problem) for problem in info.value.problems]


def _where(name: str, line: int, path: str) -> str:
    return f"{DATA / name}:{line}: {path}: "


def test_example_loads_to_expected_objects() -> None:
    topo = load_topology(EXAMPLE)
    assert list(topo.devices) == [
        "a-leaf1",
        "a-leaf2",
        "a-spine1",
        "a-fw1",
        "b-leaf1",
        "b-spine1",
        "b-fw1",
        "b-nat1",
    ]
    leaf = topo.devices["a-leaf1"]
    assert (leaf.address, leaf.port, leaf.site, leaf.role, leaf.codec) == (
        "127.0.0.1",
        830,
        "A",
        Role.LEAF,
        Codec.IETF,
    )
    assert leaf.ports == tuple(f"eth{i}" for i in range(1, 9))
    assert leaf.credentials == Credentials("netmig", password_env="NETMIG_SIM_PASSWORD")
    assert topo.devices["b-nat1"].role is Role.NAT and topo.devices["b-nat1"].codec is Codec.ACME
    assert topo.hosts["host-b3"].bridge == "b-leaf1" and topo.hosts["host-b3"].port == "ethernet-1/3"
    assert topo.sites["B"].middleboxes == ("b-fw1", "b-nat1")
    assert topo.vms["vm-web-01"].macs == ("52:54:00:10:00:01",)
    assert topo.nat_pools == {
        "A": ipaddress.IPv4Network("203.0.113.0/24"),
        "B": ipaddress.IPv4Network("198.51.100.0/24"),
    }
    forward, back = topo.mapping("A", "B"), topo.mapping("B", "A")
    assert forward.vlans == {110: 2110, 120: 2120}
    assert back.vlans == {2110: 110, 2120: 120, 210: 1210}
    assert forward.zones == {"inside": "trust", "outside": "untrust"}
    assert back.zones == {"trust": "inside", "untrust": "outside"}
    rules = {rule.name: rule for rule in forward.partners}
    assert rules["nat"].kinds == (PolicyKind.NAT_STATIC, PolicyKind.NAT_SESSION)
    assert rules["leaf-policies"].from_devices == ("a-leaf1", "a-leaf2")
    assert {rule.name: rule for rule in back.partners}["leaf-policies"].to_roles == (Role.LEAF,)
    assert topo.devices_for_host("host-a1") == tuple(
        topo.devices[n] for n in ("a-leaf1", "a-spine1", "a-fw1")
    )


def test_defaults_quirks_paths_and_credentials() -> None:
    topo = load_topology(DATA / "good-minimal.yaml")
    leaf, fw = topo.devices["leaf1"], topo.devices["fw1"]
    assert leaf.port == 830 and fw.port == 2830
    assert leaf.credentials.key_file == DATA / "keys" / "leaf1"
    assert leaf.credentials.method == "key-file"
    assert fw.credentials == Credentials("admin", ssh_agent=True)
    assert leaf.quirks.validate == "inline"
    assert leaf.quirks.confirmed_timer_needs_quiet_s == 1
    assert leaf.quirks.commit_blocked_while_confirm_pending is True
    assert (
        fw.quirks.validate == "candidate"
        and fw.quirks.commit_blocked_while_confirm_pending is False
    )
    assert topo.known_hosts == DATA / "ssh" / "known_hosts"
    assert leaf.known_hosts == DATA / "ssh" / "known_hosts"
    assert fw.known_hosts == Path("/etc/netmig/fw1_known_hosts")
    assert topo.hosts["h2"].port == "ethernet-1/2"
    assert topo.vms == {} and topo.mappings == {}



def test_quirk_profile_by_name_with_overrides() -> None:
    topo = load_topology(DATA / "good-quirk-profile.yaml")
    yuma = quirk_profile("yuma123-netconfd")
    assert yuma.validate == "inline" and yuma.commit_blocked_while_confirm_pending
    assert topo.devices["nc1"].quirks == yuma
    # explicit leaves override the profile's; the leaf not given keeps the profile's value
    nc2 = topo.devices["nc2"].quirks
    assert (nc2.validate, nc2.confirmed_timer_needs_quiet_s, nc2.commit_blocked_while_confirm_pending) == (
        "skip",
        2,
        True,
    )
    # no profile named: rfc6241 plus the leaf given
    assert topo.devices["plain"].quirks == quirk_profile("rfc6241", commit_blocked_while_confirm_pending=True)
    assert topo.devices["plain"].quirks.validate == "candidate"


def test_quirk_profile_names_in_yang_are_the_profiles() -> None:
    leaf = data_model().get_schema_node(f"/{TOP}/devices/quirks/profile")
    assert set(leaf.type.enum) == set(PROFILES)


def test_unknown_quirk_profile_in_raw_json_is_an_input_error() -> None:
    raw = {
        "devices": [
            {"name": "nc1", "address": "192.0.2.21", "site": "S", "role": "leaf", "codec": "acme",
             "username": "netmig", "password-env": "X", "quirks": {"profile": "junos-21"}}
        ]
    }
    with pytest.raises(InputError, match=r"device 'nc1': quirks: unknown quirk profile 'junos-21' \(known: "):
        build_topology(raw, source="raw", base_dir=DATA)

def test_password_comes_from_the_environment_only() -> None:
    creds = Credentials("netmig", password_env="NETMIG_TEST_PW")
    assert resolve_password(creds, {"NETMIG_TEST_PW": "s3cret"}) == "s3cret"
    with pytest.raises(InputError, match="NETMIG_TEST_PW is not set"):
        resolve_password(creds, {})
    with pytest.raises(InputError, match="by ssh-agent"):
        resolve_password(Credentials("netmig", ssh_agent=True), {"NETMIG_TEST_PW": "x"})
    assert "s3cret" not in repr(creds)


@pytest.mark.parametrize(
    ("name", "line", "path", "message"),
    [
        ("bad-yaml.yaml", 5, None, "malformed YAML"),
        ("bad-empty.yaml", 1, None, "the topology file is empty"),
        ("bad-inline-password.yaml", 8, "devices[leaf1]/password", "inline passwords are not allowed"),
        (
            "bad-unknown-key.yaml",
            3,
            "devices[leaf1]/adress",
            "unknown key 'adress'; expected one of name, address",
        ),
        ("bad-missing-mandatory.yaml", 3, "devices[leaf1]", "missing mandatory 'role'"),
        ("bad-enum.yaml", 5, "devices[leaf1]/role", "'router' is not one of leaf, spine, firewall, nat, lb"),
        (
            "bad-quirk-profile.yaml",
            11,
            "devices[leaf1]/quirks/profile",
            "'junos-21' is not one of rfc6241, yuma123-netconfd",
        ),
        ("bad-range.yaml", 4, "devices[leaf1]/port", "70000 is out of range 1..65535"),
        (
            "bad-range.yaml",
            28,
            "mapping/from[S]/to[T]/vlans[110]/destination",
            "4095 is out of range 1..4094",
        ),
        ("bad-types.yaml", 4, "devices[leaf1]/port", "'eight-thirty' is not a number"),
        ("bad-types.yaml", 10, "devices[leaf1]/ports", "expected a list, got the value 'eth1'"),
        ("bad-types.yaml", 12, "sites", "expected a mapping keyed by name, got a list"),
        ("bad-types.yaml", 18, "vms[vm-1]/macs", "'not-a-mac' is not a valid mac-address"),
        ("bad-types.yaml", 19, "vms[vm-1]/ips", "'10.0.0.300' is not a valid ip-address-no-zone"),
        ("bad-duplicate.yaml", 9, "devices[leaf1]", "duplicate name (first at line 2)"),
        ("bad-reference.yaml", 11, "sites[S]/upper", "'spine9' is not one of the devices"),
        ("bad-reference.yaml", 13, "hosts[h1]/bridge", "'leaf7' is not one of the devices"),
        ("bad-reference.yaml", 14, "hosts[h2]/site", "'Z' is not one of the sites"),
        ("bad-reference.yaml", 16, "vms[vm-1]/host", "'h9' is not one of the hosts"),
        (
            "bad-bridge-role.yaml",
            21,
            "hosts[h1]/bridge",
            "a host's bridge must be a leaf device (got 'spine1')",
        ),
        (
            "bad-bridge-role.yaml",
            22,
            "hosts[h2]/port",
            "the port is not one of the bridge's ports (got 'eth9')",
        ),
        ("bad-credentials.yaml", 2, "devices[leaf1]", "give only one of key-file, password-env, ssh-agent"),
        (
            "bad-credentials.yaml",
            10,
            "devices[leaf2]",
            "one of key-file, password-env, ssh-agent is required",
        ),
        ("bad-ssh-agent.yaml", 8, "devices[leaf3]/ssh-agent", "ssh-agent must be true when given"),
        (
            "bad-partners.yaml",
            31,
            "mapping/from[A]/to[B]/partners[leaves]/to-devices",
            "a partner destination device must be at the destination site (got 'a-leaf')",
        ),
        (
            "bad-partners.yaml",
            34,
            "mapping/from[A]/to[B]/partners[again]/from-devices",
            "'a-leaf' already moves acl by rule 'leaves'",
        ),
    ],
)
def test_bad_file_reports_file_line_and_path(name: str, line: int, path: str | None, message: str) -> None:
    problems = _problems(name)
    where = _where(name, line, path) if path else f"{DATA / name}:{line}: "
    matching = [p for p in problems if p.startswith(where)]
    assert matching, f"no problem at {where!r} in {problems}"
    assert any(message in p for p in matching), matching


def test_inline_password_is_the_only_complaint_and_never_echoed() -> None:
    problems = _problems("bad-inline-password.yaml")
    assert len(problems) == 1
    assert "hunter2" not in problems[0]
    assert "password-env: VAR" in problems[0]


def test_every_problem_is_collected_at_once() -> None:
    name = "bad-many.yaml"
    with pytest.raises(TopologyError) as info:
        load_topology(DATA / name)
    got = [(p.line, p.path) for p in info.value.problems]
    assert got == [
        (5, "devices[leaf1]/port"),
        (8, "devices[leaf1]/codec"),
        (10, "devices[leaf1]/password"),
        (14, "hosts[h1]"),
        (16, "vms[-bad-id]/vm-id"),
    ]
    assert all(p.file == str(DATA / name) for p in info.value.problems)
    assert str(info.value).endswith("(and 4 more)")
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_missing_file_is_a_topology_error() -> None:
    with pytest.raises(TopologyError, match="cannot read the topology"):
        load_topology(DATA / "does-not-exist.yaml")


def test_entry_key_repeated_in_body_must_agree() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "  a-spine1:\n", "  a-spine1:\n    name: a-spine9\n", 1
    )
    with pytest.raises(TopologyError) as info:
        parse_topology(text, file="t.yaml")
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("devices[a-spine1]/name", "'a-spine9' differs from the entry's key")
    ]


def test_yaml_booleans_and_quoted_numbers() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("    port: 830\n", '    port: "8300"\n', 1)
    assert parse_topology(text).devices["a-leaf1"].port == 8300


# The YANG module itself (not only netmig's loader) accepts the good files and rejects the bad ones:
# a naive YAML -> RFC 7951 JSON conversion checked by yanglint, an independent validator.


def _to_json(node: Any, schema_lists: dict[str, str]) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for name, value in node.items():
        if name in schema_lists and isinstance(value, dict):
            key = schema_lists[name]
            entries = []
            for key_value, body in value.items():
                if not isinstance(body, dict):
                    body = {_SINGLE[name]: body} if name in _SINGLE else body
                entries.append({key: key_value, **_to_json(body or {}, schema_lists)})
            out[name] = entries
        else:
            out[name] = _to_json(value, schema_lists)
    return out


_LISTS = {
    "devices": "name",
    "sites": "name",
    "hosts": "name",
    "vms": "vm-id",
    "nat-pools": "site",
    "from": "site",
    "to": "site",
    "ports": "source",
    "vlans": "source",
    "vnis": "source",
    "vrfs": "source",
    "zones": "source",
    "partners": "name",
}
_SINGLE = {"nat-pools": "prefix", "ports": "destination", "vlans": "destination", "zones": "destination"}


def _yanglint(path: Path, tmp_path: Path) -> tuple[int, str]:
    tool = shutil.which("yanglint")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("yanglint is not installed")
        pytest.skip("yanglint is not installed")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    body = _to_json(raw, _LISTS)
    data = tmp_path / "topology.json"
    data.write_text(json.dumps({"netmig-topology:topology": body}, default=str), encoding="utf-8")
    import pyang

    ietf = next(p for p in Path(pyang.__file__).resolve().parents if (p / "share/yang/modules/ietf").is_dir())
    args = [tool, "-p", str(ietf / "share/yang/modules/ietf"), "-p", str(yang_dir()), "-t", "config"]
    proc = subprocess.run(
        [*args, str(yang_dir() / "netmig-topology.yang"), str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "path", [EXAMPLE, DATA / "good-minimal.yaml", DATA / "good-quirk-profile.yaml"], ids=lambda p: p.name
)
def test_yanglint_accepts_good_files(path: Path, tmp_path: Path) -> None:
    assert _yanglint(path, tmp_path) == (0, "")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad-reference.yaml", "Invalid leafref value"),
        ("bad-bridge-role.yaml", "a host's bridge must be a leaf device"),
        ("bad-range.yaml", "out of type uint16 min/max bounds"),
        ("bad-enum.yaml", 'Invalid enumeration value "router"'),
        ("bad-quirk-profile.yaml", 'Invalid enumeration value "junos-21"'),
        ("bad-missing-mandatory.yaml", 'Mandatory node "role"'),
        ("bad-credentials.yaml", 'Data for both cases "password-env" and "key-file"'),
        ("bad-ssh-agent.yaml", "ssh-agent must be true when given"),
        ("bad-partners.yaml", "a partner destination device must be at the destination site"),
        ("bad-inline-password.yaml", 'Node "password" not found'),
    ],
)
def test_yanglint_rejects_bad_files(name: str, reason: str, tmp_path: Path) -> None:
    rc, out = _yanglint(DATA / name, tmp_path)
    assert rc != 0 and reason in out, out

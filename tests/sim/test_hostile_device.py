"""A malicious device (netconf_sim.hostile) answers netmig with XXE, billion laughs, 10,000-deep nesting
and a 100 MB reply: netmig (the real CLI, in a child process so its peak RSS is its own) fails with one
line naming the device, exit 3, nothing changed on any device, and bounded memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree
from netconf_sim.hostile import HostileReplies

from netmig.errors import MalformedReplyError
from netmig.netconf.session import DeviceSession
from netmig.settings import Credentials, DeviceEndpoint, SshPolicy

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "examples" / "two-site" / "topology.yaml"
RSS_BOUND_MB = 300
PASSWORD_ENV = "NETMIG_TEST_HOSTILE_PASSWORD"
DOCTYPE = "reply refused: document type declarations and entities are refused"
REFUSALS = {"xxe": [DOCTYPE], "xxe-late": [DOCTYPE], "billion-laughs": [DOCTYPE],
            "deep": ["Excessive depth", "nested deeper than"],
            "oversized": ["reply refused: message larger than the 67108864-byte limit"]}


def write_topology(fabric: Any, path: Path) -> Path:
    """The example topology pointed at ``fabric``'s ports, passwords from ``PASSWORD_ENV``."""
    data = yaml.safe_load(TOPOLOGY.read_text())
    for name, dev in data["devices"].items():
        ep = fabric.endpoints[name]
        dev.update({"address": ep.host, "port": ep.port, "username": ep.username,
                    "password-env": PASSWORD_ENV})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def running_configs(fabric: Any) -> dict[str, bytes]:
    out = {}
    for name in fabric.endpoints:
        dev = fabric.device(name)
        out[name] = etree.tostring(fabric.call(dev.engine.snapshot_running), method="c14n")
    return out


PEAK_WRAPPER = """
import atexit, sys
from netmig.cli import main

def _peak() -> None:
    with open("/proc/self/status") as status, open(sys.argv[1], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")))

atexit.register(_peak)
sys.exit(main(sys.argv[2:]))
"""


def run_cli(fabric: Any, tmp_path: Path, *extra: str) -> tuple[int, str, str, float]:
    """``netmig migrate vm-web-01`` (host-a1 -> host-b3) in a child: exit, stdout, stderr, peak RSS MB."""
    topo = write_topology(fabric, tmp_path / "topology.yaml")
    env = {**os.environ, PASSWORD_ENV: fabric.endpoints["a-leaf1"].password}
    hwm_path = tmp_path / "vmhwm"
    argv = [sys.executable, "-c", PEAK_WRAPPER, str(hwm_path), "migrate", "vm-web-01", "--from", "host-a1",
            "--to", "host-b3", "--topology", str(topo), "--known-hosts", str(fabric.known_hosts),
            "--allow-drop", "nd-entry", "--confirm-timeout", "30", *extra]
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while True:
            pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("netmig did not finish within 120 s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss of a forked child also counts the parent's pages before exec (a big xdist worker);
    # VmHWM read by the child itself at exit is the peak of the netmig process alone.
    rss_mb = int(hwm_path.read_text().split()[1]) / 1024
    return proc.returncode, out_path.read_text(), err_path.read_text(), rss_mb


def make_hostile(fabric: Any, device: str, kind: str, operations: set[str], *,
                 after: bool = False) -> HostileReplies:
    runtime = fabric.device(device).runtime
    hook: HostileReplies = fabric.call(lambda: HostileReplies.install(runtime, kind, operations, after=after))
    return hook


@pytest.mark.parametrize("kind", ["xxe", "xxe-late", "billion-laughs", "deep", "oversized"])
def test_hostile_source_reply_fails_cleanly_with_bounded_memory(
        kind: str, fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    fabric = fresh_fabric()
    before = running_configs(fabric)
    hook = make_hostile(fabric, "a-leaf1", kind, {"get", "get-config"})
    code, _out, err, rss_mb = run_cli(fabric, tmp_path)
    print(f"hostile {kind}: exit {code}, peak RSS of netmig {rss_mb:.0f} MB, stderr {err.strip()!r}")
    assert hook.sent >= 1, "the hostile reply was never asked for"
    assert code == 3, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("FAIL  vm-web-01: a-leaf1") and "get" in lines[0], lines[0]
    assert any(why in lines[0] for why in REFUSALS[kind]), lines[0]
    assert "Traceback" not in err and "root:" not in err
    assert rss_mb < RSS_BOUND_MB, f"netmig peaked at {rss_mb:.0f} MB"
    assert running_configs(fabric) == before


@pytest.mark.parametrize("kind", ["xxe", "billion-laughs", "deep"])
def test_hostile_destination_commit_reply_rolls_back_everywhere(
        kind: str, fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    """b-leaf1 really commits (confirmed), then garbles its reply: the transaction fails, cancels the
    pending commit from a new session (persist-id), and nothing stays anywhere."""
    fabric = fresh_fabric()
    before = running_configs(fabric)
    hook = make_hostile(fabric, "b-leaf1", kind, {"commit"}, after=True)
    code, _out, err, _rss = run_cli(fabric, tmp_path, "--confirm-timeout", "5")
    assert hook.sent >= 1
    assert code == 5, (code, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("FAIL  vm-web-01: ") and "b-leaf1" in last, err
    assert "no reply within" not in last, err  # refused when it arrived, not waited out (pipelined read)
    assert any(why in last for why in REFUSALS[kind]), last
    assert "Traceback" not in err
    deadline = time.monotonic() + 15
    while running_configs(fabric) != before and time.monotonic() < deadline:
        time.sleep(0.25)
    assert running_configs(fabric) == before


@pytest.mark.parametrize("kind", ["xxe", "xxe-late", "billion-laughs", "deep", "oversized"])
def test_session_raises_malformed_reply_and_never_resolves(kind: str,
                                                           fresh_fabric: Callable[..., Any]) -> None:
    """In-process too: MalformedReplyError naming the device, no /etc/passwd text anywhere in it."""
    fabric = fresh_fabric()
    make_hostile(fabric, "a-leaf1", kind, {"get-config"})
    ep = fabric.endpoints["a-leaf1"]
    endpoint = DeviceEndpoint(ep.name, ep.host, ep.port, Credentials(ep.username, ep.password))
    started = time.monotonic()
    with DeviceSession(endpoint, ssh=SshPolicy(known_hosts=fabric.known_hosts)) as s, \
            pytest.raises(MalformedReplyError) as info:
        s.get_config("running")
    assert "a-leaf1" in str(info.value)
    assert "root:" not in str(info.value) and "lol" not in str(info.value)
    assert time.monotonic() - started < 60

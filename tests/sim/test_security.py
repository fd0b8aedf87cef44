"""Security of the netmig CLI against the simulator: host keys and secrets.

- An unknown or changed host key fails with one line naming the device, exit 3; ``--no-host-key-check``
  works and warns.
- The simulator's passwords (unique per device here) never show up in logs (-vvv, every logger), ``--json``
  output, the error line, or an exception's str/repr/traceback, on success, failure and wrong-password paths.
"""

from __future__ import annotations

import io
import logging
import secrets
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from netmig.api import migrate
from netmig.cli import main
from netmig.errors import AuthError, NetmigError
from netmig.options import MigrationOptions
from netmig.settings import SshPolicy
from tests.sim.test_hostile_device import PASSWORD_ENV, make_hostile, write_topology

ROOT = Path(__file__).resolve().parents[2]
FABRIC = ROOT / "examples" / "two-site" / "fabric.yaml"
ARGS = ["migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3", "--allow-drop", "nd-entry"]


def secret_fabric(tmp_path: Path) -> tuple[Path, str]:
    """The example fabric with one unique, greppable password for every device."""
    data = yaml.safe_load(FABRIC.read_text())
    password = "Sx-" + secrets.token_hex(8)
    for dev in data["devices"].values():
        dev["password"] = password
        if "config" in dev:
            dev["config"] = str((FABRIC.parent / dev["config"]).resolve())
    path = tmp_path / "fabric.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, password


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def lab(fresh_fabric: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path, password = secret_fabric(tmp_path)
    fabric = fresh_fabric(path)
    topo = write_topology(fabric, tmp_path / "topology.yaml")
    monkeypatch.setenv(PASSWORD_ENV, password)
    return fabric, topo, password


def test_unknown_host_key_fails_with_one_line(lab: Any, tmp_path: Path) -> None:
    _fabric, topo, _ = lab
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    code, out, err = run([*ARGS, "--topology", str(topo), "--known-hosts", str(empty)])
    assert code == 3, err
    assert err.count("\n") == 1 and "unknown host key" in err and "a-leaf1" in err, err
    assert out == ""


def test_changed_host_key_fails_with_one_line(lab: Any, tmp_path: Path) -> None:
    fabric, topo, _ = lab
    lines = []
    for line in fabric.known_hosts.read_text().splitlines():  # same host and key type, another key
        host, kind, _ = line.split()
        other = asyncssh.generate_private_key(kind).export_public_key("openssh").decode().split()
        lines.append(f"{host} {other[0]} {other[1]}")
    changed = tmp_path / "known_hosts.changed"
    changed.write_text("\n".join(lines) + "\n")
    code, _, err = run([*ARGS, "--topology", str(topo), "--known-hosts", str(changed)])
    assert code == 3, err
    assert err.count("\n") == 1 and "host key CHANGED" in err and "a-leaf1" in err, err


def test_no_host_key_check_works_and_warns(lab: Any, tmp_path: Path) -> None:
    _fabric, topo, _ = lab
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    code, out, err = run([*ARGS, "--topology", str(topo), "--known-hosts", str(empty), "--no-host-key-check"])
    assert code == 0, err
    assert "WARNING: SSH host keys are NOT verified" in err
    assert out.startswith("SUCCESS")


def _everything(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for rec in caplog.records:
        parts.append(rec.getMessage())
        parts.append(repr(rec.args))
        if rec.exc_info and rec.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(rec.exc_info[1])))
    return "\n".join(parts)


def test_secrets_never_leak(lab: Any, caplog: pytest.LogCaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    fabric, topo, password = lab
    caplog.set_level(logging.DEBUG)  # every logger, ncclient and paramiko included
    captured: list[str] = []
    base = [*ARGS, "--topology", str(topo), "--known-hosts", str(fabric.known_hosts)]
    # success, with debug logging and JSON output
    code, out, err = run(["-vvv", *base, "--json"])
    assert code == 0, err
    assert '"outcome": "SUCCESS"' in out
    captured += [out, err]
    # failure: b-leaf1 garbles its commit reply, the transaction rolls back (exit 5), JSON again
    make_hostile(fabric, "b-leaf1", "xxe", {"commit"}, after=True)
    code, out, err = run(["-vvv", *base, "--json", "--confirm-timeout", "5"])
    assert code == 5, err
    captured += [out, err]
    # wrong password: AuthError, exit 3, the wrong password must not leak either
    wrong = "Wx-" + secrets.token_hex(8)
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    code, out, err = run(["-vvv", *base, "--json"])
    assert code == 3 and "authentication failed" in err, err
    captured += [out, err]
    # the library raises: str, repr and the whole chained traceback
    with pytest.raises(NetmigError) as info:
        migrate("vm-web-01", source="host-a1", destination="host-b3", topology=topo,
                options=MigrationOptions(ssh=SshPolicy(known_hosts=fabric.known_hosts)))
    assert isinstance(info.value, AuthError)
    captured += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    captured.append(_everything(caplog))
    blob = "\n".join(captured)
    assert "authentication failed" in blob and "DEBUG" in blob  # we did capture the interesting parts
    assert password not in blob
    assert wrong not in blob

"""The netmig CLI without devices: argument errors, help, input errors as one line with exit code 2."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from netmig.cli import main

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "examples" / "two-site" / "topology.yaml"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def migrate_args(*extra: str, vm: str = "vm-web-01", source: str = "host-a1",
                 destination: str = "host-b3") -> list[str]:
    return ["migrate", vm, "--from", source, "--to", destination, "--topology", str(TOPOLOGY), *extra]


@pytest.mark.parametrize("argv", [
    ["migrate", "vm-web-01", "--to", "host-b3", "--topology", "t.yaml"],               # no --from
    ["migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3"],                  # no --topology/--sim
    ["migrate", "vm-web-01", "--from", "a", "--to", "b", "--topology", "t", "--sim", "d"],  # both
    migrate_args("--allow-drop", "no-such-kind"),
    migrate_args("--mode", "teleport"),
    migrate_args("--on-conflict", "ignore"),
    migrate_args("--confirm-timeout", "soon"),
    ["frobnicate"],
    [],
])
def test_argument_errors_exit_2_with_one_error_line(argv: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own errors (usage, then one ``error:`` line) or netmig's (one ``FAIL`` line): exit 2."""
    err_stream = io.StringIO()
    try:
        code = main(argv, out=io.StringIO(), err=err_stream)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err + err_stream.getvalue()
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line or line.startswith("FAIL  ")]
    assert len(errors) == 1 and errors[0].startswith(("netmig", "FAIL  ")), err


def test_help_lists_the_modes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["migrate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("centralized", "middle", "d-push", "d-pull", "--allow-drop", "--cleanup-source",
                 "--dry-run"):
        assert word in out


@pytest.mark.parametrize("value", ["0", "-5"])
def test_confirm_timeout_below_one_second_is_rejected_before_any_device(value: str) -> None:
    code, out, err = run(*migrate_args("--confirm-timeout", value))
    assert code == 2 and out == ""
    assert err == f"FAIL  vm-web-01: --confirm-timeout must be at least 1 second, not {value}\n"


@pytest.mark.parametrize(("vm", "source", "destination", "needle"), [
    ("vm-web-01", "host-zz", "host-b3", "host-zz"),
    ("vm-web-01", "host-a1", "host-zz", "host-zz"),
    ("vm-web-01", "host-a1", "host-a1", "host-a1"),
    ("vm-web-01", "host-b1", "host-b3", "host-a1"),   # the topology says the VM is on host-a1
])
def test_wrong_vm_or_hosts_give_one_line_and_exit_2(vm: str, source: str, destination: str,
                                                    needle: str) -> None:
    code, out, err = run(*migrate_args(vm=vm, source=source, destination=destination))
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"FAIL  {vm}: ")
    assert needle in err.removeprefix(f"FAIL  {vm}: ")
    assert "Traceback" not in err


def test_json_failure_is_still_json_on_stdout() -> None:
    import json
    code, out, err = run(*migrate_args("--json", source="host-b1"))
    assert code == 2
    doc = json.loads(out)
    assert doc["outcome"] == "FAIL" and doc["exit_code"] == 2 and doc["error_type"] == "UnknownVmError"
    assert doc["vm_id"] == "vm-web-01" and "host-a1" in doc["error"]
    assert err.count("\n") == 1


@pytest.mark.parametrize("text", [
    "devices: [unclosed\n",                                    # not YAML
    "devices:\n  x:\n    address: 127.0.0.1\n    bogus: 1\n",  # unknown key, missing fields
    "- just\n- a list\n",
])
def test_malformed_topology_gives_one_line_with_the_file_and_exit_2(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, out, err = run("migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3",
                         "--topology", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_missing_topology_file_exit_2(tmp_path: Path) -> None:
    code, _, err = run("migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3",
                       "--topology", str(tmp_path / "absent.yaml"))
    assert code == 2 and err.count("\n") == 1 and "absent.yaml" in err


def test_sim_directory_without_a_fabric_exit_2(tmp_path: Path) -> None:
    code, _, err = run("migrate", "vm-web-01", "--from", "host-a1", "--to", "host-b3", "--sim", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "fabric.yaml" in err

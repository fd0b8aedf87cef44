"""SIGKILL the coordinator while it compensates, for real, then ``netmig recover`` finishes the rollback.

b-nat1 answers every confirming commit with an rpc-error (netconf-sim fault injection), so after the
other destinations confirmed, the centralized transaction gives up on b-nat1 and compensates them: each
confirmed device gets the undo as its own confirmed commit (journaled compensate, compensate-commit,
compensate-verify, compensate-confirm). A child process runs that migration over a fabric living in this
test process and SIGKILLs itself right after journaling the chosen compensation step on the chosen
device (netmig.journal_hook's ``NETMIG_TEST_KILL_AT``). ``netmig recover`` then runs in a new process,
with b-nat1 still refusing every confirming commit: it must roll the migration back everywhere, every
device's running config and learned state as before, no commit left pending, the journal sealed
"rolled-back", and a second recover with nothing to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netconf_sim.faults import FaultRule
from test_fault_matrix import snapshot as whole
from test_sigkill import CHILD, EXAMPLE, lab

from netmig.journal import SqliteJournal, Step

CONFIRM_TIMEOUT_S = 3    # how long the transaction keeps retrying b-nat1's confirm before compensating
REFUSING = "b-nat1"
COMPENSATED = ("b-fw1", "b-leaf1", "b-spine1")
STEPS = ("compensate", "compensate-commit", "compensate-verify", "compensate-confirm")
RECOVER = "import sys\nfrom netmig.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _env(environ: dict[str, str], kill_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NETMIG_SIM_PASSWORD") and k != "NETMIG_TEST_KILL_AT"}
    env.update(environ)
    if kill_at is not None:
        env["NETMIG_TEST_KILL_AT"] = kill_at
    return env


def migrate_refused(fabric: Any, environ: dict[str, str], journal: Path,
                    kill_at: str | None) -> subprocess.CompletedProcess[str]:
    """The migration in a child process, with b-nat1 refusing every confirming commit."""
    refuse = FaultRule("rpc-error", "confirming-commit", error_tag="operation-failed")  # every time
    fabric.device(REFUSING).faults.set(refuse)
    args = [sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json), str(fabric.known_hosts),
            str(journal), str(CONFIRM_TIMEOUT_S)]
    return subprocess.run(args, env=_env(environ, kill_at), capture_output=True, text=True, timeout=120,
                          check=False)


def netmig_recover(environ: dict[str, str], journal: Path) -> tuple[int, list[dict[str, Any]], str]:
    args = [sys.executable, "-c", RECOVER, "recover", "--json", "--journal", str(journal)]
    done = subprocess.run(args, env=_env(environ, None), capture_output=True, text=True, timeout=180,
                          check=False)
    return done.returncode, json.loads(done.stdout or "null") or [], done.stderr


def test_unkilled_run_compensates_every_confirmed_device(fresh_fabric: Callable[..., Any],
                                                         tmp_path: Path) -> None:
    """The reference: without a kill the coordinator compensates by itself and journals each step."""
    fabric = fresh_fabric()
    _, environ = lab(fabric)
    before = whole(fabric)
    done = migrate_refused(fabric, environ, tmp_path / "journal.sqlite", None)
    assert done.returncode != 0 and "MigrationRolledBackError" in done.stderr, done.stderr[-2000:]
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        (record,) = journal.history()
    assert record.outcome == "rolled-back" and not record.recovered
    journaled = {(s.device, s.step.value) for s in record.steps if s.ok is None}
    assert journaled >= {(d, s) for d in COMPENSATED for s in STEPS}
    assert not any(s.device == REFUSING and s.step.value.startswith("compensate") for s in record.steps)
    fabric.device(REFUSING).faults.clear()
    assert whole(fabric) == before


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("device", COMPENSATED)
def test_sigkill_while_compensating_then_recover(device: str, step: str, fresh_fabric: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    fabric = fresh_fabric()
    _, environ = lab(fabric)
    journal_path = tmp_path / "journal.sqlite"
    before = whole(fabric)

    child = migrate_refused(fabric, environ, journal_path, f"{device}:{step}:1")
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-2000:])
    with SqliteJournal(journal_path) as journal:
        (record,) = journal.unfinished()
    assert any(s.device == device and s.step.value == step for s in record.steps)
    assert any(s.step is Step.CONFIRM for s in record.steps)  # past the point of no return, then compensating

    code, reports, err = netmig_recover(environ, journal_path)  # b-nat1 still refuses confirming commits
    assert code == 0, (reports, err[-3000:])
    (report,) = reports
    assert report["migration_id"] == record.migration_id and not report["errors"], report
    assert report["outcome"] == "rolled-back", report
    with SqliteJournal(journal_path) as journal:
        sealed = journal.get(record.migration_id)
        assert sealed.finished and sealed.recovered and sealed.outcome == "rolled-back"
    assert all(dev.runtime.pending is None for dev in fabric.devices.values())  # nothing left to revert
    assert whole(fabric) == before
    assert netmig_recover(environ, journal_path)[:2] == (0, [])  # a second recovery does nothing
    assert whole(fabric) == before
    print(f"{device}:{step}: recovered rolled-back: {'; '.join(report['actions'])}")

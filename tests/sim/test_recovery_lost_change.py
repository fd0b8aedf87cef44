"""Recovery never claims success for a device whose pending commit expired before recovery came.

A child process migrates vm-web-01 (centralized, confirm timeout 3 s) over a fabric running in this test
process and SIGKILLs itself right after journaling b-nat1's confirm (netmig.journal_hook's
``NETMIG_TEST_KILL_AT``): the migration is past the point of no return, but b-nat1's confirming commit was
never sent. Recovery runs only after the devices' confirm timers expired, so b-nat1 (and any destination
the coordinator had not confirmed yet) rolled the change back by itself: the migration cannot be
completed. Recovery must see that from running, roll back every destination that kept the change
(compensate it) and end the migration "rolled-back", every destination as it was before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_fault_matrix import snapshot as whole
from test_sigkill import CHILD, EXAMPLE, lab

from netmig.devices import handles_for
from netmig.errors import RpcError
from netmig.journal import SqliteJournal, Step
from netmig.netconf.session import DeviceSession
from netmig.recovery import recover
from netmig.settings import SshPolicy

CONFIRM_TIMEOUT_S = 3


def kill_at_nat_confirm(fabric: Any, environ: dict[str, str], journal: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETMIG_SIM_PASSWORD")}
    env.update(environ)
    env["NETMIG_TEST_KILL_AT"] = "b-nat1:confirm:1"
    child = subprocess.run([sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json),
                            str(fabric.known_hosts), str(journal), str(CONFIRM_TIMEOUT_S)],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-2000:])


def test_expired_commits_are_not_reported_confirmed(fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    fabric = fresh_fabric()
    _, environ = lab(fabric)
    before = whole(fabric)  # running config and learned state of every device, timers left out
    kill_at_nat_confirm(fabric, environ, tmp_path / "journal.sqlite")
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        (record,) = journal.unfinished()
        assert any(s.device == "b-nat1" and s.step is Step.CONFIRM for s in record.steps)  # past no return
        assert not any(s.device == "b-nat1" and s.step is Step.CONFIRM and s.ok for s in record.steps)
        time.sleep(CONFIRM_TIMEOUT_S + 1.5)  # every pending confirmed commit rolls back by its timer
        (report,) = recover(journal, environ=environ)
        assert report.ok, report.errors
        assert report.outcome == "rolled-back", report.actions
        assert any(a.startswith("b-nat1: lost the change") for a in report.actions), report.actions
        assert not any(a.startswith("b-nat1: confirm") for a in report.actions)
        sealed = journal.get(record.migration_id)
        assert sealed.finished and sealed.recovered and sealed.outcome == "rolled-back"
        assert recover(journal, environ=environ) == []
    assert whole(fabric) == before


def test_a_confirmed_device_is_rolled_back_when_another_lost_the_change(
        fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    """b-leaf1's confirm reached the device (the test sends it, by the journaled persist-id, as the dead
    coordinator might have just before dying), b-nat1's never did: b-leaf1 must be undone."""
    fabric = fresh_fabric()
    topology, environ = lab(fabric)
    before = whole(fabric)  # running config and learned state of every device, timers left out
    kill_at_nat_confirm(fabric, environ, tmp_path / "journal.sqlite")
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        (record,) = journal.unfinished()
        handle = handles_for([topology.devices["b-leaf1"]], environ)["b-leaf1"]
        with DeviceSession(handle.endpoint, ssh=SshPolicy(known_hosts=topology.known_hosts)) as session:
            try:
                session.commit(persist_id=record.persist_ids["b-leaf1"])
            except RpcError as exc:  # the coordinator's own confirm got there first
                assert exc.tag == "invalid-value"
        time.sleep(CONFIRM_TIMEOUT_S + 1.5)
        now = whole(fabric)
        assert now["b-leaf1"] != before["b-leaf1"] and now["b-nat1"] == before["b-nat1"]  # kept / lost it
        (report,) = recover(journal, environ=environ)
        assert report.ok, report.errors
        assert report.outcome == "rolled-back", report.actions
        assert any(a.startswith("b-nat1: lost the change") for a in report.actions), report.actions
        assert any(a.startswith("b-leaf1: roll back:") and "undo applied and confirmed" in a
                   for a in report.actions), report.actions
        assert recover(journal, environ=environ) == []
    assert whole(fabric) == before
    assert all(dev.runtime.pending is None for dev in fabric.devices.values())  # the undo was confirmed

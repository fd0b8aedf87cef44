"""Recovery checks a DI-only destination with ``export-di`` instead of trusting a missing pending commit.

b-spine1 takes no static change in the middle mode, only a-spine1's learned state through ``import-di``
(the journaled plan lists it under ``di-only`` with the VM id). A child process migrates vm-web-01 in the
middle mode (confirm timeout 3 s) over a fabric running in this test process and SIGKILLs itself right
after journaling b-spine1's confirm (``NETMIG_TEST_KILL_AT``): past the point of no return, b-spine1's
confirming commit never sent. The test then confirms every other destination by its journaled persist-id
(as the dead coordinator may have just before dying) and waits for the timers:

- b-spine1's commit expired: it lost the change. Recovery's confirm finds nothing pending, asks b-spine1
  with ``export-di`` how many entries it holds for the VM (0), reports the change lost and rolls every
  other destination back (undo + withdraw-di): every device ends as before the migration.
- b-spine1 was confirmed too (its reply lost): ``export-di`` counts the imported entries, recovery says
  it holds the change and the migration ends complete.

Either way the transfer store the journal names holds none of the migration's blobs afterwards.
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
from test_sigkill import EXAMPLE, lab
from test_sigkill_modes import CHILD

from netmig.devices import handles_for
from netmig.errors import RpcError
from netmig.journal import MigrationRecord, SqliteJournal, Step
from netmig.netconf.session import DeviceSession
from netmig.recovery import recover
from netmig.settings import SshPolicy
from netmig.store import SqliteStore
from netmig.topology.model import Topology

CONFIRM_TIMEOUT_S = 3
DI_ONLY = "b-spine1"
STATIC = ("b-fw1", "b-leaf1", "b-nat1")


def kill_at_di_only_confirm(fabric: Any, environ: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NETMIG_SIM_PASSWORD") and k != "NETMIG_TEST_KILL_AT"}
    env.update(environ)
    env["NETMIG_TEST_KILL_AT"] = f"{DI_ONLY}:confirm:1"
    child = subprocess.run([sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json),
                            str(fabric.known_hosts), str(tmp_path / "journal.sqlite"),
                            str(tmp_path / "store.sqlite"), "middle", str(CONFIRM_TIMEOUT_S)],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-2000:])


def confirm(topology: Topology, environ: dict[str, str], record: MigrationRecord, device: str) -> None:
    """Send ``device``'s confirming commit by its journaled persist-id, as the coordinator would have."""
    handle = handles_for([topology.devices[device]], environ)[device]
    with DeviceSession(handle.endpoint, ssh=SshPolicy(known_hosts=topology.known_hosts)) as session:
        try:
            session.commit(persist_id=record.persist_ids[device])
        except RpcError as exc:  # the coordinator's own confirm got there first
            assert exc.tag == "invalid-value"


def killed(tmp_path: Path) -> MigrationRecord:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        (record,) = journal.unfinished()
    di_only = record.plan["di-only"]
    assert isinstance(di_only, dict) and di_only == {DI_ONLY: {"vm-id": "vm-web-01", "evidence": "export-di"}}
    assert DI_ONLY not in record.plan["destinations"]  # nothing journaled to check running against
    assert not any(s.device == DI_ONLY and s.step is Step.CONFIRM and s.ok for s in record.steps)
    with SqliteStore(tmp_path / "store.sqlite") as store:
        assert store.devices(record.migration_id), "the killed run stored no blob"
    return record


def no_blobs(tmp_path: Path, record: MigrationRecord) -> bool:
    with SqliteStore(tmp_path / "store.sqlite") as store:
        return store.devices(record.migration_id) == []


def test_di_only_device_that_lost_the_change_rolls_back(fresh_fabric: Callable[..., Any],
                                                         tmp_path: Path) -> None:
    fabric = fresh_fabric()
    topology, environ = lab(fabric)
    before = whole(fabric)  # running config and learned state of every device, timers left out
    kill_at_di_only_confirm(fabric, environ, tmp_path)
    record = killed(tmp_path)
    for device in STATIC:
        confirm(topology, environ, record, device)
    time.sleep(CONFIRM_TIMEOUT_S + 1.5)  # b-spine1's pending commit rolls back by its timer
    now = whole(fabric)
    assert now[DI_ONLY] == before[DI_ONLY] and all(now[d] != before[d] for d in STATIC)
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        (report,) = recover(journal, environ=environ)
        assert report.ok, report.errors
        assert report.outcome == "rolled-back", report.actions
        assert any(a.startswith(f"{DI_ONLY}: lost the change") and "export-di: 0 entries" in a
                   for a in report.actions), report.actions
        for device in STATIC:
            assert any(a.startswith(f"{device}: roll back:") and "undo applied and confirmed" in a
                       for a in report.actions), report.actions
        assert journal.get(record.migration_id).outcome == "rolled-back"
        assert recover(journal, environ=environ) == []
    assert whole(fabric) == before
    assert all(dev.runtime.pending is None for dev in fabric.devices.values())
    assert no_blobs(tmp_path, record)


def test_di_only_device_confirmed_with_its_reply_lost_holds_the_change(fresh_fabric: Callable[..., Any],
                                                                        tmp_path: Path) -> None:
    fabric = fresh_fabric()
    topology, environ = lab(fabric)
    before = whole(fabric)
    kill_at_di_only_confirm(fabric, environ, tmp_path)
    record = killed(tmp_path)
    for device in (*STATIC, DI_ONLY):
        confirm(topology, environ, record, device)
    time.sleep(CONFIRM_TIMEOUT_S + 1.5)  # nothing is pending any more: every confirm took effect
    migrated = whole(fabric)
    assert all(migrated[d] != before[d] for d in (*STATIC, DI_ONLY))
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        (report,) = recover(journal, environ=environ)
        assert report.ok, report.errors
        assert report.outcome == "success", report.actions
        assert any(a.startswith(f"{DI_ONLY}: confirm: already confirmed") and "holds the change" in a
                   for a in report.actions), report.actions
        assert not any("nothing to check" in a for a in report.actions), report.actions
        assert journal.get(record.migration_id).outcome == "success"
        assert recover(journal, environ=environ) == []
    assert whole(fabric) == migrated
    assert all(dev.runtime.pending is None for dev in fabric.devices.values())
    assert no_blobs(tmp_path, record)

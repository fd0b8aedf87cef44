"""Two migrations in threads on one fabric: VMs sharing devices serialize; a held lock is waited for."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_sigkill import lab

from netmig.api import migrate
from netmig.devices import handles_for
from netmig.feedback import MigrationResult
from netmig.journal import SqliteJournal
from netmig.model import PolicyKind
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.patience import DeviceBusyError, PatientSession
from netmig.settings import SshPolicy


def migrated(vm: str, **kwargs: Any) -> MigrationResult:
    """``netmig.migrate`` for a real (not dry) run."""
    result = migrate(vm, **kwargs)
    assert isinstance(result, MigrationResult)
    return result


OPTIONS = MigrationOptions(allow_drop=frozenset({PolicyKind("nd-entry")}))


def test_two_vms_through_the_same_devices_serialize(fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    topology, environ = lab(fresh_fabric())
    with SqliteJournal(tmp_path / "j.sqlite") as journal, ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(migrated, "vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                            options=OPTIONS, environ=environ, journal=journal),
                pool.submit(migrated, "vm-db-01", source="host-a2", destination="host-b1", topology=topology,
                            options=OPTIONS, environ=environ, journal=journal)]
        results = [job.result(timeout=120) for job in jobs]
        assert [r.outcome.value for r in results] == ["SUCCESS", "SUCCESS"]
        shared = set(journal.get(results[0].migration_id).devices) & set(
            journal.get(results[1].migration_id).devices)
        assert {"b-leaf1", "b-spine1"} <= shared
        assert [r.outcome for r in journal.history()] == ["success", "success"]
        # both VMs' entries are on the shared leaf: neither migration lost the other's change
        handle = handles_for([topology.devices["b-leaf1"]], environ)["b-leaf1"]
        with DeviceSession(handle.endpoint, ssh=SshPolicy(known_hosts=topology.known_hosts)) as s:
            text = s.get_config("running").xpath("string()")
        running = str(text)
        assert "52:54:00:10:00:01" in running.lower() or "vm-web-01" in running
        assert "52:54:00:10:00:02" in running.lower() or "vm-db-01" in running


def test_lock_held_too_long_names_device_and_holder(fresh_fabric: Callable[..., Any]) -> None:
    topology, environ = lab(fresh_fabric())
    handle = handles_for([topology.devices["b-leaf1"]], environ)["b-leaf1"]
    ssh = SshPolicy(known_hosts=topology.known_hosts)
    with DeviceSession(handle.endpoint, ssh=ssh) as holder:
        holder.lock("candidate")
        waiter = PatientSession(handle.endpoint, ssh=ssh, max_wait_s=0.5)
        with waiter, pytest.raises(DeviceBusyError, match=rf"b-leaf1.*session {holder.session_id}"):
            waiter.lock("candidate")


def test_migration_waits_for_a_briefly_held_lock(fresh_fabric: Callable[..., Any]) -> None:
    topology, environ = lab(fresh_fabric())
    handle = handles_for([topology.devices["b-leaf1"]], environ)["b-leaf1"]
    with DeviceSession(handle.endpoint, ssh=SshPolicy(known_hosts=topology.known_hosts)) as holder:
        holder.lock("candidate")
        timer = threading.Timer(1.5, holder.unlock, args=("candidate",))
        timer.start()
        started = time.monotonic()
        result = migrated("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                         options=OPTIONS, environ=environ)
        timer.join()
    assert result.ok and time.monotonic() - started >= 1.4

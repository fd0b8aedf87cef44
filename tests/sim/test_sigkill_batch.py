"""SIGKILL a batch coordinator in the middle of settling a group, for real, then ``netmig recover``.

Every batch mode: centralized and middle (one transaction per group), d-push and d-pull (the group's
staged commits shared by the devices' own imports, confirmed by netmig one device at a time too).

The generated fabric runs in this test process so it outlives the killed coordinator: a child
``python -c`` process migrates a batch over it with the journal on (one group: every VM in one confirmed
commit per destination device), confirming the devices one at a time (``device_parallelism=1``, in
name order), and SIGKILLs itself right after journaling the second device's confirming commit (the
``NETMIG_TEST_KILL_AT`` hook of netmig.journal_hook): the first device confirmed the group, the others
hold it as a pending confirmed commit. Recovery must then commit the group everywhere (when it comes
before the devices' confirm timers) or roll it back everywhere (when a timer already took the group
off a device), read back from the devices, and mark the group recovered in the journal.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import batchlab
import pytest
from lxml import etree

from netmig.batch import BatchItem
from netmig.cli import main
from netmig.journal import SqliteJournal
from netmig.recovery import recover

CONFIRM_TIMEOUT_S = 6

CHILD = """
import sys
from pathlib import Path
from netmig.batch import BatchItem, migrate_many
from netmig.journal import SqliteJournal
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.settings import CommitPolicy
from netmig.simlab import rewrite_for_fabric
from netmig.store import SqliteStore
from netmig.topology import load_topology

topo_file, devices_json, known_hosts, journal, store, mode, timeout = sys.argv[1:8]
items = [BatchItem(*arg.split(",")) for arg in sys.argv[8:]]
topology, _ = rewrite_for_fabric(load_topology(Path(topo_file)), Path(devices_json), Path(known_hosts))
drop = frozenset({PolicyKind.ND_ENTRY}) if mode != "centralized" else frozenset()
options = MigrationOptions(mode=Mode(mode), allow_drop=drop,
                           commit=CommitPolicy(confirm_timeout_s=int(timeout)))
with SqliteJournal(journal) as j, SqliteStore(store) as s:
    result = migrate_many(items, topology=topology, options=options, journal=j, store=s, workers=2,
                          device_parallelism=1)
print(sorted(result.succeeded))
"""


def run_child(fabric: Any, environ: dict[str, str], state: Path, items: list[BatchItem], mode: str,
              kill_at: str | None, timeout_s: int = CONFIRM_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETMIG_SIM_PASSWORD")}
    env.update(environ)
    env.pop("NETMIG_TEST_KILL_AT", None)
    if kill_at is not None:
        env["NETMIG_TEST_KILL_AT"] = kill_at
    args = [sys.executable, "-c", CHILD, str(state / "topology.yaml"), str(fabric.devices_json),
            str(fabric.known_hosts), str(state / "journal.sqlite"), str(state / "store.sqlite"), mode,
            str(timeout_s), *(f"{i.vm},{i.source},{i.destination}" for i in items)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, check=False)


def kill_mid_group(fabric: Any, environ: dict[str, str], state: Path, items: list[BatchItem],
                   mode: str) -> tuple[str, list[str]]:
    """Run the batch and kill it right after journaling the second device's confirm; return the group's
    id and its devices in the order they confirm."""
    child = run_child(fabric, environ, state, items, mode, "b-leaf00:confirm:1")
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-3000:])
    with SqliteJournal(state / "journal.sqlite") as journal:
        (record,) = journal.unfinished()
    devices = sorted(record.devices)
    # name order: b-fw1 confirmed first, then the kill came right after journaling b-leaf00's confirm
    assert devices[:2] == ["b-fw1", "b-leaf00"], devices
    assert record.group is not None and set(record.vms) == {i.vm for i in items}
    return record.migration_id, devices


def holding(fabric: Any, device: str, vms: set[str]) -> set[str]:
    """Which of ``vms`` the device's running config names."""
    text = batchlab.running(fabric, device).decode()
    return {vm for vm in vms if vm in text}


def _pruned(running: bytes) -> bytes:
    """A running tree without empty containers (the acme codec's removal leaves ``<security/>``, which
    holds nothing: YANG's non-presence containers exist only through their children)."""
    root = etree.fromstring(running)
    emptied = True
    while emptied:
        emptied = False
        for el in list(root.iter()):
            if el is not root and len(el) == 0 and not (el.text or "").strip() and el.getparent() is not None:
                el.getparent().remove(el)
                emptied = True
    return bytes(etree.tostring(root, method="c14n"))


def _blobs(state: Path) -> int:
    with sqlite3.connect(state / "store.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM di_blob").fetchone()[0])


def _recovered(state: Path, environ: dict[str, str], gid: str, vms: set[str], outcome: str) -> None:
    """``recover`` settles exactly the killed group, with ``outcome``, and seals its record."""
    with SqliteJournal(state / "journal.sqlite") as journal:
        (report,) = recover(journal, environ=environ)
        assert report.migration_id == gid and report.ok, report.errors
        assert report.outcome == outcome, report.actions
        assert set(report.vms) == vms
        sealed = journal.get(gid)
        assert sealed.finished and sealed.recovered and sealed.outcome == outcome


def _sealed_for_good(state: Path, environ: dict[str, str], gid: str) -> None:
    """The group's record says success and recovered; a second recovery finds nothing to do."""
    with SqliteJournal(state / "journal.sqlite") as journal:
        sealed = journal.get(gid)
        assert sealed.finished and sealed.recovered and sealed.outcome == "success"
        assert journal.unfinished() == []
        assert recover(journal, environ=environ) == []  # a second recovery does nothing


def _given_back(fabric: Any, devices: Any, before: dict[str, bytes]) -> None:
    """No VM left in site B's running, every destination holding exactly what it held before."""
    batchlab.wait_settled(fabric)
    assert batchlab.vms_in_running(fabric, "b-") == set()
    for name in devices:
        assert _pruned(batchlab.running(fabric, name)) == _pruned(before[name]), name


def _items(gen: Any) -> list[BatchItem]:
    return [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]


def test_centralized_group_killed_mid_confirm_is_committed_everywhere_by_netmig_recover(
        tmp_path: Path, schema_cache: Any, fabricgen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    vms = {i.vm for i in items}
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        gid, devices = kill_mid_group(fabric, environ, state, items, "centralized")
        # half-applied: b-fw1 confirmed the group, every other device holds it pending its timer
        assert fabric.device("b-fw1").runtime.pending is None
        assert all(fabric.device(d).runtime.pending is not None for d in devices[1:])

        for name, value in environ.items():  # netmig recover reads the passwords the plan names
            monkeypatch.setenv(name, value)
        out, err = io.StringIO(), io.StringIO()
        code = main(["recover", "--journal", str(state / "journal.sqlite"), "--json"], out=out, err=err)
        assert code == 0, err.getvalue()
        (report,) = json.loads(out.getvalue())
        assert report["migration_id"] == gid and report["outcome"] == "success", report
        assert set(report["vms"]) == vms  # which VMs the group held
        batchlab.wait_settled(fabric, timeout_s=2)  # confirmed by recovery, not left to the timers
        leaves = {f"b-leaf{v.leaf:02d}": set() for v in gen.vms}
        for v in gen.vms:
            leaves[f"b-leaf{v.leaf:02d}"].add(v.vm_id)
        for leaf, on_leaf in leaves.items():
            assert holding(fabric, leaf, vms) == on_leaf, leaf
        assert batchlab.vms_in_running(fabric, "b-") == vms
        _sealed_for_good(state, environ, gid)
        time.sleep(CONFIRM_TIMEOUT_S + 1)  # past every timer: the group stays
        assert batchlab.vms_in_running(fabric, "b-") == vms


@pytest.mark.parametrize("mode", ["centralized", "middle"])
def test_group_half_applied_past_the_timers_is_rolled_back_everywhere(
        mode: str, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """Recovery comes after the confirm timers rolled the group back on every device but the confirmed
    b-fw1: the group cannot be completed, so b-fw1 is given back with the group's journaled undo (in the
    middle mode with a withdraw-di of every VM's imports too)."""
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    vms = {i.vm for i in items}
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        before = {name: batchlab.running(fabric, name) for name in fabric.devices}
        gid, devices = kill_mid_group(fabric, environ, state, items, mode)
        batchlab.wait_settled(fabric, timeout_s=CONFIRM_TIMEOUT_S + 10)  # the timers fire
        assert holding(fabric, "b-fw1", vms) == vms  # the half-applied group, as the dead coordinator left it
        assert batchlab.vms_in_running(fabric, "b-leaf") == set()
        if mode == "middle":  # b-fw1's confirmed commit took the group's DI imports too
            assert batchlab.learned(fabric, "b-fw1", "vm-00000") == batchlab.DI_AT_B["b-fw1"]

        _recovered(state, environ, gid, vms, "rolled-back")
        _given_back(fabric, devices, before)
        if mode == "middle":
            for vm_id in sorted(vms):
                batchlab.assert_absent(fabric, vm_id)
            assert _blobs(state) == 0


def test_middle_group_killed_mid_confirm_is_committed_everywhere_and_its_blobs_dropped(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    vms = {i.vm for i in items}
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        gid, devices = kill_mid_group(fabric, environ, state, items, "middle")
        assert "b-spine1" in devices  # a device taking DI only is part of the group
        assert all(fabric.device(d).runtime.pending is not None for d in devices[1:])
        with SqliteJournal(state / "journal.sqlite") as journal:
            record = journal.get(gid)
            assert record.mode == "middle" and record.plan.get("di-store") is not None
            (report,) = recover(journal, environ=environ)
            assert report.migration_id == gid and report.ok, report.errors
            assert report.outcome == "success", report.actions
            assert set(report.vms) == vms
            assert journal.get(gid).recovered
        batchlab.wait_settled(fabric, timeout_s=2)
        for vm_id in sorted(vms):
            batchlab.assert_moved(fabric, gen, vm_id)
        assert _blobs(state) == 0  # the VMs' blobs left the transfer store


DIST_TIMEOUT_S = 10  # staging, every transfer and the first confirm must fit in it
DIST_MODES = ["d-push", "d-pull"]


def kill_mid_distributed_group(fabric: Any, environ: dict[str, str], state: Path, items: list[BatchItem],
                               mode: str) -> tuple[str, list[str]]:
    """Run a d-push/d-pull batch and kill it right after journaling b-leaf00's confirm, b-fw1 confirmed
    before it (one device at a time, in name order); the group's id and its destinations in that order."""
    child = run_child(fabric, environ, state, items, mode, "b-leaf00:confirm:1", DIST_TIMEOUT_S)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-3000:])
    with SqliteJournal(state / "journal.sqlite") as journal:
        (record,) = journal.unfinished()
    assert record.mode == mode and record.group is not None and set(record.vms) == {i.vm for i in items}
    roles = record.plan["devices"]
    assert isinstance(roles, dict)
    destinations = sorted(n for n, e in roles.items() if e["role"] == "destination")
    assert destinations[:2] == ["b-fw1", "b-leaf00"] and "b-spine1" in destinations, destinations
    # each VM's own migration id, under which the devices recorded its imports (recovery withdraws them)
    assert all(m["di-migration-id"] for m in record.group["vms"])  # type: ignore[attr-defined]
    return record.migration_id, destinations


@pytest.mark.parametrize("mode", DIST_MODES)
def test_distributed_group_killed_between_confirms_is_committed_everywhere_by_netmig_recover(
        mode: str, tmp_path: Path, schema_cache: Any, fabricgen: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """b-fw1 confirmed the group (its static policies and the DI the devices imported into it), the
    other destinations hold it pending: recovery confirms them, before their timers; every VM moved."""
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    vms = {i.vm for i in items}
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        gid, destinations = kill_mid_distributed_group(fabric, environ, state, items, mode)
        assert fabric.device("b-fw1").runtime.pending is None
        assert all(fabric.device(d).runtime.pending is not None for d in destinations[1:])

        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        out, err = io.StringIO(), io.StringIO()
        code = main(["recover", "--journal", str(state / "journal.sqlite"), "--json"], out=out, err=err)
        assert code == 0, err.getvalue()
        (report,) = json.loads(out.getvalue())
        assert report["migration_id"] == gid and report["outcome"] == "success", report
        assert set(report["vms"]) == vms
        batchlab.wait_settled(fabric, timeout_s=2)  # confirmed by recovery, not left to the timers
        for vm_id in sorted(vms):
            batchlab.assert_moved(fabric, gen, vm_id)
        _sealed_for_good(state, environ, gid)
        time.sleep(DIST_TIMEOUT_S + 1)  # past every timer: the group stays, imports included
        for vm_id in sorted(vms):
            batchlab.assert_moved(fabric, gen, vm_id)


@pytest.mark.parametrize("mode", DIST_MODES)
def test_distributed_group_half_applied_past_the_timers_is_rolled_back_everywhere(
        mode: str, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """Recovery comes after the timers took the group (static and imports) off every destination but the
    confirmed b-fw1: b-fw1 is given back with the group's journaled undo and one withdraw-di per VM."""
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    vms = {i.vm for i in items}
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        before = {name: batchlab.running(fabric, name) for name in fabric.devices}
        gid, destinations = kill_mid_distributed_group(fabric, environ, state, items, mode)
        batchlab.wait_settled(fabric, timeout_s=DIST_TIMEOUT_S + 10)
        assert holding(fabric, "b-fw1", vms) == vms  # as the dead coordinator left it
        assert batchlab.vms_in_running(fabric, "b-leaf") == set()
        for vm_id in sorted(vms):  # b-fw1's confirm took the devices' imports with it
            assert batchlab.learned(fabric, "b-fw1", vm_id) == batchlab.DI_AT_B["b-fw1"], vm_id
            assert batchlab.learned(fabric, "b-spine1", vm_id) == {}, vm_id

        _recovered(state, environ, gid, vms, "rolled-back")
        _given_back(fabric, destinations, before)
        for v in gen.vms:
            batchlab.assert_absent(fabric, v.vm_id)
            # the sources kept everything
            assert batchlab.learned(fabric, f"a-leaf{v.leaf:02d}", v.vm_id) == batchlab.DI_AT_B["leaf"]


@pytest.mark.parametrize("mode", DIST_MODES)
def test_distributed_group_killed_before_its_confirms_is_cancelled_everywhere_imports_included(
        mode: str, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """Killed while verifying (every destination staged, every device's imports in, nothing confirmed):
    recovery cancels the group's pending commit on every destination, long before the timers, and the
    devices' imports, follow-up commits under the same persist-id, go with it."""
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    vms = {i.vm for i in items}
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        before = {name: batchlab.running(fabric, name) for name in fabric.devices}
        child = run_child(fabric, environ, state, items, mode, "b-fw1:verify:1", 60)
        assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-3000:])
        for vm_id in sorted(vms):  # imported, pending
            assert batchlab.learned(fabric, "b-spine1", vm_id) == batchlab.DI_AT_B["b-spine1"], vm_id
        with SqliteJournal(state / "journal.sqlite") as journal:
            (report,) = recover(journal, environ=environ)
            assert report.ok and report.outcome == "rolled-back", (report.errors, report.actions)
            assert set(report.vms) == vms
            (sealed,) = journal.history()
            assert sealed.recovered and sealed.outcome == "rolled-back"
        batchlab.assert_nothing_pending(fabric)  # cancelled by recovery, not left to the 60 s timers
        for v in gen.vms:
            batchlab.assert_absent(fabric, v.vm_id)
        assert {n: batchlab.running(fabric, n) for n in fabric.devices} == before


def test_distributed_retry_killed_between_confirms_is_recovered_alone(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """b-leaf01 refuses every import: the group's first try is rolled back and its record closed before
    the leaf-00 VMs are tried again as ``<group>-r1``; the coordinator dies between that retry's
    confirms. Recovery settles the retry alone (committed everywhere); the first try needs nothing."""
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen)
    state = tmp_path / "state"
    with fabricgen.running(gen, state, schemas=schema_cache) as (fabric, _topo, environ):
        fabric.device("b-leaf01").migration.fail_import = True
        child = run_child(fabric, environ, state, items, "d-push", "b-leaf00:confirm:1", DIST_TIMEOUT_S)
        assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-3000:])
        with SqliteJournal(state / "journal.sqlite") as journal:
            (retry,) = journal.unfinished()
            (first,) = [r for r in journal.history() if r.finished]
            assert retry.migration_id == f"{first.migration_id}-r1"
            assert first.outcome == "rolled-back" and not first.recovered
            assert set(retry.vms) == {"vm-00000", "vm-00002"}
            assert fabric.device("b-fw1").runtime.pending is None  # b-fw1 confirmed the retry
            assert fabric.device("b-leaf00").runtime.pending is not None
            (report,) = recover(journal, environ=environ)
            assert report.migration_id == retry.migration_id and report.ok, report.errors
            assert report.outcome == "success" and set(report.vms) == set(retry.vms)
            assert journal.get(retry.migration_id).recovered
        batchlab.wait_settled(fabric, timeout_s=2)
        for vm_id in ("vm-00000", "vm-00002"):
            batchlab.assert_moved(fabric, gen, vm_id)
        for vm_id in ("vm-00001", "vm-00003"):
            batchlab.assert_absent(fabric, vm_id)

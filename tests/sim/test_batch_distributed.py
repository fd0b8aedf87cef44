"""Mass migration in the d-push and d-pull modes (issue 7) over SSH to a generated fabric: per group one
staged confirmed commit per destination device, one vdp-associate per VM carrying the group's group-id,
the devices' imports follow-up commits of that one pending commit; confirmed after every feedback.

What the devices hold afterwards is read from the simulator itself (running datastores and learned
tables), not through netmig.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import batchlab
import pytest

from netmig.batch import BatchItem, BatchResult, migrate_many
from netmig.feedback import Outcome
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.settings import CommitPolicy, Timeouts

MODES = [Mode.D_PUSH, Mode.D_PULL]


def _options(mode: Mode, **kwargs: Any) -> MigrationOptions:
    return MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}), **kwargs)


def _run(mode: Mode, items: list[BatchItem], topo: Any, environ: Any, **kwargs: Any) -> BatchResult:
    options = kwargs.pop("options", _options(mode))
    return migrate_many(items, topology=topo, environ=environ, options=options, workers=2, **kwargs)


def _items(gen: Any, order: list[str] | None = None) -> list[BatchItem]:
    by_id = {v.vm_id: v for v in gen.vms}
    return [BatchItem(i, by_id[i].source_host, by_id[i].destination_host)
            for i in (order if order is not None else list(by_id))]


@pytest.mark.parametrize("mode", MODES)
def test_distributed_batch_moves_every_vm_and_leaves_out_a_conflict(
        mode: Mode, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """Six VMs in one group (vm-00003's destination port is held by a squatter): the five others' static
    policies and learned state land at site B, through one pending commit per destination shared by
    every VM's device-to-device transfers; the conflicting VM is left out and reported."""
    gen = fabricgen.generate(6, leaves=3, occupied=[3])
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        sources = {n: batchlab.running(fabric, n) for n in fabric.devices if n.startswith("a-")}
        assert batchlab.vms_in_running(fabric, "b-") == set()
        seen: list[str] = []
        result = _run(mode, _items(gen), topo, environ, on_vm=lambda r: seen.append(r.vm))
        expected = {v.vm_id for v in gen.vms} - {"vm-00003"}
        assert set(result.succeeded) == expected, [r.error for r in result.failed]
        (failed,) = result.failed
        assert failed.vm == "vm-00003" and failed.error is not None and "squatter-00003" in failed.error
        assert sorted(seen) == sorted(v.vm_id for v in gen.vms)
        batchlab.wait_settled(fabric)
        assert batchlab.vms_in_running(fabric, "b-") == expected
        for vm_id in sorted(expected):
            batchlab.assert_moved(fabric, gen, vm_id)
        batchlab.assert_absent(fabric, "vm-00003")
        ok = [r for r in result.results if r.outcome is Outcome.SUCCESS]
        assert {r.group for r in ok} == {0}
        assert all({"b-spine1", "b-fw1"} <= set(r.devices) for r in ok)
        assert {n: batchlab.running(fabric, n) for n in sources} == sources  # make before break
        # each device's import records are per VM (one migration id each), not per group
        ledger = fabric.device("b-spine1").migration.ledger
        assert len(ledger) == len(expected)


@pytest.mark.parametrize("mode", MODES)
def test_distributed_batch_refused_transfer_rolls_its_group_back_everywhere(
        mode: Mode, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """Groups of two: the leaf-00 VMs, then the leaf-01 VMs. b-leaf01 refuses every import-di, so the
    second group's transfers to it fail: that group is cancelled on every device (its static edits and
    the DI b-spine1 and b-fw1 took for it before the refusal go with it), the sources are untouched, and
    both its VMs are FAIL, named; the first group moves."""
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen, ["vm-00000", "vm-00002", "vm-00001", "vm-00003"])
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        sources = {n: batchlab.running(fabric, n) for n in fabric.devices if n.startswith("a-")}
        fabric.device("b-leaf01").migration.fail_import = True
        result = _run(mode, items, topo, environ, group_size=2)
        assert set(result.succeeded) == {"vm-00000", "vm-00002"}, [r.error for r in result.failed]
        failed = {r.vm: r for r in result.failed}
        assert set(failed) == {"vm-00001", "vm-00003"}
        for r in failed.values():
            assert r.group == 1 and r.error is not None and "rolled back" in r.error
            assert "b-leaf01" in r.error and "injected" in r.error, r.error
        batchlab.wait_settled(fabric)
        for vm_id in ("vm-00000", "vm-00002"):
            batchlab.assert_moved(fabric, gen, vm_id)
        for vm_id in ("vm-00001", "vm-00003"):
            batchlab.assert_absent(fabric, vm_id)
        assert {n: batchlab.running(fabric, n) for n in sources} == sources
        assert batchlab.learned(fabric, "a-leaf01", "vm-00001") == batchlab.DI_AT_B["leaf"]


@pytest.mark.parametrize("mode", MODES)
def test_distributed_batch_silent_device_fails_its_group_by_the_deadline(
        mode: Mode, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """A reporting device that never answers its associates: the group waits for the feedback deadline,
    then is rolled back everywhere, naming the silent device; nothing stays pending."""
    gen = fabricgen.generate(2, leaves=2)
    silent = "a-fw1" if mode is Mode.D_PUSH else "b-fw1"
    options = _options(mode, commit=CommitPolicy(confirm_timeout_s=30),
                       timeouts=Timeouts(connect_s=3, rpc_s=5, connect_attempts=2))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        fabric.device(silent).migration.ignore_associate = True
        started = time.monotonic()
        result = _run(mode, _items(gen), topo, environ, options=options, feedback_deadline_s=2.0)
        assert time.monotonic() - started < 20
        assert result.succeeded == ()
        assert all(r.error is not None and f"{silent}: no migration-feedback within 2 s" in r.error
                   for r in result.failed), [r.error for r in result.failed]
        # silent for every VM: a device failing, which halving the group cannot isolate: one try only
        assert all(f"{silent} answered none of its associates" in (r.error or "") and "tried in" not in
                   (r.error or "") for r in result.failed), [r.error for r in result.failed]
        batchlab.wait_settled(fabric, timeout_s=2.0)  # cancelled, not left to expire
        for v in gen.vms:
            batchlab.assert_absent(fabric, v.vm_id)


def test_distributed_batch_rearms_pending_commits_between_waves(
        tmp_path: Path, schema_cache: Any, fabricgen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One VM per wave, each wave slowed down, a 2 s confirm timeout: the group outlasts it several times
    over, and b-leaf00, whose VMs go first, gets no follow-up commit in the later waves; the batch re-arms
    every pending commit between waves, so nothing expires and every VM moves."""
    import netmig.batch_distributed as bd

    class OneAtATime(bd.DistributedBatch):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.wave = 1

    slow_wave = bd.DistributedBatch._wave

    def wave(self: bd.DistributedBatch, *args: Any) -> dict[str, tuple[str, bool]]:
        failed = slow_wave(self, *args)
        time.sleep(1.2)
        return failed

    monkeypatch.setattr(bd, "DistributedBatch", OneAtATime)
    monkeypatch.setattr(OneAtATime, "_wave", wave)
    gen = fabricgen.generate(4, leaves=2)
    items = _items(gen, ["vm-00000", "vm-00002", "vm-00001", "vm-00003"])
    options = _options(Mode.D_PUSH, commit=CommitPolicy(confirm_timeout_s=2))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        started = time.monotonic()
        result = _run(Mode.D_PUSH, items, topo, environ, options=options)
        assert time.monotonic() - started > 4  # twice the confirm timeout, at least
        assert set(result.succeeded) == {v.vm_id for v in gen.vms}, [r.error for r in result.failed]
        batchlab.wait_settled(fabric)
        for v in gen.vms:
            batchlab.assert_moved(fabric, gen, v.vm_id)


@pytest.mark.parametrize("mode", MODES)
def test_distributed_batch_leaves_out_a_vm_whose_transfer_is_refused_and_moves_the_others(
        mode: Mode, tmp_path: Path, schema_cache: Any, fabricgen: Any, monkeypatch: pytest.MonkeyPatch,
        ) -> None:
    """Four VMs in one group. After the batch checked the destinations, and before the group commits,
    b-fw1 learns a firewall session for another VM at the key of one of vm-00001's: importing vm-00001's
    DI there is refused (di-conflict), and the fail report names vm-00001. The group is cancelled
    everywhere, then tried again without vm-00001 under a new group id: the three others move (static
    policies and every learned entry at site B), vm-00001 is FAIL with its own reason and nothing of it
    is at site B; the sources are untouched."""
    import netmig.batch_distributed as bd

    gen = fabricgen.generate(4, leaves=2)
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        sources = {n: batchlab.running(fabric, n) for n in fabric.devices if n.startswith("a-")}
        commit_group = bd.DistributedBatch.commit_group

        def learned_meanwhile(self: bd.DistributedBatch, *args: Any) -> bd.GroupOutcome:
            batchlab.claim(fabric, "a-fw1", "b-fw1", "vm-00001", "firewall-session", "vm-intruder")
            return commit_group(self, *args)

        monkeypatch.setattr(bd.DistributedBatch, "commit_group", learned_meanwhile)
        result = _run(mode, _items(gen), topo, environ)
        moved = {"vm-00000", "vm-00002", "vm-00003"}
        assert set(result.succeeded) == moved, [r.error for r in result.failed]
        (failed,) = result.failed
        assert failed.vm == "vm-00001" and failed.group == 0 and failed.error is not None
        assert "transfer failed: vm-00001" in failed.error and "vm-intruder" in failed.error, failed.error
        assert "rolled back" in failed.error and "-g0-r1" in failed.error, failed.error
        assert {"b-fw1", "b-leaf01"} <= set(failed.devices)
        batchlab.wait_settled(fabric)
        for vm_id in sorted(moved):
            batchlab.assert_moved(fabric, gen, vm_id)
        batchlab.assert_absent(fabric, "vm-00001")
        assert batchlab.learned(fabric, "b-fw1", "vm-intruder") == {"firewall-session": 1}
        assert {n: batchlab.running(fabric, n) for n in sources} == sources  # make before break
        # the moved VMs' imports are the retry's (their first imports went with the cancelled group)
        ledger = fabric.device("b-spine1").migration.ledger
        assert {ledger.get(m).vm_id for m in (f"{result_batch(result)}-g0-r1-{n}" for n in range(3))
                if ledger.get(m) is not None} == moved


def result_batch(result: BatchResult) -> str:
    """The batch id, read from a failed VM's reason (``batch-<hex>-g<n>...``)."""
    import re

    errors = " ".join(r.error or "" for r in result.results)
    match = re.search(r"(batch-[0-9a-f]+)-g\d", errors)
    assert match is not None, errors
    return match.group(1)


@pytest.mark.parametrize("mode", MODES)
def test_distributed_batch_finds_a_silent_vm_by_halving_its_group(
        mode: Mode, tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """A reporting device never answers vm-00002's associate (silence names no VM): the group of four
    is cancelled at the deadline and tried again in halves, the failing half again in halves, until
    vm-00002 fails alone; the three others move. vm-00002's reason names the silent device and every
    group it was tried in; nothing stays pending, nothing of vm-00002 is at site B."""
    gen = fabricgen.generate(4, leaves=2)
    silent = "a-spine1" if mode is Mode.D_PUSH else "b-spine1"
    options = _options(mode, commit=CommitPolicy(confirm_timeout_s=30),
                       timeouts=Timeouts(connect_s=3, rpc_s=5, connect_attempts=2))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        sources = {n: batchlab.running(fabric, n) for n in fabric.devices if n.startswith("a-")}
        fabric.device(silent).migration.ignore_associate_of.add("vm-00002")
        started = time.monotonic()
        result = _run(mode, _items(gen), topo, environ, options=options, feedback_deadline_s=1.5)
        assert time.monotonic() - started < 40
        moved = {"vm-00000", "vm-00001", "vm-00003"}
        assert set(result.succeeded) == moved, [r.error for r in result.failed]
        (failed,) = result.failed
        assert failed.error is not None and f"{silent}: no migration-feedback within 1.5 s" in failed.error
        batch = result_batch(result)
        # g0 (all four), r1 [0, 1] and r2 [2, 3], then r3 [2] and r4 [3]
        assert f"(tried in {batch}-g0, {batch}-g0-r2, {batch}-g0-r3)" in failed.error, failed.error
        by_vm = {r.vm: r for r in result.results}
        assert by_vm["vm-00003"].suspension_ms > by_vm["vm-00000"].suspension_ms  # type: ignore[operator]
        batchlab.wait_settled(fabric, timeout_s=2.0)
        for vm_id in sorted(moved):
            batchlab.assert_moved(fabric, gen, vm_id)
        batchlab.assert_absent(fabric, "vm-00002")
        assert {n: batchlab.running(fabric, n) for n in sources} == sources


def test_distributed_batch_does_not_retry_a_staging_failure(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """b-spine1 refuses the group's staging commit once (a retry would pass): a device failing is not a
    VM's problem, so the group is rolled back and reported as before, not tried again."""
    gen = fabricgen.generate(4, leaves=2)
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        fabric.device("b-spine1").faults.set(kind="rpc-error", operation="confirmed-commit", nth=1)
        result = _run(Mode.D_PUSH, _items(gen), topo, environ)
        assert result.succeeded == ()
        for r in result.failed:
            assert r.error is not None and "b-spine1: stage" in r.error and "injected" in r.error, r.error
            assert "-r1" not in r.error and "tried in" not in r.error, r.error
        batchlab.assert_nothing_pending(fabric)
        for v in gen.vms:
            batchlab.assert_absent(fabric, v.vm_id)

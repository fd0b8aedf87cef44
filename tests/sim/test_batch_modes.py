"""Mass migration in the middle mode (issue 7) over SSH to a generated fabric: group commit per destination
device, DI exported from the sources as opaque blobs, kept in the transfer store and imported by
``import-di`` under each group's one confirmed commit; per-VM feedback.

What the destinations hold afterwards is read by the simulator itself (its running datastore and its
learned tables), not through netmig.
"""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path
from typing import Any

import batchlab
import pytest
from lxml import etree

from netmig.batch import BatchItem, BatchResult, migrate_many
from netmig.errors import InputError
from netmig.feedback import Outcome
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.settings import CommitPolicy, Timeouts
from netmig.store import Blob, SqliteStore

ROOT = Path(__file__).resolve().parents[2]
MIDDLE = MigrationOptions(mode=Mode.MIDDLE, allow_drop=frozenset({PolicyKind.ND_ENTRY}))


class CountingStore:
    """The real SQLite store, counting what the batch put into it (to show the blobs went through it)."""

    def __init__(self, path: Path) -> None:
        self.inner = SqliteStore(path)
        self.puts: list[tuple[str, str, int]] = []

    def put(self, migration_id: str, device: str, blob: Blob) -> None:
        self.puts.append((migration_id, device, blob.entry_count))
        self.inner.put(migration_id, device, blob)

    def get(self, migration_id: str, device: str) -> Blob | None:
        return self.inner.get(migration_id, device)

    def devices(self, migration_id: str) -> list[str]:
        return self.inner.devices(migration_id)

    def drop(self, migration_id: str) -> None:
        self.inner.drop(migration_id)


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM di_blob").fetchone()[0])


def _run(items: list[BatchItem], topo: Any, environ: Any, store: Any, **kwargs: Any) -> BatchResult:
    options = kwargs.pop("options", MIDDLE)
    return migrate_many(items, topology=topo, environ=environ, options=options, workers=2, store=store,
                        **kwargs)


def test_middle_batch_moves_static_and_learned_state_and_leaves_out_a_conflict(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    gen = fabricgen.generate(6, leaves=3, occupied=[3])
    items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
    store = CountingStore(tmp_path / "store.sqlite")
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        assert batchlab.vms_in_running(fabric, "b-") == set()
        seen: list[str] = []
        result = _run(items, topo, environ, store, on_vm=lambda r: seen.append(r.vm))
        expected = {v.vm_id for v in gen.vms} - {"vm-00003"}
        assert set(result.succeeded) == expected
        (failed,) = result.failed
        assert failed.vm == "vm-00003" and failed.outcome is Outcome.FAIL
        assert failed.error is not None and "squatter-00003" in failed.error
        assert sorted(seen) == sorted(v.vm_id for v in gen.vms)
        # static policies of the five at site B, and nothing of the conflicting VM
        assert batchlab.vms_in_running(fabric, "b-") == expected
        for vm_id in sorted(expected):
            batchlab.assert_moved(fabric, gen, vm_id)
        batchlab.assert_absent(fabric, "vm-00003")
        squatter = [e for e in fabric.device("b-leaf00").learned.entries("mac-entry")
                    if e.vm_id == "squatter-00003"]
        assert len(squatter) == 1  # the squatter keeps its port
        # one group; each VM reports the DI-only devices it reached (b-spine1 takes no static change)
        ok = [r for r in result.results if r.outcome is Outcome.SUCCESS]
        assert {r.group for r in ok} == {0}
        assert all("b-spine1" in r.devices and "b-fw1" in r.devices for r in ok)
        assert "export" in result.timings_ms
        batchlab.wait_settled(fabric)
    # the blobs went through the store (a non-empty one from the VM's leaf, a-spine1 and a-fw1 for each
    # moved VM, under a migration id of its own; none for the VM left out) and were dropped at the end
    per_vm: dict[str, set[str]] = {}
    for mid, dev, entries in store.puts:
        assert entries > 0, (mid, dev)
        per_vm.setdefault(mid, set()).add("a-leaf" if dev.startswith("a-leaf") else dev)
    assert list(per_vm.values()) == [{"a-leaf", "a-spine1", "a-fw1"}] * len(expected)
    assert _rows(tmp_path / "store.sqlite") == 0


def test_middle_batch_group_whose_import_is_refused_is_rolled_back_everywhere(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """Groups of two: the leaf-00 VMs, then the leaf-01 VMs; b-leaf01 refuses every import-di, so the
    second group fails on its import and leaves nothing anywhere (its static edits and the DI imported
    into b-spine1 and b-fw1 before the refusal are discarded with it); the first group moves."""
    gen = fabricgen.generate(4, leaves=2)
    by_id = {v.vm_id: v for v in gen.vms}
    order = ["vm-00000", "vm-00002", "vm-00001", "vm-00003"]
    items = [BatchItem(i, by_id[i].source_host, by_id[i].destination_host) for i in order]
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        sources = {n: fabric.call(lambda d=d: etree.tostring(d.engine.running_view(), method="c14n"))
                   for n, d in fabric.devices.items() if n.startswith("a-")}
        fabric.device("b-leaf01").migration.fail_import = True
        result = _run(items, topo, environ, SqliteStore(tmp_path / "store.sqlite"), group_size=2)
        assert set(result.succeeded) == {"vm-00000", "vm-00002"}
        failed = {r.vm: r for r in result.failed}
        assert set(failed) == {"vm-00001", "vm-00003"}
        assert all(r.group == 1 and r.error is not None and "b-leaf01" in r.error for r in failed.values())
        batchlab.wait_settled(fabric)
        for vm_id in ("vm-00000", "vm-00002"):
            batchlab.assert_moved(fabric, gen, vm_id)
        for vm_id in ("vm-00001", "vm-00003"):
            batchlab.assert_absent(fabric, vm_id)
        after = {n: fabric.call(lambda d=d: etree.tostring(d.engine.running_view(), method="c14n"))
                 for n, d in fabric.devices.items() if n.startswith("a-")}
        assert after == sources  # sources intact (make before break)
        assert batchlab.learned(fabric, "a-leaf01", "vm-00001") == batchlab.DI_AT_B["leaf"]
    assert _rows(tmp_path / "store.sqlite") == 0


def test_middle_batch_confirm_failing_for_good_compensates_the_confirmed_devices(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    """b-fw1 refuses every confirming commit: after the others confirmed, each is given back by its own
    confirmed commit (the merged static undo of the group's VMs plus a withdraw-di per VM)."""
    gen = fabricgen.generate(3, leaves=2)
    items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
    options = MigrationOptions(mode=Mode.MIDDLE, allow_drop=frozenset({PolicyKind.ND_ENTRY}),
                               commit=CommitPolicy(confirm_timeout_s=3),
                               timeouts=Timeouts(connect_s=3, rpc_s=5, connect_attempts=2))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        fabric.device("b-fw1").faults.set(kind="rpc-error", operation="confirming-commit")
        result = _run(items, topo, environ, SqliteStore(tmp_path / "store.sqlite"), options=options)
        fabric.device("b-fw1").faults.clear()
        assert result.succeeded == ()
        errors = [r.error or "" for r in result.failed]
        assert len(errors) == 3 and all("compensated" in e for e in errors), errors[0]
        batchlab.wait_settled(fabric)
        for v in gen.vms:
            batchlab.assert_absent(fabric, v.vm_id)
            assert batchlab.learned(fabric, f"a-leaf{v.leaf:02d}", v.vm_id) == batchlab.DI_AT_B["leaf"]
    assert _rows(tmp_path / "store.sqlite") == 0


@pytest.mark.parametrize("mode", list(Mode))
def test_batches_refuse_a_dry_run_in_every_mode(mode: Mode) -> None:
    with pytest.raises(InputError, match=f"without --dry-run or --cleanup-source \\(mode {mode.value}"):
        migrate_many([BatchItem("vm-1", "h1", "h2")], topology="/nonexistent.yaml",
                     options=MigrationOptions(mode=mode, dry_run=True))


def test_middle_batch_imports_nothing_that_could_decode_blobs() -> None:
    tree = ast.parse((ROOT / "netmig" / "batch_middle.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    decoders = ("netmig.codecs", "netmig.model", "lxml", "netmig.xmlkit.parse", "json", "pickle")
    assert not {i for i in found if i.startswith(decoders)}
    assert "netmig.modes.middle.export_di" in found  # the blob path it does use


def test_cli_batch_in_the_middle_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``netmig migrate --batch FILE --mode middle`` on the two-site example: the VM moves, its blobs
    pass through the default store under $NETMIG_HOME and are gone afterwards; --dry-run is refused."""
    import io

    from netmig.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("NETMIG_HOME", str(home))
    batch = tmp_path / "batch.csv"
    batch.write_text("vm,from,to\nvm-web-01,host-a1,host-b3\n")
    common = ["migrate", "--batch", str(batch), "--sim", str(ROOT / "examples" / "two-site"),
              "--sim-state", str(tmp_path / "sim"), "--allow-drop", "nd-entry"]
    out, err = io.StringIO(), io.StringIO()
    assert main([*common, "--mode", "middle"], out=out, err=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == "SUCCESS  vm-web-01" and lines[1].startswith("1 of 1 VMs moved") and len(lines) == 2
    assert _rows(home / "di-store.sqlite") == 0
    out, err = io.StringIO(), io.StringIO()
    assert main([*common, "--mode", "d-push", "--dry-run"], out=out, err=err) == 2
    assert err.getvalue().count("\n") == 1 and "without --dry-run" in err.getvalue(), err.getvalue()

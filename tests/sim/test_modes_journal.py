"""The middle, d-push and d-pull modes journal their steps, and recovery settles them after a crash.

Real NETCONF over SSH to netconf-sim (a fresh copy of examples/two-site per test, safe under -n 2).
The crash test runs the coordinator in a child process that SIGKILLs itself (the NETMIG_TEST_KILL_AT
hook of netmig.journal_hook) after the devices committed their imports but before any confirm; the
fabric lives in this process, so the devices' pending confirmed commits outlive the coordinator.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from netmig.api import migrate
from netmig.cli import main as netmig_main
from netmig.errors import MigrationRolledBackError
from netmig.feedback import MigrationResult
from netmig.journal import SqliteJournal, Step
from netmig.model import PolicyKind
from netmig.modes.distributed import persist_id_for
from netmig.options import MigrationOptions, Mode
from netmig.recovery import recover
from netmig.simlab import sim_lab
from netmig.store import SqliteStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site"
MODES = [Mode.MIDDLE, Mode.D_PUSH, Mode.D_PULL]
SITE_B = ("b-leaf1", "b-spine1", "b-fw1", "b-nat1")
SITE_A = ("a-leaf1", "a-leaf2", "a-spine1", "a-fw1")
_VOLATILE = {"expires-at", "valid-until", "ttl-s", "age-s", "expiry-s", "lease-expiry-s"}


@contextmanager
def lab(tmp_path: Path) -> Iterator[Any]:
    with sim_lab(EXAMPLE, state_dir=tmp_path / f"lab-{time.monotonic_ns()}") as running:
        yield running


def _canonical(el: Any) -> str:
    def norm(node: Any) -> Any:
        copy = etree.Element(node.tag)
        copy.text = None if etree.QName(node).localname in _VOLATILE else (node.text or "").strip() or None
        copy.extend(sorted((norm(c) for c in node if isinstance(c.tag, str)), key=etree.tostring))
        return copy
    return etree.tostring(norm(el), pretty_print=True).decode()


def configs(running: Any, names: tuple[str, ...]) -> dict[str, str]:
    fabric = running.fabric
    return {n: fabric.call(lambda n=n: _canonical(fabric.device(n).engine.running_view())) for n in names}


def journaled(running: Any, tmp_path: Path, mode: Mode, journal: SqliteJournal) -> MigrationResult:
    options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
    result = migrate("vm-web-01", source="host-a1", destination="host-b3", topology=running.topology,
                     options=options, environ=running.environ, store=SqliteStore(tmp_path / "store.sqlite"),
                     journal=journal, feedback_deadline_s=10)
    assert isinstance(result, MigrationResult)
    return result


def _steps(record: Any, step: Step) -> list[Any]:
    return [s for s in record.steps if s.step is step]


@pytest.mark.parametrize("mode", MODES)
def test_success_is_journaled(tmp_path: Path, mode: Mode) -> None:
    with lab(tmp_path) as running, SqliteJournal(tmp_path / "journal.sqlite") as journal:
        result = journaled(running, tmp_path, mode, journal)
        record = journal.get(result.migration_id)
        assert record.outcome == "success" and record.mode == mode.value and not record.recovered
        assert journal.unfinished() == []
        commits = {s.device: s.persist_id for s in _steps(record, Step.COMMIT_CONFIRMED)}
        assert set(SITE_B) <= set(commits)  # every destination's commit, journaled with its persist-id
        assert all(commits.values())
        confirmed = {s.device for s in _steps(record, Step.CONFIRM) if s.ok is True}
        assert set(SITE_B) <= confirmed
        for device in SITE_B:  # write-ahead: the commit is journaled before the confirm
            seqs = [s.seq for s in record.steps if s.device == device]
            first_commit = min(s.seq for s in _steps(record, Step.COMMIT_CONFIRMED) if s.device == device)
            first_confirm = min(s.seq for s in _steps(record, Step.CONFIRM) if s.device == device)
            assert seqs and first_commit < first_confirm
        if mode is Mode.MIDDLE:
            exports = {s.device: s.detail for s in _steps(record, Step.EXPORT)}
            assert {"a-leaf1", "a-fw1"} <= set(exports)
            assert all(d and len(str(d["sha256"])) == 64 and "blob" not in d for d in exports.values())
        else:
            assert all(p == persist_id_for(result.migration_id, d) for d, p in commits.items())
            (assoc, *_) = _steps(record, Step.ASSOCIATE)
            assert assoc.device == ("a-leaf1" if mode is Mode.D_PUSH else "b-leaf1")
            feedback = {s.device: s for s in _steps(record, Step.FEEDBACK)}
            reporters = ("a-leaf1", "a-spine1", "a-fw1") if mode is Mode.D_PUSH else SITE_B
            assert set(feedback) == set(reporters)
            assert all(s.ok is True and s.detail and s.detail["status"] == "success"
                       for s in feedback.values())
            transfers = [s.detail["transfer"] for s in _steps(record, Step.TRANSFER) if s.detail]
            assert any("a-fw1 -> b-nat1" in str(t) for t in transfers)
            last_feedback = max(s.seq for s in feedback.values())
            assert all(s.seq > last_feedback for s in _steps(record, Step.CONFIRM))
        out = io.StringIO()
        assert netmig_main(["history", "--json", "--journal", str(tmp_path / "journal.sqlite")], out=out) == 0
        (shown,) = json.loads(out.getvalue())
        assert shown["migration_id"] == result.migration_id and shown["mode"] == mode.value
        assert any(s["step"] == "commit-confirmed" and s["persist_id"] for s in shown["steps"])


@pytest.mark.parametrize("mode", MODES)
def test_fail_is_journaled(tmp_path: Path, mode: Mode) -> None:
    with lab(tmp_path) as running, SqliteJournal(tmp_path / "journal.sqlite") as journal:
        before = configs(running, (*SITE_A, *SITE_B))
        running.fabric.device("b-nat1").migration.fail_import = True
        with pytest.raises(MigrationRolledBackError, match="b-nat1"):
            journaled(running, tmp_path, mode, journal)
        (record,) = journal.history()
        assert record.outcome == "rolled-back" and record.mode == mode.value
        assert record.summary and "b-nat1" in str(record.summary["error"])
        assert journal.unfinished() == []
        assert not _steps(record, Step.CONFIRM)
        if mode is Mode.MIDDLE:
            nat = [(s.step, s.ok) for s in record.steps if s.device == "b-nat1"]
            assert (Step.EDIT, None) in nat and nat[-1] == (Step.DISCARD, True)  # edited, import refused
        else:
            failed = [s for s in _steps(record, Step.FEEDBACK) if s.ok is False]
            assert [s.device for s in failed] == ["a-fw1" if mode is Mode.D_PUSH else "b-nat1"]
            cancelled = {s.device for s in _steps(record, Step.CANCEL) if s.ok is True}
            assert set(SITE_B) <= cancelled
        assert configs(running, (*SITE_A, *SITE_B)) == before


CHILD = """
import sys
from pathlib import Path
from netmig.api import migrate
from netmig.journal import SqliteJournal
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.settings import CommitPolicy
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology

example, devices_json, known_hosts, journal = (Path(a) for a in sys.argv[1:5])
topology, _ = rewrite_for_fabric(load_topology(example / "topology.yaml"), devices_json, known_hosts)
options = MigrationOptions(mode=Mode.D_PUSH, allow_drop=frozenset({PolicyKind("nd-entry")}),
                           commit=CommitPolicy(confirm_timeout_s=300))
with SqliteJournal(journal) as j:
    migrate("vm-web-01", source="host-a1", destination="host-b3", topology=topology, options=options,
            journal=j, feedback_deadline_s=20)
print("not killed")
"""


def test_d_push_coordinator_killed_before_confirm_is_rolled_back(tmp_path: Path) -> None:
    """Devices committed (static + imported DI, pending under the derived persist-id), then the
    coordinator died before confirming: recovery cancels every pending commit long before it expires."""
    with lab(tmp_path) as running:
        before = configs(running, (*SITE_A, *SITE_B))
        fabric = running.fabric
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETMIG_SIM_PASSWORD")}
        env.update(running.environ)
        env["NETMIG_TEST_KILL_AT"] = "b-nat1:verify:1"  # every feedback is in; no confirm sent yet
        child = subprocess.run([sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json),
                                str(fabric.known_hosts), str(tmp_path / "journal.sqlite")],
                               env=env, capture_output=True, text=True, timeout=120, check=False)
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        pending = {n: fabric.call(lambda n=n: fabric.device(n).runtime.pending) for n in SITE_B}
        assert all(p is not None for p in pending.values())  # the devices' imports are committed, pending
        assert configs(running, SITE_B) != {n: before[n] for n in SITE_B}
        with SqliteJournal(tmp_path / "journal.sqlite") as journal:
            (record,) = journal.unfinished()
            assert record.mode == "d-push"
            reported = {s.device for s in _steps(record, Step.FEEDBACK) if s.ok}
            assert reported == {"a-leaf1", "a-spine1", "a-fw1"}
            assert not _steps(record, Step.CONFIRM)
            assert all(pending[n].persist_id == persist_id_for(record.migration_id, n) for n in SITE_B)
            (report,) = recover(journal, environ=running.environ)
            assert report.ok, report.errors
            assert report.outcome == "rolled-back"
            assert sum("cancel: cancelled" in a for a in report.actions) == len(SITE_B)
            sealed = journal.get(record.migration_id)
            assert sealed.finished and sealed.recovered and journal.unfinished() == []
            assert recover(journal, environ=running.environ) == []
        assert all(fabric.call(lambda n=n: fabric.device(n).runtime.pending) is None for n in SITE_B)
        assert configs(running, (*SITE_A, *SITE_B)) == before


def test_dry_run_of_the_new_modes_changes_nothing(tmp_path: Path) -> None:
    from netmig.cli import _print_dry_run
    from netmig.modes.centralized import DryRun

    with lab(tmp_path) as running:
        before = configs(running, (*SITE_A, *SITE_B))
        for mode, expect in ((Mode.MIDDLE, "export-di from a-fw1, import-di into b-nat1"),
                             (Mode.D_PUSH, "vdp-associate with the S-bit (d-push) to bridge a-leaf1"),
                             (Mode.D_PULL, "b-nat1 pulls from a-fw1")):
            options = MigrationOptions(mode=mode, dry_run=True, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
            dry = migrate("vm-web-01", source="host-a1", destination="host-b3", topology=running.topology,
                          options=options, environ=running.environ)
            assert isinstance(dry, DryRun)
            out = io.StringIO()
            _print_dry_run(dry, "text", out)
            text = out.getvalue()
            assert "DRY RUN" in text and f"DI: {expect}" in text, text
            assert "--- b-leaf1" in text  # the static part netmig would stage itself
            assert all(k.is_dynamic is False for p in dry.prepared.sent.values() for k in p.kinds())
        assert configs(running, (*SITE_A, *SITE_B)) == before
        assert all(running.fabric.call(lambda n=n: running.fabric.device(n).runtime.pending) is None
                   for n in SITE_B)

"""SIGKILL the coordinator of a middle, d-push or d-pull migration at a journaled step, then recover.

The fabric (examples/two-site, a fresh copy per kill point) runs in this test process so it outlives the
killed coordinator: a child ``python -c`` process migrates vm-web-01 in the chosen mode with the journal
on, and SIGKILLs itself right after journaling the chosen step (``NETMIG_TEST_KILL_AT``, see
netmig.journal_hook: write-ahead steps and the modes' notes: export, associate, di-transferred,
feedback). Then ``netmig recover`` runs in a new process, from the journal alone. Every device's running
config and learned tables must then equal either the complete migration (a reference run of the same
mode) or the state before it, the sources must be intact, no confirmed commit may be left pending (no
device reverts later by its timer), the middle mode's transfer store holds none of the migration's blobs
(recovery drops them from the store the journal names; the blobs are never read), and a second
``netmig recover`` finds nothing to do.

A second test per mode leaves ``netmig recover`` out: the next run of the same migration recovers the
killed one at its start (rolled back), then migrates, and the devices end as after one clean run.

Kill points: every step kind each mode journals at least once, plus points where the destinations are in
different states (some committed or confirmed, others not; transfers in flight). The reference run checks
that each chosen point is one the mode really journals.
"""

from __future__ import annotations

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
from test_fault_matrix import two_site
from test_modes_journal import _canonical

from netmig.journal import SqliteJournal, Step
from netmig.store import SqliteStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site"
SITE_A = ("a-leaf1", "a-leaf2", "a-spine1", "a-fw1")
SITE_B = ("b-leaf1", "b-spine1", "b-fw1", "b-nat1")
CONFIRM_TIMEOUT_S = 60  # far longer than a kill point takes: whatever settles the commits is recovery
_NOTES = frozenset({Step.EXPORT, Step.ASSOCIATE, Step.TRANSFER, Step.FEEDBACK})

# mode -> kill points "device:journal-step:n"
KILL_POINTS: dict[str, tuple[str, ...]] = {
    "middle": (
        "a-fw1:export:1",             # the first stored blob; no destination touched
        "a-spine1:export:1",
        "b-leaf1:lock:1",
        "b-fw1:discard:1",
        "b-nat1:edit:1",              # edit = static edit-config + import-di into the candidate
        "b-spine1:validate:1",
        "b-leaf1:commit-confirmed:1",
        "b-nat1:commit-confirmed:1",  # multi: the other destinations committed or committing
        "b-fw1:verify:1",
        "b-nat1:verify:1",
        "b-fw1:confirm:1",            # past the point of no return
        "b-nat1:confirm:1",           # multi: some confirmed, others pending
        "b-leaf1:unlock:1",
    ),
    "d-push": (
        "b-fw1:lock:1",
        "b-nat1:discard:1",
        "b-leaf1:edit:1",
        "b-fw1:validate:1",
        "b-spine1:commit-confirmed:1",
        "b-fw1:commit-confirmed:1",   # multi: staged on some destinations only
        "b-leaf1:unlock:1",
        "a-leaf1:associate:1",        # before the associate is sent
        "a-leaf1:associate:2",        # the bridge answered: transfers in flight, the coordinator gone
        "a-fw1:di-transferred:1",     # multi: a-fw1 pushed to one partner of two
        "a-fw1:di-transferred:2",     # a-fw1 pushed to both partners, has not reported yet
        "a-spine1:feedback:1",
        "a-fw1:feedback:1",
        "b-nat1:verify:1",
        "b-spine1:confirm:1",         # every confirm is journaled before the first is sent
        "b-leaf1:confirm:1",
    ),
    "d-pull": (
        "b-leaf1:lock:1",
        "b-nat1:discard:1",
        "b-fw1:edit:1",
        "b-leaf1:validate:1",
        "b-spine1:commit-confirmed:1",
        "b-fw1:commit-confirmed:1",   # multi
        "b-fw1:unlock:1",
        "b-leaf1:associate:1",
        "b-leaf1:associate:2",        # destinations pulling while the coordinator is gone
        "b-nat1:di-transferred:1",
        "b-fw1:feedback:1",           # multi: some reported, some still pulling
        "b-spine1:feedback:1",
        "b-spine1:verify:1",
        "b-nat1:confirm:1",
        "b-fw1:confirm:1",
    ),
}
CASES = [pytest.param(mode, point, id=f"{mode}-{point}") for mode, points in KILL_POINTS.items()
         for point in points]

CHILD = """
import sys
from pathlib import Path
from netmig.api import migrate
from netmig.journal import SqliteJournal
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.settings import CommitPolicy
from netmig.simlab import rewrite_for_fabric
from netmig.store import SqliteStore
from netmig.topology import load_topology

example, devices_json, known_hosts, journal, store = (Path(a) for a in sys.argv[1:6])
topology, _ = rewrite_for_fabric(load_topology(example / "topology.yaml"), devices_json, known_hosts)
options = MigrationOptions(mode=Mode(sys.argv[6]), allow_drop=frozenset({PolicyKind("nd-entry")}),
                           commit=CommitPolicy(confirm_timeout_s=int(sys.argv[7])))
with SqliteJournal(journal) as j:
    result = migrate("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                     options=options, journal=j, store=SqliteStore(store), feedback_deadline_s=20)
print(result.outcome)
"""
RECOVER = "import sys\nfrom netmig.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@contextmanager
def lab(tmp_path: Path, schemas: Any) -> Iterator[Any]:
    """A fresh examples/two-site fabric on the session's schema cache, and the topology reaching it."""
    with two_site(tmp_path / f"lab-{time.monotonic_ns()}", schemas) as running:
        yield running


def _learned(device: Any) -> list[tuple[str, tuple[str, ...], str | None, str, tuple[tuple[str, str], ...]]]:
    tables = device.learned
    return [(kind, e.key, e.vm_id, e.origin, tuple(sorted(e.fields.items())))
            for kind in tables.kinds for e in tables.entries(kind, include_expired=True)]


def state(running: Any, names: tuple[str, ...] = SITE_A + SITE_B) -> dict[str, tuple[str, Any]]:
    """Each device's running config (timers blanked, lists sorted) and learned tables."""
    fabric = running.fabric

    def one(name: str) -> tuple[str, Any]:
        device = fabric.device(name)
        return _canonical(device.engine.running_view()), _learned(device)
    return {n: fabric.call(lambda n=n: one(n)) for n in names}


def pending(running: Any) -> dict[str, Any]:
    fabric = running.fabric
    return {n: fabric.call(lambda n=n: fabric.device(n).runtime.pending) for n in SITE_A + SITE_B}


def _env(running: Any, kill_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NETMIG_SIM_PASSWORD") and k != "NETMIG_TEST_KILL_AT"}
    env.update(running.environ)
    if kill_at is not None:
        env["NETMIG_TEST_KILL_AT"] = kill_at
    return env


def run_child(running: Any, tmp_path: Path, mode: str,
              kill_at: str | None) -> subprocess.CompletedProcess[str]:
    fabric = running.fabric
    args = [sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json), str(fabric.known_hosts),
            str(tmp_path / "journal.sqlite"), str(tmp_path / "store.sqlite"), mode, str(CONFIRM_TIMEOUT_S)]
    return subprocess.run(args, env=_env(running, kill_at), capture_output=True, text=True, timeout=120,
                          check=False)


def netmig_recover(running: Any, tmp_path: Path) -> tuple[int, list[dict[str, Any]], str]:
    """``netmig recover --json`` in a new process; its exit code, reports and stderr."""
    args = [sys.executable, "-c", RECOVER, "recover", "--json", "--journal", str(tmp_path / "journal.sqlite")]
    done = subprocess.run(args, env=_env(running, None), capture_output=True, text=True, timeout=180,
                          check=False)
    return done.returncode, json.loads(done.stdout or "null") or [], done.stderr


def blobs(tmp_path: Path, migration_id: str) -> list[str]:
    """The devices whose exported blob of ``migration_id`` the child's transfer store holds (not read)."""
    with SqliteStore(tmp_path / "store.sqlite") as store:
        return store.devices(migration_id)


_references: dict[str, dict[str, Any]] = {}


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory, schema_cache: Any) -> Any:
    """``reference(mode)``: a complete, unkilled journaled run's before/after state and journaled steps."""
    def get(mode: str) -> dict[str, Any]:
        if mode not in _references:
            tmp = tmp_path_factory.mktemp(f"reference-{mode}")
            with lab(tmp, schema_cache) as running:
                before = state(running)
                done = run_child(running, tmp, mode, None)
                assert done.returncode == 0, done.stderr[-3000:]
                after = state(running)
                assert all(p is None for p in pending(running).values())
            with SqliteJournal(tmp / "journal.sqlite") as journal:
                (record,) = journal.history()
            assert record.outcome == "success", record.summary
            assert blobs(tmp, record.migration_id) == []  # a successful run drops what it stored
            counts: dict[str, int] = {}
            for s in record.steps:  # as the hook counts: write-ahead steps and notes, not results
                if s.ok is None or s.step in _NOTES:
                    key = f"{s.device}:{s.step.value}"
                    counts[key] = counts.get(key, 0) + 1
            _references[mode] = {"before": before, "after": after, "counts": counts}
        return _references[mode]
    return get


@pytest.mark.parametrize(("mode", "kill_at"), CASES)
def test_sigkill_then_netmig_recover(mode: str, kill_at: str, tmp_path: Path, reference: Any,
                                     schema_cache: Any) -> None:
    ref = reference(mode)
    device, step, nth = kill_at.rsplit(":", 2)
    assert ref["counts"].get(f"{device}:{step}", 0) >= int(nth), f"the {mode} mode never journals {kill_at}"
    assert all(ref["before"][s] == ref["after"][s] for s in SITE_A)  # the mode leaves the sources alone
    assert all(ref["before"][d] != ref["after"][d] for d in ("b-leaf1", "b-fw1", "b-nat1"))

    with lab(tmp_path, schema_cache) as running:
        assert state(running) == ref["before"]
        child = run_child(running, tmp_path, mode, kill_at)
        assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-3000:])
        with SqliteJournal(tmp_path / "journal.sqlite") as journal:
            (record,) = journal.unfinished()
        assert record.mode == mode
        assert any(s.device == device and s.step.value == step for s in record.steps)
        past_point_of_no_return = any(s.step is Step.CONFIRM for s in record.steps)
        if mode == "middle":  # every kill point is past the first stored export
            assert blobs(tmp_path, record.migration_id), "the killed run stored no blob"

        code, reports, err = netmig_recover(running, tmp_path)
        assert code == 0, (reports, err[-3000:])
        (report,) = reports
        assert report["migration_id"] == record.migration_id and not report["errors"], report
        assert report["outcome"] == ("success" if past_point_of_no_return else "rolled-back"), report
        with SqliteJournal(tmp_path / "journal.sqlite") as journal:
            sealed = journal.get(record.migration_id)
            assert sealed.finished and sealed.recovered and journal.unfinished() == []
        assert blobs(tmp_path, record.migration_id) == [], "recovery left the migration's blobs behind"

        expected = ref["after"] if past_point_of_no_return else ref["before"]
        # transfers in flight when the coordinator died end within their own deadline: settle, then compare
        deadline = time.monotonic() + 10
        while (now := state(running)) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert now == expected, {n: "differs" for n in now if now[n] != expected[n]}
        assert all(p is None for p in pending(running).values()), pending(running)  # nothing left to revert
        assert {s: now[s] for s in SITE_A} == {s: ref["before"][s] for s in SITE_A}  # sources intact

        code, again, err = netmig_recover(running, tmp_path)
        assert (code, again) == (0, []), err  # a second recovery does nothing
        assert state(running) == expected
        print(f"{mode} {kill_at}: recovered {report['outcome']}: {'; '.join(report['actions'])}")


RESTART_POINTS = [pytest.param("middle", "b-nat1:commit-confirmed:1", id="middle"),
                  pytest.param("d-push", "a-leaf1:associate:2", id="d-push"),
                  pytest.param("d-pull", "b-fw1:feedback:1", id="d-pull")]


@pytest.mark.parametrize(("mode", "kill_at"), RESTART_POINTS)
def test_next_migration_recovers_the_killed_one_first(mode: str, kill_at: str, tmp_path: Path, reference: Any,
                                                      schema_cache: Any) -> None:
    """No ``netmig recover``: the next run of the same migration settles the killed one itself (rolled
    back), then migrates; the devices end exactly as after one clean run (nothing applied twice)."""
    ref = reference(mode)
    with lab(tmp_path, schema_cache) as running:
        child = run_child(running, tmp_path, mode, kill_at)
        assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-3000:])
        again = run_child(running, tmp_path, mode, None)
        assert again.returncode == 0 and again.stdout.strip() == "SUCCESS", again.stderr[-3000:]
        assert "recovered migration" in again.stderr
        with SqliteJournal(tmp_path / "journal.sqlite") as journal:
            second, first = journal.history()
            assert journal.unfinished() == []
        assert (first.recovered, first.outcome) == (True, "rolled-back")
        assert (second.recovered, second.outcome) == (False, "success")
        assert blobs(tmp_path, first.migration_id) == blobs(tmp_path, second.migration_id) == []
        assert state(running) == ref["after"]
        assert all(p is None for p in pending(running).values())

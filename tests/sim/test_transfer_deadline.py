"""A device-to-device transfer waits for a busy peer no longer than netmig's feedback deadline allows.

The associate carries netmig's ``feedback-deadline``; a device whose peer's candidate is held by another
session gives up a little before it and reports fail naming the wait, so netmig fails with that reason
(not "silent") about when the deadline ends, and cancels everything: nothing is half-applied. Without
the leaf (other clients) a transfer waits the simulator's fixed 20 s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from netconf_sim.migration_xml import MIGRATION_NS
from netconf_sim.transfer import LOCK_WAIT_S, LockWait, TransferError
from test_modes import SITE_A, SITE_B, lab, running_configs

from netmig.api import migrate
from netmig.errors import MigrationRolledBackError
from netmig.journal import MigrationRecord, SqliteJournal, Step
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.store import SqliteStore

DEADLINE_S = 2.0
BUSY = "b-nat1"  # receives a-fw1's NAT and firewall sessions in both modes


class HoldPeerAtAssociate:
    """A journal that, when the associate is journaled (after every destination was staged and
    unlocked, before the bridge hears of it), has another session take ``device``'s candidate lock."""

    def __init__(self, inner: SqliteJournal, running: Any, device: str) -> None:
        self.inner = inner
        self.running = running
        self.device = device
        self.associated_at: float | None = None

    def begin(self, migration_id: str, vm_id: str, mode: str, source_host: str, destination_host: str,
              devices: Sequence[str], plan: Mapping[str, object]) -> None:
        self.inner.begin(migration_id, vm_id, mode, source_host, destination_host, devices, plan)

    def record(self, migration_id: str, device: str, step: Step | str, *, persist_id: str | None = None,
               detail: Mapping[str, object] | None = None, ok: bool | None = None) -> None:
        self.inner.record(migration_id, device, step, persist_id=persist_id, detail=detail, ok=ok)
        if step == Step.ASSOCIATE and ok is None:
            faults = self.running.fabric.device(self.device).faults
            self.running.fabric.call(lambda: faults.hold_lock("candidate"))
            self.associated_at = time.monotonic()

    def finish(self, migration_id: str, outcome: str, summary: Mapping[str, object]) -> None:
        self.inner.finish(migration_id, outcome, summary)

    def get(self, migration_id: str) -> MigrationRecord:
        return self.inner.get(migration_id)

    def unfinished(self) -> list[MigrationRecord]:
        return self.inner.unfinished()

    def history(self, limit: int = 50, vm_id: str | None = None) -> list[MigrationRecord]:
        return self.inner.history(limit, vm_id)

    def mark_recovered(self, migration_id: str, outcome: str, note: str) -> None:
        self.inner.mark_recovered(migration_id, outcome, note)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(("mode", "reporter"), [(Mode.D_PUSH, "a-fw1"), (Mode.D_PULL, BUSY)])
def test_busy_peer_fails_within_the_feedback_deadline(tmp_path: Path, mode: Mode, reporter: str) -> None:
    with lab(tmp_path) as running, SqliteJournal(tmp_path / "journal.sqlite") as sqlite:
        before = running_configs(running, (*SITE_A, *SITE_B))
        journal = HoldPeerAtAssociate(sqlite, running, BUSY)
        options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
        with pytest.raises(MigrationRolledBackError) as failed:
            migrate("vm-web-01", source="host-a1", destination="host-b3", topology=running.topology,
                    options=options, environ=running.environ, store=SqliteStore(tmp_path / "store.sqlite"),
                    journal=journal, feedback_deadline_s=DEADLINE_S)
        failed_after_s = time.monotonic() - (journal.associated_at or 0.0)
        assert journal.associated_at is not None, "the associate was never sent"
        # the device's own report is the reason, not netmig's deadline running out on a silent device
        message = str(failed.value)
        assert f"{BUSY}: candidate held by another session" in message
        assert f"{DEADLINE_S:g} s feedback deadline" in message
        assert "silent" not in message and "no migration-feedback" not in message
        assert failed_after_s < DEADLINE_S + 3.0, f"failed {failed_after_s:.1f} s after the associate"

        (record,) = sqlite.history(limit=1)
        assert record.outcome is not None and record.outcome != "success"
        (associate, *_) = [s for s in record.steps if s.step is Step.ASSOCIATE]
        feedback = {s.device: s for s in record.steps if s.step is Step.FEEDBACK}
        said = feedback[reporter]
        assert said.ok is False and said.detail is not None and said.detail["status"] == "fail"
        assert f"{BUSY}: candidate held by another session" in str(said.detail["reason"])
        waited_s = (said.at - associate.at).total_seconds()
        # it waited (the wait is derived from the deadline, not 0) and reported before netmig gave up
        assert DEADLINE_S / 2 <= waited_s < DEADLINE_S, f"reported {waited_s:.2f} s after the associate"

        running.fabric.call(lambda: running.fabric.device(BUSY).faults.release_lock("candidate"))
        time.sleep(0.3)  # transfers of the other devices ended before netmig settled; nothing in flight
        assert running_configs(running, (*SITE_A, *SITE_B)) == before
        for name in (*SITE_A, *SITE_B):
            runtime = running.fabric.device(name).runtime
            assert running.fabric.call(lambda r=runtime: (r.pending, dict(r.locks))) == (None, {}), name


def _associate_with(deadline: str | None) -> Any:
    op = etree.Element(f"{{{MIGRATION_NS}}}vdp-associate", nsmap={None: MIGRATION_NS})
    if deadline is not None:
        etree.SubElement(op, f"{{{MIGRATION_NS}}}feedback-deadline").text = deadline
    return op


def test_lock_wait_is_derived_from_the_feedback_deadline() -> None:
    absent = LockWait.from_associate(_associate_with(None), started=100.0)
    assert absent.feedback_deadline_s is None and absent.give_up_at is None
    assert LOCK_WAIT_S == 20.0
    short = LockWait.from_associate(_associate_with("2.000"), started=100.0)
    assert short.feedback_deadline_s == 2.0
    assert short.give_up_at is not None and 100.0 + 1.0 <= short.give_up_at < 102.0
    default = LockWait.from_associate(_associate_with("30"), started=0.0)
    assert default.give_up_at is not None and 20.0 <= default.give_up_at < 30.0
    for bad in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(TransferError, match=f"^b-nat1: vdp-associate: feedback-deadline '{bad}'"):
            LockWait.from_associate(_associate_with(bad), started=0.0, device="b-nat1")

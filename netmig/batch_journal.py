"""Journaling a batch: one journaled migration per group commit (d-push/d-pull: per try of a group).

A group is journaled as a migration of its own, under the group's id (``<batch id>-g<number>``), so
:func:`netmig.recovery.recover` settles a group whose coordinator died exactly as it settles one VM:
confirm everywhere when every device still holds the pending commit (or confirmed it), otherwise cancel
and compensate everywhere. The record reuses the single migration's format (:func:`group_plan`):

- ``devices``, ``persist-ids`` and the coordinator as :func:`netmig.journal_hook.journal_plan` writes them;
- ``group``: the batch id, the group's number and its VMs (``vms``: id, hosts, devices, and in the middle
  mode the VM's own migration id its DI imports carry); :attr:`MigrationRecord.vms` reads them back;
- ``destinations``: per device the group's merged ``edit`` (recovery checks running holds it with
  :func:`netmig.batch_merge.missing_from`), its ``filter`` and its merged ``undo`` (compensation);
- middle mode: ``di-only`` (a device taking only DI: the VMs whose learned state it imports, asked with
  ``export-di``) and ``di-store`` (recovery drops the VMs' blobs once it settled the group).

d-push and d-pull (:func:`distributed_plan`, :meth:`BatchJournal.attempt`): each try of a group (its
first and each retry, ``<group>-r<k>``) is a record of its own, with the same entries plus every
device the try talks to (role ``reporter`` and ``bridge`` besides ``destination``) and the persist-ids
:func:`netmig.modes.settle.persist_id_for` derives from the try's id (the devices' imports are
follow-up commits under them); each VM's ``di-migration-id`` is its ``<try>-<n>``.

Cost: one plan written before the group's first change and the transaction's steps (a few records
per destination device), per group, never per VM.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netmig.codecs.registry import get_codec
from netmig.devices import DeviceHandle
from netmig.errors import NetmigError, RollbackIncompleteError, TransactionError
from netmig.feedback import DeviceOutcome
from netmig.journal import Journal
from netmig.journal_hook import MigrationRecorder, StageHook, coordinator_identity, device_entry
from netmig.modes.centralized import PreparedMigration
from netmig.options import MigrationOptions
from netmig.settings import SshPolicy
from netmig.transaction import DeviceChange, NetworkTransaction
from netmig.xmlkit import to_bytes

if TYPE_CHECKING:
    from netmig.batch_middle import MiddleBatch
    from netmig.topology.resolve import MigrationPlan

__all__ = ["BatchJournal", "GroupRecord", "distributed_plan", "group_id", "group_plan"]

log = logging.getLogger(__name__)


def group_id(batch_id: str, number: int) -> str:
    """The journal id of a batch's group ``number``."""
    return f"{batch_id}-g{number}"


def _hosts(values: Sequence[str]) -> str:
    """One host, or how many (a group's VMs may leave and land on many hosts)."""
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else f"{len(distinct)} hosts"


def _header(options: MigrationOptions, ssh: SshPolicy) -> dict[str, object]:
    """What every group's plan starts with: who coordinates, how to reach the devices, the timeout."""
    return {"coordinator": coordinator_identity(),
            "known-hosts": str(ssh.known_hosts) if ssh.known_hosts else None,
            "verify-host-keys": ssh.verify_host_keys,
            "confirm-timeout-s": options.commit.confirm_timeout_s,
            "cleanup-source": False}


def _destination(change: DeviceChange) -> dict[str, object]:
    """A device's ``destinations`` entry: the group's merged edit, its verify filter and merged undo."""
    entry: dict[str, object] = {"edit": to_bytes(change.edit).decode()}
    if change.verify_filter is not None:
        entry["filter"] = to_bytes(change.verify_filter).decode()
    if change.undo is not None:
        entry["undo"] = to_bytes(change.undo).decode()
    return entry


def group_plan(number: int, members: Sequence[PreparedMigration], changes: Sequence[DeviceChange],
               txn: NetworkTransaction, *, batch_id: str, options: MigrationOptions, ssh: SshPolicy,
               di: MiddleBatch | None = None) -> dict[str, object]:
    """The journal plan of one group (the module docstring): what recovery needs, as JSON."""
    known = {d.name: d for p in members for d in p.plan.destination_devices}
    devices: dict[str, object] = {}
    destinations: dict[str, object] = {}
    di_only: dict[str, object] = {}
    for change in changes:
        name = change.endpoint.name
        dev = known[name]
        devices[name] = device_entry(DeviceHandle(dev, change.endpoint, get_codec(dev.codec.value)),
                                     "destination")
        if len(change.edit) == 0 and di is not None:  # DI only: nothing in running to check
            di_only[name] = {"evidence": "export-di",
                             "vms": [[p.plan.vm_id, di.migration_id(p.plan.vm_id)] for p in members
                                     if name in di.devices(p)]}
            continue
        destinations[name] = _destination(change)
    vms = []
    for p in members:
        vm: dict[str, object] = {"vm": p.plan.vm_id, "from": p.plan.source.host.name,
                                 "to": p.plan.destination.host.name,
                                 "devices": list(di.devices(p) if di is not None
                                                 else (c.endpoint.name for c in p.changes))}
        if di is not None:
            vm["di-migration-id"] = di.migration_id(p.plan.vm_id)
        vms.append(vm)
    plan = _header(options, ssh)
    plan.update({"group": {"batch-id": batch_id, "number": number, "vms": vms}, "devices": devices,
                 "persist-ids": dict(txn.persist_ids), "destinations": destinations})
    if di is not None:
        from netmig.store import location_of

        plan["di-only"] = di_only
        plan["di-store"] = location_of(di.store)
    return plan


def distributed_plan(attempt: str, members: Sequence[PreparedMigration], changes: Mapping[str, DeviceChange],
                     handles: Mapping[str, DeviceHandle], roles: Mapping[str, str], *, number: int,
                     batch_id: str, mids: Mapping[str, str], receivers: Mapping[str, Sequence[str]],
                     vm_devices: Mapping[str, Sequence[str]], options: MigrationOptions,
                     ssh: SshPolicy) -> dict[str, object]:
    """The journal plan of one try (``attempt``: the group id, or a retry's) of a d-push/d-pull group:
    :func:`group_plan`'s format, with every device the try talks to (``roles``: destination, reporter,
    bridge), the persist-ids the try and the devices derive from ``attempt``
    (:func:`netmig.modes.settle.persist_id_for`), a DI-only destination under ``di-only`` with the VMs
    it imports (``receivers``) and their migration ids (``mids``), and each VM's ``di-migration-id``
    (recovery's ``withdraw-di``)."""
    from netmig.modes.settle import persist_id_for

    plan = _header(options, ssh)
    vms = [{"vm": p.plan.vm_id, "from": p.plan.source.host.name, "to": p.plan.destination.host.name,
            "devices": list(vm_devices.get(p.plan.vm_id, ())), "di-migration-id": mids[p.plan.vm_id]}
           for p in members]
    plan.update({
        "group": {"batch-id": batch_id, "number": number, "attempt": attempt, "vms": vms},
        "devices": {name: device_entry(handles[name], role) for name, role in sorted(roles.items())},
        "persist-ids": {name: persist_id_for(attempt, name) for name in changes},
        "destinations": {name: _destination(c) for name, c in changes.items() if len(c.edit)},
        "di-only": {name: {"evidence": "export-di", "vms": [[vm, mids[vm]] for vm in receivers.get(name, ())]}
                    for name, c in changes.items() if not len(c.edit)},
    })
    return plan


@dataclass(slots=True)
class GroupRecord:
    """One group's journal record: the hook its transaction calls, then how the group ended."""

    batch: BatchJournal
    recorder: MigrationRecorder
    hook: StageHook

    def begin(self, number: int, members: Sequence[PreparedMigration], changes: Sequence[DeviceChange],
              txn: NetworkTransaction, di: MiddleBatch | None) -> None:
        """Journal the group before its first change (raises JournalError, MigrationInProgressError)."""
        self.hook.persist_ids, self.hook.compensate_ids = txn.persist_ids, txn.compensate_ids
        b = self.batch
        plan = group_plan(number, members, changes, txn, batch_id=b.batch_id, options=b.options, ssh=b.ssh,
                          di=di)
        self.recorder.begin([c.endpoint.name for c in changes], plan)

    def succeeded(self, outcomes: tuple[DeviceOutcome, ...], vms: int) -> None:
        """Journal the group committed everywhere (a journal failure now is logged: the devices hold the
        group, and recovery finds every device confirmed)."""
        try:
            self.hook.results(outcomes)
            self.recorder.applied = True
            self.recorder.finish("success", {"vms": vms})
        except NetmigError as exc:
            log.warning("group %s: committed, but its journal record stays open: %s",
                        self.recorder.migration_id, exc)

    def failed(self, exc: TransactionError) -> None:
        """Journal how the devices ended; a group the transaction could not roll back everywhere is
        settled now by recovery if the devices answer (else ``netmig recover`` does it later)."""
        try:
            self.hook.results(exc.outcomes)
            if not isinstance(exc, RollbackIncompleteError):
                self.recorder.finish("rolled-back", {"error": str(exc), "error-type": type(exc).__name__})
                return
        except NetmigError as problem:
            log.warning("group %s: its journal record stays open: %s", self.recorder.migration_id, problem)
            return
        self.batch.settle_now(self.recorder)


@dataclass(slots=True)
class BatchJournal:
    """Journals the groups of one batch in ``journal`` (see the module docstring)."""

    journal: Journal
    batch_id: str
    options: MigrationOptions
    ssh: SshPolicy
    environ: Mapping[str, str] | None = None

    def group(self, number: int, members: Sequence[PreparedMigration]) -> GroupRecord:
        """The record of group ``number``; its ``hook`` goes to the group's transaction, then ``begin``."""
        recorder = self._recorder(group_id(self.batch_id, number), members)
        return GroupRecord(self, recorder, recorder.stage("apply"))

    def _recorder(self, record_id: str, members: Sequence[PreparedMigration]) -> MigrationRecorder:
        """The recorder of one group (or try) journaled as a migration of its own, under ``record_id``."""
        return MigrationRecorder(self.journal, record_id, vm_id=record_id, mode=self.options.mode.value,
                                 source_host=_hosts([p.plan.source.host.name for p in members]),
                                 destination_host=_hosts([p.plan.destination.host.name for p in members]))

    def attempt(self, attempt: str, members: Sequence[PreparedMigration], devices: Sequence[str],
                plan: Mapping[str, object]) -> MigrationRecorder:
        """Journal one try of a d-push/d-pull group (:func:`distributed_plan`) under its own id, before
        its first change (raises JournalError, MigrationInProgressError); its recorder."""
        recorder = self._recorder(attempt, members)
        recorder.begin(list(devices), plan)
        return recorder

    def close(self, recorder: MigrationRecorder, error: str | None, *, stuck: bool, vms: int) -> None:
        """Journal how a try ended: committed everywhere (``error`` None) or rolled back everywhere; a try
        some device did not give back (``stuck``) is settled by recovery now if the devices answer (else
        ``netmig recover`` does it later). A journal failure now is logged: the devices are settled."""
        try:
            if error is None:
                recorder.applied = True
                recorder.finish("success", {"vms": vms})
                return
            if not stuck:
                recorder.finish("rolled-back", {"error": error})
                return
        except NetmigError as problem:
            log.warning("group %s: its journal record stays open: %s", recorder.migration_id, problem)
            return
        self.settle_now(recorder)

    def settle_now(self, recorder: MigrationRecorder) -> None:
        """Recover a group this process left unsettled on some device, now (recovery's rules)."""
        from netmig.recovery import recover_now

        try:
            report = recover_now(self.journal, recorder.migration_id, environ=self.environ, ssh=self.ssh,
                                 timeouts=self.options.timeouts)
        except NetmigError as problem:
            log.warning("group %s: left for netmig recover: %s", recorder.migration_id, problem)
            return
        if report.errors:
            log.warning("group %s: left for netmig recover: %s", recorder.migration_id,
                        "; ".join(report.errors))

    def clear_way(self, plans: Sequence[MigrationPlan]) -> dict[str, str]:
        """Recover interrupted migrations touching the batch's devices (as a single migration does);
        return the batch's VMs an unfinished migration still holds (its coordinator alive), with its id."""
        from netmig.recovery import recover

        touched = {d.name for p in plans for d in (*p.source_devices, *p.destination_devices)}
        for report in recover(self.journal, environ=self.environ, devices=touched, ssh=self.ssh,
                              timeouts=self.options.timeouts):
            if report.skipped is None:
                log.warning("recovered migration %s (%s): %s%s", report.migration_id, ", ".join(report.vms),
                            report.outcome or "left unfinished",
                            f" ({'; '.join(report.errors)})" if report.errors else "")
        return self.busy_vms({p.vm_id for p in plans})

    def busy_vms(self, vms: set[str]) -> dict[str, str]:
        """Which of ``vms`` an unfinished journaled migration (or group) holds, with its id."""
        busy: dict[str, str] = {}
        for record in self.journal.unfinished():
            for vm in record.vms:
                if vm in vms:
                    busy.setdefault(vm, record.migration_id)
        return busy

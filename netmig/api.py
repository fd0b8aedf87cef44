"""The library's front door: ``netmig.migrate(vm, source=..., destination=..., topology=...)``."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path

from netmig.errors import NetmigError, RollbackIncompleteError
from netmig.feedback import MigrationResult
from netmig.journal import Journal, MigrationInProgressError
from netmig.journal_hook import MigrationRecorder
from netmig.modes.centralized import DryRun, run_centralized
from netmig.options import MigrationOptions, Mode
from netmig.store import TransferStore
from netmig.topology import load_topology, resolve
from netmig.topology.model import Topology
from netmig.topology.resolve import MigrationPlan
from netmig.transaction import StepHook

__all__ = ["migrate", "new_migration_id"]

log = logging.getLogger(__name__)


def new_migration_id() -> str:
    """A fresh, unguessable migration id (``mig-`` and 12 hex digits)."""
    return "mig-" + secrets.token_hex(6)


def migrate(vm_id: str, *, source: str, destination: str, topology: Topology | str | Path,
            options: MigrationOptions | None = None, environ: Mapping[str, str] | None = None,
            on_step: StepHook | None = None, migration_id: str | None = None,
            journal: Journal | None = None, store: TransferStore | None = None,
            feedback_deadline_s: float = 30.0) -> MigrationResult | DryRun:
    """Move ``vm_id``'s policies and learned state from host ``source`` to host ``destination``.

    Returns the SUCCESS :class:`MigrationResult` (or a :class:`DryRun` when ``options.dry_run``).
    A failure raises a :class:`netmig.errors.NetmigError` subclass whose ``exit_code`` tells its class:
    bad input, device unreachable, translation refused, rolled back cleanly, or rollback incomplete.
    Nothing is half-applied: every destination took the change, or none kept it.

    ``options.mode`` picks how policies travel (DESIGN.md's four modes); ``store`` is the middle mode's
    DI transfer store (default: SQLite under ``$NETMIG_HOME``) and ``feedback_deadline_s`` how long the
    distributed modes wait for every announced device to report.

    With a ``journal`` every step is recorded before it is taken, and interrupted migrations touching
    the same devices are recovered first; a second unfinished migration of the same VM is refused.
    """
    opts = options if options is not None else MigrationOptions()
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    plan = resolve(topo, vm_id, source, destination)
    mid = migration_id or new_migration_id()
    log.info("migration %s: %s from %s to %s (%s)", mid, vm_id, source, destination, opts.mode.value)
    if opts.mode is not Mode.CENTRALIZED and opts.dry_run:
        from netmig.modes.middle import dry_run_other_mode

        return dry_run_other_mode(plan, topo, opts, environ=environ, on_step=on_step)
    if journal is None or opts.dry_run:
        if opts.mode is not Mode.CENTRALIZED:
            return _run_other_mode(plan, topo, opts, migration_id=mid, environ=environ, on_step=on_step,
                                   store=store, feedback_deadline_s=feedback_deadline_s)
        return run_centralized(plan, topo, opts, migration_id=mid, environ=environ, on_step=on_step)
    from netmig.recovery import recover, recover_now

    touched = {d.name for d in (*plan.source_devices, *plan.destination_devices)}
    for report in recover(journal, environ=environ, devices=touched, ssh=opts.ssh, timeouts=opts.timeouts):
        if report.skipped is None:
            log.warning("recovered migration %s of %s: %s%s", report.migration_id, report.vm_id,
                        report.outcome or "left unfinished", f" ({'; '.join(report.errors)})" if report.errors
                        else "")
    busy = next((r for r in journal.unfinished() if r.vm_id == vm_id), None)
    if busy is not None:
        raise MigrationInProgressError(vm_id, busy.migration_id)
    recorder = MigrationRecorder(journal, mid, vm_id=vm_id, mode=opts.mode.value, source_host=source,
                                 destination_host=destination)
    try:
        if opts.mode is Mode.CENTRALIZED:
            result = run_centralized(plan, topo, opts, migration_id=mid, environ=environ, on_step=on_step,
                                     recorder=recorder)
        else:
            result = _run_other_mode(plan, topo, opts, migration_id=mid, environ=environ, on_step=on_step,
                                     store=store, feedback_deadline_s=feedback_deadline_s,
                                     recorder=recorder)
    except RollbackIncompleteError:
        if recorder.begun:  # settle it now if the devices answer; otherwise recovery does it later
            recover_now(journal, mid, environ=environ, ssh=opts.ssh, timeouts=opts.timeouts)
        raise
    except NetmigError as exc:
        if recorder.applied:
            recorder.finish("success", {"cleanup-source": f"failed: {exc}"})
        else:
            recorder.finish("rolled-back", {"error": str(exc), "error-type": type(exc).__name__})
        raise
    if isinstance(result, MigrationResult):
        recorder.finish("success", {"moved": dict(result.moved), "dropped": list(result.dropped),
                                    "cleanup-source": "done" if opts.cleanup_source else "not requested"})
    return result


def _run_other_mode(plan: MigrationPlan, topology: Topology, options: MigrationOptions, *, migration_id: str,
                    environ: Mapping[str, str] | None, on_step: StepHook | None, store: TransferStore | None,
                    feedback_deadline_s: float, recorder: MigrationRecorder | None = None) -> MigrationResult:
    """The middle, d-push and d-pull modes (journaled through ``recorder`` when given)."""
    if options.mode is Mode.MIDDLE:
        from netmig.modes.middle import run_middle

        return run_middle(plan, topology, options, migration_id=migration_id, environ=environ,
                          on_step=on_step, store=store, recorder=recorder)
    from netmig.modes.distributed import run_distributed

    return run_distributed(plan, topology, options, migration_id=migration_id, environ=environ,
                           on_step=on_step, push=options.mode is Mode.D_PUSH, deadline_s=feedback_deadline_s,
                           recorder=recorder)

"""Middle mode (seed draft section 5): netmig is a DI transfer database that never reads what it moves.

Static policies (operator intent) are prepared as in the centralized mode: pulled, translated, checked
for conflicts and support, encoded. Dynamic information moves as opaque blobs: each source device answers
``export-di`` with its own serialisation of the VM's learned state; netmig stores the bytes in a
:class:`~netmig.store.TransferStore` keyed by (migration, source device) and routes each blob to the
destination devices the partner map names (one blob to several destinations, several to one). Inside the
network-wide transaction, right after the static edit and under the same candidate lock, each destination
gets ``import-di``: the device checks support and conflicts, translates the blob into its own model and
writes it to its candidate, so the confirmed commit (and a rollback) covers it like everything else.
A device another coordinator holds is waited for with the bounded :class:`~netmig.quirks.BusyRetry`:
the transaction is rolled back and started over until ``busy_wait_s``.

The blob path (this module and :mod:`netmig.store`) imports no codec and no model: it moves bytes, a
content type and a digest, names kinds only as the partner map's strings, and builds its RPCs with
:mod:`netmig.xmlkit`'s element builders.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from netmig.devicegate import holding
from netmig.devices import handles_for, open_sessions, ssh_policy_for
from netmig.errors import (
    MalformedReplyError,
    MigrationRolledBackError,
    NetmigError,
    RollbackIncompleteError,
    TransactionError,
)
from netmig.feedback import DeviceOutcome, MigrationResult, Outcome
from netmig.model import PolicyKind
from netmig.modes.centralized import DryRun, PreparedMigration, prepare
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.patience import PatientSessionFactory, patient_sessions
from netmig.quirks import BusyRetry
from netmig.settings import SshPolicy
from netmig.store import Blob, SqliteStore, TransferStore, location_of
from netmig.topology.model import Topology
from netmig.topology.resolve import MigrationPlan
from netmig.transaction import DeviceChange, NetworkTransaction, StepHook
from netmig.xmlkit import Element, element, sub, text_of

if TYPE_CHECKING:
    from netmig.journal_hook import MigrationRecorder

__all__ = ["MIGRATION_NS", "STATIC_KINDS", "default_store", "di_routes", "dry_run_other_mode", "export_di",
           "import_op", "imported_entries", "rules_into", "run_middle", "stage_changes", "vm_port_of",
           "with_imports", "withdraw_op"]

log = logging.getLogger(__name__)

MIGRATION_NS = "urn:netmig:yang:netmig-migration"
STATIC_KINDS = frozenset(k for k in PolicyKind if not k.is_dynamic)
_DI_KINDS = frozenset(k.value for k in PolicyKind if k.is_dynamic)
# How long one attempt waits for a candidate another coordinator holds before it releases every lock it
# got and starts over (as the centralized mode does); options.timeouts.busy_wait_s bounds the whole wait.
LOCK_ATTEMPT_WAIT_S = 2.0

# (source device, destination device) -> DI kinds the destination takes from that source's blob
Routes = Mapping[tuple[str, str], tuple[str, ...]]


def default_store() -> SqliteStore:
    """The SQLite transfer store under ``$NETMIG_HOME`` (default ``~/.netmig``)."""
    import os

    home = Path(os.environ.get("NETMIG_HOME") or Path.home() / ".netmig")
    return SqliteStore(home / "di-store.sqlite")


def di_routes(plan: MigrationPlan) -> dict[tuple[str, str], tuple[str, ...]]:
    """Which destination takes which DI kinds from which source, from the partner map (strings only)."""
    routes: dict[tuple[str, str], set[str]] = {}
    for (source, kind), destinations in plan.partners.items():
        if str(kind) not in _DI_KINDS:
            continue
        for destination in destinations:
            routes.setdefault((source, destination), set()).add(str(kind))
    return {pair: tuple(sorted(kinds)) for pair, kinds in sorted(routes.items())}


def vm_port_of(plan: MigrationPlan, device: str) -> str | None:
    """The VM's port on ``device`` when it is the destination bridge."""
    return plan.destination.port if device == plan.destination.bridge.name else None


def rules_into(op: Element, plan: MigrationPlan, options: MigrationOptions) -> None:
    """Append the transfer-rules leaves (VLAN renames, NAT pools, allowed drops, seed TTL) to ``op``."""
    for src, dst in sorted(plan.mapping.vlans.items()):
        vmap = sub(op, MIGRATION_NS, "vlan-map")
        sub(vmap, MIGRATION_NS, "from", src)
        sub(vmap, MIGRATION_NS, "to", dst)
    if plan.source_pool is not None and plan.destination_pool is not None:
        pmap = sub(op, MIGRATION_NS, "nat-pool-map")
        sub(pmap, MIGRATION_NS, "from", str(plan.source_pool))
        sub(pmap, MIGRATION_NS, "to", str(plan.destination_pool))
    for kind in sorted(options.allow_drop):
        sub(op, MIGRATION_NS, "allow-drop", str(kind))
    sub(op, MIGRATION_NS, "seed-ttl", options.seed_ttl_s)


def stage_changes(prepared: PreparedMigration, plan: MigrationPlan, receivers: Sequence[str],
                  environ: Mapping[str, str] | None) -> list[DeviceChange]:
    """The static changes, plus an empty change for every receiver of DI that has no static change."""
    changes = list(prepared.changes)
    have = {c.endpoint.name for c in changes}
    handles = handles_for(plan.destination_devices, environ)
    for name in receivers:
        if name not in have:
            changes.append(DeviceChange(handles[name].endpoint, element(_NC, "config"), lambda _r: []))
    return sorted(changes, key=lambda c: c.endpoint.name)


_NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def export_di(session: DeviceSession, migration_id: str, vm_id: str) -> Blob:
    """Ask ``session``'s device for the VM's DI as an opaque blob (``export-di``); the blob, unread."""
    op = element(MIGRATION_NS, "export-di")
    sub(op, MIGRATION_NS, "migration-id", migration_id)
    sub(op, MIGRATION_NS, "vm-id", vm_id)
    reply = session.rpc(op)
    leaves = {n: text_of(reply, MIGRATION_NS, n) for n in ("blob", "content-type", "sha256", "entry-count")}
    if any(v is None for v in leaves.values()):
        raise MalformedReplyError(session.device, "export-di: reply lacks blob, content-type, sha256 "
                                                  "or entry-count")
    try:
        data = base64.b64decode(leaves["blob"] or "", validate=True)  # transfer encoding, not content
    except ValueError as exc:
        raise MalformedReplyError(session.device, f"export-di: blob is not base64: {exc}") from exc
    return Blob(data, leaves["content-type"] or "", leaves["sha256"] or "", int(leaves["entry-count"] or 0))


def import_op(migration_id: str, vm_id: str, source: str, blob: Blob, kinds: Sequence[str],
              vm_port: str | None, plan: MigrationPlan, options: MigrationOptions) -> Element:
    """The ``import-di`` operation carrying one stored blob to one destination."""
    op = element(MIGRATION_NS, "import-di")
    sub(op, MIGRATION_NS, "migration-id", migration_id)
    sub(op, MIGRATION_NS, "vm-id", vm_id)
    sub(op, MIGRATION_NS, "blob", base64.b64encode(blob.data).decode())
    sub(op, MIGRATION_NS, "content-type", blob.content_type)
    sub(op, MIGRATION_NS, "sha256", blob.sha256)
    sub(op, MIGRATION_NS, "from", source)
    for kind in kinds:
        sub(op, MIGRATION_NS, "kind", kind)
    if vm_port is not None:
        sub(op, MIGRATION_NS, "vm-port", vm_port)
    rules_into(op, plan, options)
    return op


def withdraw_op(migration_id: str, vm_id: str) -> Element:
    """The ``withdraw-di`` operation: the device removes what its imports of this migration created."""
    op = element(MIGRATION_NS, "withdraw-di")
    sub(op, MIGRATION_NS, "migration-id", migration_id)
    sub(op, MIGRATION_NS, "vm-id", vm_id)
    return op


def with_imports(change: DeviceChange, imports: Sequence[Element], migration_id: str,
                 vm_id: str) -> DeviceChange:
    """``change`` sending ``imports`` after its edit and ``withdraw-di`` after its undo's edit."""
    if not imports:
        return change
    return replace(change, extra_ops=tuple(imports), undo_ops=(withdraw_op(migration_id, vm_id),))


def imported_entries(replies: Mapping[str, Sequence[Element]]) -> int:
    """The entries the devices said their import-di wrote (``entry-count`` of each reply)."""
    return sum(int(text_of(r, MIGRATION_NS, "entry-count") or 0) for rs in replies.values() for r in rs)


def dry_run_other_mode(plan: MigrationPlan, topology: Topology, options: MigrationOptions, *,
                       environ: Mapping[str, str] | None = None, on_step: StepHook | None = None) -> DryRun:
    """What the middle, d-push or d-pull mode would do; devices are only read.

    The static part is prepared and shown as the centralized dry run shows it; the DI part names who
    would be asked to move what (the partner map's routes), and for d-push/d-pull the associate's bridge.
    """
    from netmig.options import Mode

    prepared = prepare(plan, topology, options, environ=environ, on_step=on_step, kinds=STATIC_KINDS)
    planned = NetworkTransaction(prepared.changes, ssh=ssh_policy_for(topology, options.ssh)).dry_run()
    routes = di_routes(plan)
    if options.mode is Mode.MIDDLE:
        moves = [f"export-di from {s}, import-di into {d}: {', '.join(k)}" for (s, d), k in routes.items()]
    else:
        push = options.mode is Mode.D_PUSH
        bridge = plan.source.bridge.name if push else plan.destination.bridge.name
        bit = "S-bit (d-push)" if push else "M-bit (d-pull)"
        moves = [f"vdp-associate with the {bit} to bridge {bridge}"]
        moves += [f"{s} pushes to {d}: {', '.join(k)}" if push else f"{d} pulls from {s}: {', '.join(k)}"
                  for (s, d), k in routes.items()]
        reporters = {bridge} | {s if push else d for s, d in routes}
        moves.append(f"netmig would wait for feedback from: {', '.join(sorted(reporters))}")
    return DryRun(prepared, planned, tuple(moves))


def run_middle(plan: MigrationPlan, topology: Topology, options: MigrationOptions, *, migration_id: str,
               environ: Mapping[str, str] | None = None, on_step: StepHook | None = None,
               store: TransferStore | None = None,
               recorder: MigrationRecorder | None = None) -> MigrationResult:
    """Migrate in the middle mode; raises a TransactionError subclass when it fails.

    Blobs already in ``store`` for this migration (a coordinator restarted mid-way) are not exported
    again. The store is emptied of this migration once it ended, succeeded or rolled back; the blobs stay
    only while it is unfinished (RollbackIncompleteError, or the coordinator died). With a ``recorder``
    the migration is journaled (begun after the read-only preparation): the store's location (recovery
    drops the blobs of a migration it settles), each stored export (digest and entry count, never
    content) and every transaction step before it is taken, with its persist-id.
    """
    from netmig.journal_hook import modes_plan

    timings: dict[str, float] = {}
    prepared = prepare(plan, topology, options, environ=environ, on_step=on_step, kinds=STATIC_KINDS)
    timings.update(prepared.timings_ms)
    ssh = ssh_policy_for(topology, options.ssh)
    routes = di_routes(plan)
    own_store = store is None
    blobs_at: TransferStore = store if store is not None else default_store()
    try:
        if recorder is not None:
            roles = {s: "source" for s, _ in routes} | {d: "destination" for _, d in routes}
            names = sorted({c.endpoint.name for c in prepared.changes} | set(roles))
            handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
            recorder.begin(names, modes_plan(prepared, handles, roles, options=options, ssh=ssh,
                                             persist_ids={}, store=location_of(blobs_at)))
        try:
            txn, outcomes = _move(prepared, plan, options, routes, blobs_at, timings,
                                  migration_id=migration_id, ssh=ssh, environ=environ, on_step=on_step,
                                  recorder=recorder)
        except RollbackIncompleteError:
            raise  # unfinished: recovery settles it and then drops the blobs (journaled store location)
        except NetmigError:
            _forget(blobs_at, migration_id)  # rolled back: nothing will import these blobs
            raise
        _forget(blobs_at, migration_id)
    finally:
        if own_store and isinstance(blobs_at, SqliteStore):
            blobs_at.close()
    moved = dict(prepared.moved)
    moved["di-entries"] = imported_entries(txn.replies)
    return MigrationResult(migration_id, plan.vm_id, options.mode.value, Outcome.SUCCESS, outcomes, moved,
                           (), timings, prepared.conflicts)


def _forget(store: TransferStore, migration_id: str) -> None:
    """Drop the migration's blobs now that it ended (succeeded or rolled back); a failure is logged."""
    try:
        store.drop(migration_id)
    except NetmigError as exc:
        log.warning("migration %s ended, but its DI blobs stay in the transfer store: %s", migration_id, exc)


def _move(prepared: PreparedMigration, plan: MigrationPlan, options: MigrationOptions, routes: Routes,
          blobs_at: TransferStore, timings: dict[str, float], *, migration_id: str, ssh: SshPolicy,
          environ: Mapping[str, str] | None, on_step: StepHook | None,
          recorder: MigrationRecorder | None) -> tuple[NetworkTransaction, tuple[DeviceOutcome, ...]]:
    """Export the sources' blobs into the store (those not stored yet), then run the transaction that
    takes the static edits and each destination's ``import-di``; the transaction and its outcomes."""
    from netmig.journal import Step as JStep

    started = time.perf_counter()
    sources = sorted({s for s, _ in routes} - set(blobs_at.devices(migration_id)))  # resume: keep stored
    handles = handles_for(plan.source_devices, environ)
    with open_sessions([handles[s] for s in sources], ssh=ssh, timeouts=options.timeouts) as sessions, \
            ThreadPoolExecutor(max_workers=max(1, min(16, len(sources)))) as workers:
        exported = dict(zip(sources, workers.map(
            lambda s: export_di(sessions[s], migration_id, plan.vm_id), sources), strict=True))
    for source, blob in exported.items():
        blobs_at.put(migration_id, source, blob)
        if recorder is not None:
            recorder.note(source, JStep.EXPORT, ok=True,
                          detail={"sha256": blob.sha256, "entries": blob.entry_count,
                                  "content-type": blob.content_type, "bytes": len(blob.data)})
    timings["export"] = (time.perf_counter() - started) * 1000

    imports: dict[str, list[Element]] = {}
    for (source, destination), kinds in routes.items():
        stored = blobs_at.get(migration_id, source)
        if stored is None or stored.entry_count == 0:
            continue
        imports.setdefault(destination, []).append(import_op(
            migration_id, plan.vm_id, source, stored, kinds, vm_port_of(plan, destination), plan, options))
    changes = [with_imports(c, imports.get(c.endpoint.name, ()), migration_id, plan.vm_id)
               for c in stage_changes(prepared, plan, sorted(imports), environ)]
    started = time.perf_counter()
    hook = recorder.stage("apply", on_step) if recorder is not None else None
    busy = BusyRetry(options.timeouts.busy_wait_s)
    txn: NetworkTransaction | None = None
    factory: PatientSessionFactory | None = None

    def attempt() -> tuple[DeviceOutcome, ...]:
        """One transaction; a candidate another coordinator holds is waited for briefly, then every
        lock is released (the transaction rolls back) and BusyRetry.again starts over."""
        nonlocal txn, factory
        patience = min(LOCK_ATTEMPT_WAIT_S, busy.max_wait_s)
        factory = patient_sessions(ssh, options.timeouts, max_wait_s=patience)
        txn = NetworkTransaction(changes, ssh=ssh, timeouts=options.timeouts, commit=options.commit,
                                 on_step=hook or on_step, session_factory=factory)
        if hook is not None:
            hook.persist_ids = txn.persist_ids
            hook.compensate_ids = txn.compensate_ids
        try:
            return txn.run()
        except TransactionError as exc:
            if hook is not None:
                hook.results(exc.outcomes)
            raise

    def held_elsewhere(exc: Exception) -> bool:
        return isinstance(exc, MigrationRolledBackError) and factory is not None and factory.busy

    with holding(c.endpoint for c in changes):  # queue with this process's other migrations
        outcomes = busy.again(attempt, busy=held_elsewhere, what=f"migration {migration_id}")
    if txn is None:  # pragma: no cover - again() ran attempt() at least once
        raise RuntimeError("no transaction ran")
    if hook is not None and recorder is not None:
        hook.results(outcomes)
        recorder.applied = True
    timings["apply"] = (time.perf_counter() - started) * 1000
    return txn, outcomes

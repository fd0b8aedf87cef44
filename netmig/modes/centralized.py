"""Centralized mode (seed draft section 4): netmig pulls, translates, checks and pushes everything.

The arrows of DESIGN.md's data flow, in order: resolve (already done: a MigrationPlan), pull from the
source devices, translate through the partner map, check every destination, encode, apply in one
network-wide confirmed-commit transaction, and report. The source keeps everything until the
destination is confirmed; ``cleanup_source`` then removes the VM's entries there in a second
confirmed transaction (make before break).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from netmig.check import CheckResult, check_destination, delta
from netmig.codecs.base import DeviceCodec, Element, VmContext
from netmig.devicegate import holding
from netmig.devices import DeviceHandle, handles_for, open_sessions, ssh_policy_for
from netmig.errors import BundleError, MigrationRolledBackError, PolicyConflictError, TransactionError
from netmig.feedback import DeviceOutcome, MigrationResult, Outcome
from netmig.model import PolicyKind, VmBundle
from netmig.netconf.session import DeviceSession
from netmig.options import MigrationOptions
from netmig.pull import ReadSession, SourceDevice, pull_sources
from netmig.settings import SshPolicy, Timeouts
from netmig.topology.model import Topology
from netmig.topology.resolve import MigrationPlan
from netmig.transaction import DeviceChange, NetworkTransaction, PlannedChange, StepHook
from netmig.translate import TranslationRules, translate

if TYPE_CHECKING:
    from netmig.bulkread import BulkDevice
    from netmig.journal_hook import MigrationRecorder
    from netmig.sessionpool import SessionPool

__all__ = ["DryRun", "PreparedMigration", "prepare", "run_centralized", "verifier"]

log = logging.getLogger(__name__)

LOCK_ATTEMPT_WAIT_S = 2.0   # per attempt; then it releases every lock it got and retries (no deadlock)
# The total wait for devices other migrations (or sessions) hold is options.timeouts.busy_wait_s.


@dataclass(frozen=True, slots=True)
class PreparedMigration:
    """Everything decided before the first change: per-destination bundles, checks and edits."""

    plan: MigrationPlan
    pulled: Mapping[str, VmBundle]
    checks: Mapping[str, CheckResult]
    changes: tuple[DeviceChange, ...]
    contexts: Mapping[str, VmContext]
    timings_ms: dict[str, float] = field(default_factory=dict)
    sent: Mapping[str, VmBundle] = field(default_factory=dict)  # the delta each destination takes

    @property
    def moved(self) -> dict[str, int]:
        """Entries per policy kind that will land on the destinations (pulled minus dropped/skipped)."""
        moved: dict[str, int] = {}
        for result in self.checks.values():
            for kind, count in result.bundle.counts().items():
                if count:
                    moved[kind.value] = max(moved.get(kind.value, 0), count)
        return moved

    @property
    def dropped(self) -> tuple[str, ...]:
        return tuple(sorted({f"{d}:{k.value}" for d, r in self.checks.items() for k in r.dropped}))

    @property
    def conflicts(self) -> tuple[str, ...]:
        return tuple(str(c) for r in self.checks.values() for c in r.conflicts)


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a migration would send to each destination; nothing was changed."""

    prepared: PreparedMigration
    planned: tuple[PlannedChange, ...]
    di_moves: tuple[str, ...] = ()  # middle, d-push, d-pull: who would be asked to move the VM's DI


def _rules_for(plan: MigrationPlan) -> Callable[[str], TranslationRules]:
    pools: dict[str, str] = {}
    if plan.source_pool is not None and plan.destination_pool is not None:
        pools[str(plan.source_pool)] = str(plan.destination_pool)
    mapping = plan.mapping

    def rules(device: str) -> TranslationRules:
        port = plan.destination.port if device == plan.destination.bridge.name else None
        return TranslationRules(vlans=mapping.vlans, vnis=mapping.vnis, zones=mapping.zones, nat_pools=pools,
                                destination_port=port, destination_host=plan.destination.host.name)
    return rules


def verifier(codec: DeviceCodec, intended: VmBundle, ctx: VmContext) -> Callable[[Element], list[str]]:
    """A check of a device's running config against what we meant it to hold for the VM."""
    def verify(running: Element) -> list[str]:
        actual = codec.decode(running, None, ctx)
        problems: list[str] = []
        for kind in sorted(intended.kinds(), key=lambda k: k.value):
            want = intended.entries(kind)
            have = actual.entries(kind)
            if kind.is_dynamic:
                missing = {getattr(e, "key", e) for e in want} - {getattr(e, "key", e) for e in have}
                if missing:
                    problems.append(f"{kind.value}: {len(missing)} seeded entries missing from running")
            elif set(want) != set(have):
                problems.append(f"{kind.value}: running holds {len(have)} entries, meant {len(want)} as sent")
        return problems
    return verify


def absence_verifier(codec: DeviceCodec, removed: VmBundle, ctx: VmContext) -> Callable[[Element], list[str]]:
    """A check that a device's running config holds none of ``removed`` (static entries, and seeds by key)."""
    def verify(running: Element) -> list[str]:
        have = codec.decode(running, None, ctx)
        problems: list[str] = []
        for kind in sorted(removed.kinds(), key=lambda k: k.value):
            if kind.is_dynamic:
                left = ({getattr(e, "key", e) for e in removed.entries(kind)}
                        & {getattr(e, "key", e) for e in have.entries(kind)})
            else:
                left = set(removed.entries(kind)) & set(have.entries(kind))
            if left:
                problems.append(f"{kind.value}: {len(left)} entries still in running")
        return problems
    return verify


def _undo_of(codec: DeviceCodec, send: VmBundle, before: Element, ctx: VmContext) -> VmBundle:
    """What the undo of ``send`` removes: all of it but the seeds the device already held (``before``:
    its running config read with the codec's config_filter; learned state is always sent again)."""
    seeded = codec.decode(before, None, ctx)
    kept = {}
    for kind in PolicyKind:
        if kind.is_dynamic and send.entries(kind):
            held = {getattr(e, "key", e) for e in seeded.entries(kind)}
            kept[kind.attr] = tuple(e for e in send.entries(kind) if getattr(e, "key", e) not in held)
    return replace(send, dynamic=replace(send.dynamic, **kept)) if kept else send


def _pull(plan: MigrationPlan, handles: Mapping[str, DeviceHandle], sessions: Mapping[str, ReadSession],
          *, now: datetime, ttl_s: int, on_step: StepHook | None, workers: int = 8
          ) -> tuple[VmContext, Mapping[str, VmBundle]]:
    hint = plan.vm
    ctx = VmContext(plan.vm_id, plan.source.port, macs=hint.macs if hint else (),
                    ips=hint.ips if hint else (), tenant=hint.tenant if hint else None, now=now,
                    default_ttl_s=ttl_s)
    bridge_name = plan.source.bridge.name

    def source(name: str, port: str | None) -> SourceDevice:
        return SourceDevice(name, handles[name].codec, sessions[name], port)
    others = [source(d.name, None) for d in plan.source_devices if d.name != bridge_name]
    return pull_sources(source(bridge_name, plan.source.port), others, ctx,
                        on_step=_str_step(on_step), workers=workers)


def _str_step(on_step: StepHook | None) -> Callable[[str, str], None] | None:
    """Pull reports its steps as plain strings; the transaction's hook takes them too."""
    if on_step is None:
        return None
    hook = on_step

    def step(device: str, name: str) -> None:
        hook(device, name)  # type: ignore[arg-type]
    return step


def _check_one(name: str, handle: DeviceHandle, session: DeviceSession, bundle: VmBundle, ctx: VmContext,
               options: MigrationOptions, pool: SessionPool | None = None, reader: ReadSession | None = None
               ) -> tuple[CheckResult, VmBundle, Element]:
    """Pre-flight checks of one destination; also returns what it already holds for the VM (decoded, and
    its running config as read with the codec's ``config_filter``).

    With a snapshot pool (a batch) the yang-library and the inventory are read once per device; with a
    ``reader`` (a batch's bulk reads) the VM's filtered reads are answered by it.
    """
    reads: ReadSession = reader if reader is not None else session
    codec = handle.codec
    if pool is not None:
        caps = pool.cached(handle.endpoint, "yang-library", lambda s: s.load_yang_library())
        inventory = pool.cached(handle.endpoint, f"inventory/{codec.name}",
                                lambda s: codec.inventory(s.get_config("running")))
    else:
        caps = session.load_yang_library()
    existing_cfg = reads.get_config("running", codec.config_filter(ctx))
    existing_state = reads.get(codec.state_filter(ctx))
    try:
        existing = codec.decode(existing_cfg, existing_state, ctx)
    except BundleError as exc:  # the destination port or an address already belongs to another VM
        raise PolicyConflictError([f"{name}: {exc}"]) from exc
    if pool is None:
        inventory = codec.inventory(session.get_config("running"))
    features = {(m.name, f) for m in caps.modules.values() for f in m.features}
    result = check_destination(name, codec, bundle, modules=set(caps.modules), features=features,
                               inventory=inventory, existing=existing, allow_drop=options.allow_drop,
                               on_conflict=options.on_conflict)
    return result, existing, existing_cfg


def _sessions(handles: list[DeviceHandle], *, ssh: SshPolicy, timeouts: Timeouts,
              pool: SessionPool | None) -> AbstractContextManager[Mapping[str, DeviceSession]]:
    """Fresh sessions closed on exit, or (with a pool) the pool's open sessions, left open."""
    if pool is None:
        return open_sessions(handles, ssh=ssh, timeouts=timeouts)
    pool.open_all(h.endpoint for h in handles)
    return nullcontext({h.name: pool.get(h.endpoint) for h in handles})


def _readers(sessions: Mapping[str, DeviceSession], bulk: Mapping[str, BulkDevice] | None
             ) -> dict[str, ReadSession]:
    """Each device's session, or for a device of ``bulk`` a reader answering from the batch's snapshot."""
    from netmig.bulkread import BulkReader
    bulk = bulk or {}
    return {n: BulkReader(bulk[n], s) if n in bulk else s for n, s in sessions.items()}


def prepare(plan: MigrationPlan, topology: Topology, options: MigrationOptions, *,
            environ: Mapping[str, str] | None = None, on_step: StepHook | None = None,
            pool: SessionPool | None = None, kinds: frozenset[PolicyKind] | None = None,
            bulk: Mapping[str, BulkDevice] | None = None) -> PreparedMigration:
    """Pull, translate, check and encode: everything short of changing a device.

    With a ``pool`` (netmig.sessionpool) the sessions are reused and stay open for the next phase.
    With ``bulk`` (a batch: netmig.bulkread) the VM's filtered reads of those devices are answered from
    one read per device shared by the batch.
    ``kinds`` limits what moves this way (the middle and distributed modes move DI by other means and
    prepare only the static policies here).
    """
    timings: dict[str, float] = {}
    now = datetime.now(UTC)
    ssh = ssh_policy_for(topology, options.ssh)
    handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
    started = time.perf_counter()
    with _sessions([handles[d.name] for d in plan.source_devices], ssh=ssh, timeouts=options.timeouts,
                   pool=pool) as sessions:
        ctx, pulled = _pull(plan, handles, _readers(sessions, bulk), now=now, ttl_s=options.seed_ttl_s,
                            on_step=on_step, workers=1 if pool is not None else 8)
    if kinds is not None:
        pulled = {name: bundle.only(kinds) for name, bundle in pulled.items()}
    timings["pull"] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    routed = translate(pulled, plan.partners, _rules_for(plan))
    timings["translate"] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    contexts: dict[str, VmContext] = {}
    for name, bundle in routed.items():
        port = plan.destination.port if name == plan.destination.bridge.name else ""
        vlan = bundle.static.port_profile.vlan if bundle.static.port_profile else bundle.identity.segment
        contexts[name] = VmContext(plan.vm_id, port, macs=ctx.macs, ips=ctx.ips,
                                   tenant=bundle.identity.tenant or ctx.tenant, vlan=vlan, now=now,
                                   default_ttl_s=options.seed_ttl_s)
    # a batch (pool) runs many VMs on its own threads, mostly from local snapshots: one thread per VM
    parallel = 1 if pool is not None else max(1, min(16, len(routed)))
    with _sessions([handles[n] for n in routed], ssh=ssh, timeouts=options.timeouts, pool=pool) as sessions, \
            ThreadPoolExecutor(max_workers=parallel) if parallel > 1 else nullcontext() as workers:
        readers = _readers(sessions, bulk)
        if workers is None:
            checked = {n: _check_one(n, handles[n], sessions[n], b, contexts[n], options, pool, readers[n])
                       for n, b in routed.items()}
        else:
            futures = {n: workers.submit(_check_one, n, handles[n], sessions[n], b, contexts[n], options,
                                         pool, readers[n]) for n, b in routed.items()}
            checked = {n: f.result() for n, f in futures.items()}
    checks = {n: c for n, (c, _, _) in checked.items()}
    existing = {n: e for n, (_, e, _) in checked.items()}
    existing_cfg = {n: cfg for n, (_, _, cfg) in checked.items()}
    timings["check"] = (time.perf_counter() - started) * 1000

    changes = []
    sent: dict[str, VmBundle] = {}
    for name in sorted(checks):
        result, codec, dctx = checks[name], handles[name].codec, contexts[name]
        send = delta(result.bundle, existing[name])
        if not send.kinds():
            continue
        sent[name] = send
        undo = _undo_of(codec, send, existing_cfg[name], dctx)
        changes.append(DeviceChange(handles[name].endpoint, codec.encode(send, dctx),
                                    verifier(codec, result.bundle, dctx),
                                    verify_filter=codec.config_filter(dctx),
                                    undo=codec.encode_removal(undo, dctx, current=existing_cfg[name]),
                                    verify_undone=absence_verifier(codec, undo, dctx)))
    return PreparedMigration(plan, pulled, checks, tuple(changes), contexts, timings, sent)


def run_centralized(plan: MigrationPlan, topology: Topology, options: MigrationOptions, *,
                    migration_id: str, environ: Mapping[str, str] | None = None,
                    on_step: StepHook | None = None,
                    recorder: MigrationRecorder | None = None) -> MigrationResult | DryRun:
    """Migrate in the centralized mode; raises a TransactionError subclass when it fails.

    With a ``recorder`` the migration is journaled (begun after the read-only preparation, before the
    first change) with a plan that lets recovery and rollback act without this process.
    """
    from netmig.journal_hook import journal_plan
    from netmig.patience import patient_sessions

    prepared = prepare(plan, topology, options, environ=environ, on_step=on_step)
    ssh = ssh_policy_for(topology, options.ssh)
    hook = recorder.stage("apply", on_step) if recorder is not None else None
    factory = patient_sessions(ssh, options.timeouts, max_wait_s=LOCK_ATTEMPT_WAIT_S)
    txn = NetworkTransaction(prepared.changes, ssh=ssh, timeouts=options.timeouts, commit=options.commit,
                             on_step=hook or on_step, session_factory=factory)
    if options.dry_run:
        return DryRun(prepared, txn.dry_run())
    if recorder is not None and hook is not None:
        hook.persist_ids, hook.compensate_ids = txn.persist_ids, txn.compensate_ids
        cleanup = _cleanup_contexts(prepared) if options.cleanup_source else {}
        handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
        names = [c.endpoint.name for c in prepared.changes] + sorted(cleanup)
        recorder.begin(names or sorted(handles), journal_plan(prepared, handles, cleanup, options=options,
                                                              ssh=ssh, persist_ids=txn.persist_ids))
    started = time.perf_counter()
    # migrations of this process queue for shared devices (netmig.devicegate); others meet the lock retry
    with holding(c.endpoint for c in prepared.changes):
        deadline = time.monotonic() + options.timeouts.busy_wait_s
        while True:
            try:
                outcomes: tuple[DeviceOutcome, ...] = txn.run()
                break
            except TransactionError as exc:
                if hook is not None:
                    hook.results(exc.outcomes)
                retry = factory.busy and isinstance(exc, MigrationRolledBackError)
                if not retry or time.monotonic() > deadline:
                    raise
            # another migration holds a device: every lock was released; back off, then a fresh transaction
            log.info("migration %s: a device is busy, retrying the transaction", migration_id)
            time.sleep(random.uniform(0.1, 1.0))
            factory = patient_sessions(ssh, options.timeouts, max_wait_s=LOCK_ATTEMPT_WAIT_S)
            txn = NetworkTransaction(prepared.changes, ssh=ssh, timeouts=options.timeouts,
                                     commit=options.commit, on_step=hook or on_step, session_factory=factory)
            if hook is not None:
                hook.persist_ids, hook.compensate_ids = txn.persist_ids, txn.compensate_ids
    if hook is not None and recorder is not None:
        hook.results(outcomes)
        recorder.applied = True
    timings = dict(prepared.timings_ms)
    timings["apply"] = (time.perf_counter() - started) * 1000
    for phase, ms in txn.timings_ms.items():
        timings[f"apply.{phase}"] = ms
    if options.cleanup_source:
        started = time.perf_counter()
        outcomes += cleanup_source(prepared, topology, options, environ=environ, on_step=on_step,
                                   recorder=recorder)
        timings["cleanup-source"] = (time.perf_counter() - started) * 1000
    return MigrationResult(migration_id, plan.vm_id, options.mode.value, Outcome.SUCCESS, outcomes,
                           prepared.moved, prepared.dropped, timings, prepared.conflicts)


def _cleanup_contexts(prepared: PreparedMigration) -> dict[str, VmContext]:
    """The source devices cleanup-source changes, each with the context its removal is encoded in."""
    plan = prepared.plan
    staying = {d.name for d in plan.destination_devices}
    contexts = {}
    for name, bundle in sorted(prepared.pulled.items()):
        if name in staying:  # also a destination (same upper layer or middlebox): it keeps the VM's part
            continue
        port = plan.source.port if name == plan.source.bridge.name else ""
        contexts[name] = VmContext(plan.vm_id, port, macs=bundle.identity.mac, ips=bundle.identity.ip)
    return contexts


def cleanup_source(prepared: PreparedMigration, topology: Topology, options: MigrationOptions, *,
                   environ: Mapping[str, str] | None = None, on_step: StepHook | None = None,
                   recorder: MigrationRecorder | None = None) -> tuple[DeviceOutcome, ...]:
    """Remove the VM's entries from its source devices in a second confirmed transaction."""
    from netmig.journal_hook import CLEANUP_STAGE
    from netmig.patience import patient_sessions

    plan = prepared.plan
    handles = handles_for(plan.source_devices, environ)
    changes = []
    for name, ctx in _cleanup_contexts(prepared).items():
        bundle, handle = prepared.pulled[name], handles[name]
        removal = handle.codec.encode_removal(bundle, ctx)
        empty = VmBundle(plan.vm_id)
        changes.append(DeviceChange(handle.endpoint, removal, verifier(handle.codec, empty, ctx),
                                    verify_filter=handle.codec.config_filter(ctx)))
    ssh = ssh_policy_for(topology, options.ssh)
    hook = recorder.stage(CLEANUP_STAGE, on_step) if recorder is not None else None
    txn = NetworkTransaction(changes, ssh=ssh, timeouts=options.timeouts, commit=options.commit,
                             on_step=hook or on_step, session_factory=patient_sessions(ssh, options.timeouts))
    if hook is None:
        with holding(c.endpoint for c in changes):
            return txn.run()
    hook.persist_ids = txn.persist_ids
    try:
        with holding(c.endpoint for c in changes):
            outcomes = txn.run()
    except TransactionError as exc:
        hook.results(exc.outcomes)
        raise
    hook.results(outcomes)
    return outcomes

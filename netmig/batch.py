"""Mass migration: many VMs moved at once, grouped per destination device (group commit), with per-VM
feedback (issue 7).

1. Prepare every VM (pull, translate, check, encode) with ``workers`` threads, each owning a
   :class:`~netmig.sessionpool.SessionPool` so a device's session is reused for every VM that thread
   handles and never shared between threads. A VM whose checks fail (conflict, unsupported policy,
   unknown VM, unreachable source) is left out and reported FAIL with its reason; the others go on.
   Two VMs of the batch claiming the same destination port: the second is left out as a conflict.
2. Group commit: the VMs are cut into groups of at most ``group_size``; per group, each destination
   device receives ONE edit-config holding every VM's change for it and ONE confirmed commit, all
   devices of the group in one network-wide transaction (parallel across devices, at most
   ``device_parallelism`` at a time), verified against every VM's intent, then confirmed.
   A group that fails is rolled back as a whole: its VMs are FAIL with the transaction's reason.

Modes: centralized; middle (:mod:`netmig.batch_middle`: the static policies as above, each VM's DI
exported from its sources as opaque blobs into the transfer store and imported by ``import-di`` under
its group's confirmed commit); d-push and d-pull (:mod:`netmig.batch_distributed`: the group's static
policies staged with one confirmed commit per destination, then one ``vdp-associate`` per VM carrying the
group's ``group-id``, so the devices' own imports are follow-up commits of that one pending commit; a VM
whose transfer fails rolls its group back everywhere, then the others are tried again without it
(:mod:`netmig.batch_isolation`)).

Per-VM ``suspension_ms`` is the time of the VM's group transaction (the VMs of a group resume together).

Journal (``journal=``; the CLI's ``--journal``, default under ``$NETMIG_HOME``): each group is journaled
as one migration under the group's id (:mod:`netmig.batch_journal`), its steps written ahead as a single
migration's are, so ``netmig recover`` settles a group whose coordinator died: committed everywhere or
rolled back everywhere. A journaled centralized group keeps its VMs' undo (merged per device), so it is
compensable like a middle one. In d-push/d-pull each try of a group (the first and every retry,
``<group>-r<k>``) is a record of its own, closed before the next try starts.
"""

from __future__ import annotations

import csv
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from netmig.batch_journal import BatchJournal
from netmig.batch_merge import group_changes
from netmig.batch_merge import missing_from as missing_from  # importable here, as before
from netmig.bulkread import BulkDevice
from netmig.codecs.registry import get_codec
from netmig.errors import InputError, NetmigError, TransactionError
from netmig.feedback import Outcome
from netmig.journal import Journal
from netmig.modes.centralized import PreparedMigration
from netmig.modes.centralized import prepare as prepare_centralized
from netmig.options import MigrationOptions, Mode
from netmig.sessionpool import SessionPool, SnapshotCache
from netmig.topology import load_topology, resolve
from netmig.topology.model import Topology
from netmig.topology.resolve import MigrationPlan
from netmig.transaction import DeviceChange, NetworkTransaction
from netmig.xmlkit import Element

if TYPE_CHECKING:
    from netmig.batch_distributed import DistributedBatch
    from netmig.batch_middle import MiddleBatch
    from netmig.store import TransferStore

__all__ = ["BatchItem", "BatchResult", "VmResult", "load_batch", "migrate_many"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One VM of a batch: its id, the host it leaves, the host it lands on."""

    vm: str
    source: str
    destination: str


@dataclass(frozen=True, slots=True)
class VmResult:
    """Per-VM feedback of a batch."""

    vm: str
    outcome: Outcome
    error: str | None = None
    devices: tuple[str, ...] = ()
    group: int | None = None
    suspension_ms: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"vm": self.vm, "outcome": self.outcome.value, "error": self.error,
                "devices": list(self.devices), "group": self.group,
                "suspension_ms": None if self.suspension_ms is None else round(self.suspension_ms, 3)}


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: tuple[VmResult, ...]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    sessions_opened: int = 0

    @property
    def succeeded(self) -> tuple[str, ...]:
        return tuple(r.vm for r in self.results if r.outcome is Outcome.SUCCESS)

    @property
    def failed(self) -> tuple[VmResult, ...]:
        return tuple(r for r in self.results if r.outcome is not Outcome.SUCCESS)


def load_batch(path: str | Path) -> tuple[BatchItem, ...]:
    """Read a batch file: CSV (``vm,from,to`` with that header) or YAML (a list of {vm, from, to})."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise InputError(f"{file}: cannot read the batch file: {exc.strerror or exc}") from exc
    rows: list[Mapping[str, object]]
    if file.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{file}: not YAML: {exc}") from exc
        if isinstance(data, dict) and "vms" in data:
            data = data["vms"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{file}: a batch is a list of {{vm, from, to}} mappings")
        rows = data
    items = []
    for n, row in enumerate(rows, 1):
        values = [row.get(k) for k in ("vm", "from", "to")]
        if not all(isinstance(v, str) and v for v in values):
            raise InputError(f"{file}: entry {n}: needs vm, from and to (strings)")
        items.append(BatchItem(*(str(v) for v in values)))
    names = [i.vm for i in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{file}: VM listed twice: {', '.join(dup)}")
    return tuple(items)


def _no_problems(running: Element) -> list[str]:
    return []


def _slim(prepared: PreparedMigration, *, keep_undo: bool = False) -> PreparedMigration:
    """What the group commit needs of a prepared VM: its plan and its edits (the pulled and checked
    bundles and single-VM verifiers are dropped: a batch holds thousands of VMs at once; the undo edits
    and their checks too, unless ``keep_undo``: the middle batch's groups are compensable)."""
    changes = tuple(DeviceChange(c.endpoint, c.edit, _no_problems, c.verify_filter, c.modules, c.features,
                                 c.undo if keep_undo else None, c.verify_undone if keep_undo else None)
                    for c in prepared.changes)
    return PreparedMigration(prepared.plan, {}, {}, changes, {}, prepared.timings_ms)


def _claims(prepared: PreparedMigration) -> set[tuple[str, str]]:
    plan = prepared.plan
    return {(plan.destination.bridge.name, plan.destination.port)}


def migrate_many(items: Iterable[BatchItem], *, topology: Topology | str | Path,
                 options: MigrationOptions | None = None, environ: Mapping[str, str] | None = None,
                 workers: int = 4, group_size: int = 1000, device_parallelism: int = 16,
                 on_vm: Callable[[VmResult], None] | None = None, bulk: bool = True,
                 store: TransferStore | None = None, feedback_deadline_s: float = 30.0,
                 journal: Journal | None = None) -> BatchResult:
    """Migrate many VMs with group commits per destination device; never raises for one VM's failure.

    ``bulk``: devices many of the batch's VMs touch are read once for all of them (netmig.bulkread);
    False: every VM reads its own part of every device (as a single migration does). ``store``: where
    the middle mode keeps the DI blobs (default: the SQLite store under ``$NETMIG_HOME``); every VM's
    blobs are dropped from it when the batch ends. ``feedback_deadline_s``: d-push/d-pull, how long the
    devices' feedback on each wave of associates is waited for.

    With a ``journal`` each group is journaled as one migration under the group's id
    (:mod:`netmig.batch_journal`; d-push/d-pull: each try of a group, its retries too, under its own id),
    so ``netmig recover`` settles a group whose coordinator died; interrupted migrations touching the
    batch's devices are recovered first, and a VM an unfinished journaled migration still holds is left
    out (FAIL).
    """
    opts = options if options is not None else MigrationOptions()
    if opts.dry_run or opts.cleanup_source:
        raise InputError(f"a batch runs without --dry-run or --cleanup-source (mode {opts.mode.value})")
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    middle = opts.mode is Mode.MIDDLE
    from netmig.devices import ssh_policy_for
    from netmig.modes.middle import STATIC_KINDS, default_store
    ssh = ssh_policy_for(topo, opts.ssh)
    kinds = None if opts.mode is Mode.CENTRALIZED else STATIC_KINDS
    di: MiddleBatch | None = None
    dist: DistributedBatch | None = None
    batch_id = "batch-" + secrets.token_hex(4)
    if middle:
        from netmig.batch_middle import MiddleBatch

        di = MiddleBatch(store if store is not None else default_store(), opts, environ,
                         own_store=store is None, batch_id=batch_id)
    groups = BatchJournal(journal, batch_id, opts, ssh, environ) if journal is not None else None
    if kinds is not None and not middle:
        from netmig.batch_distributed import DistributedBatch

        dist = DistributedBatch(opts, opts.mode is Mode.D_PUSH, ssh, environ, deadline_s=feedback_deadline_s,
                                batch_id=batch_id, journal=groups, parallelism=device_parallelism)
    todo = list(items)
    results: dict[str, VmResult] = {}
    lock = threading.Lock()
    local = threading.local()
    pools: list[SessionPool] = []
    snapshot = SnapshotCache()  # yang-library and inventory: once per device for the whole batch

    def report(result: VmResult) -> None:
        with lock:
            results[result.vm] = result
        if on_vm is not None:
            on_vm(result)

    def pool_of_thread() -> SessionPool:
        pool = getattr(local, "pool", None)
        if pool is None:
            # snapshot: yang-library and inventory read once per device (nothing commits before the groups)
            pool = local.pool = SessionPool(ssh=ssh, timeouts=opts.timeouts, snapshot=snapshot)
            with lock:
                pools.append(pool)
        return pool

    def plan_one(item: BatchItem) -> MigrationPlan | None:
        try:
            return resolve(topo, item.vm, item.source, item.destination)
        except NetmigError as exc:
            report(VmResult(item.vm, Outcome.FAIL, f"{type(exc).__name__}: {exc}"))
            return None

    def prepare_one(plan: MigrationPlan) -> PreparedMigration | None:
        try:
            return _slim(prepare_centralized(plan, topo, opts, environ=environ, pool=pool_of_thread(),
                                             bulk=shared, kinds=kinds),
                         keep_undo=kinds is not None or groups is not None)
        except NetmigError as exc:
            report(VmResult(plan.vm_id, Outcome.FAIL, f"{type(exc).__name__}: {exc}"))
            return None

    def export_one(prepared: PreparedMigration) -> PreparedMigration | None:
        if di is None:
            return prepared
        try:
            di.export(prepared, pool_of_thread())
            return prepared
        except NetmigError as exc:
            report(VmResult(prepared.plan.vm_id, Outcome.FAIL, f"{type(exc).__name__}: export-di: {exc}"))
            return None

    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        plans = [p for p in map(plan_one, todo) if p is not None]
        shared = bulk_devices(plans, topo) if bulk else {}
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="netmig-batch") as ex:
            prepared = [p for p in ex.map(prepare_one, plans) if p is not None]
        log.info("batch: %d VMs prepared, %d devices read in bulk (%d reads)", len(prepared), len(shared),
                 sum(b.reads for b in shared.values()))
        shared.clear()  # the snapshots: not needed past the preparation
        timings["prepare"] = (time.perf_counter() - started) * 1000
        # intra-batch conflicts: the first VM (in batch order) to claim a destination port keeps it
        taken: dict[tuple[str, str], str] = {}
        ready: list[PreparedMigration] = []
        for p in prepared:
            clash = next((taken[c] for c in _claims(p) if c in taken), None)
            if clash is not None:
                report(VmResult(p.plan.vm_id, Outcome.FAIL, f"PolicyConflictError: destination port "
                                f"{p.plan.destination.bridge.name}:{p.plan.destination.port} is also "
                                f"claimed by {clash} in this batch"))
                continue
            taken.update({c: p.plan.vm_id for c in _claims(p)})
            ready.append(p)
        if groups is not None:  # before any export or change: settle what a dead coordinator left
            busy = groups.clear_way([p.plan for p in ready])
            for p in (p for p in ready if p.plan.vm_id in busy):
                report(VmResult(p.plan.vm_id, Outcome.FAIL, f"MigrationInProgressError: VM {p.plan.vm_id}: "
                                f"migration {busy[p.plan.vm_id]} is unfinished (recover it first)"))
            ready = [p for p in ready if p.plan.vm_id not in busy]
        if di is not None:
            export_started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="netmig-batch") as ex:
                ready = [p for p in ex.map(export_one, ready) if p is not None]
            timings["export"] = (time.perf_counter() - export_started) * 1000
        commit_started = time.perf_counter()
        group_pool = SessionPool(ssh=ssh, timeouts=opts.timeouts)
        pools.append(group_pool)
        for number, start in enumerate(range(0, len(ready), max(1, group_size))):
            members = ready[start:start + group_size]
            if dist is not None:
                from netmig.batch_distributed import report_group
                report_group(number, members, dist.commit_group(number, members, group_changes(members)),
                             report)
                continue
            _commit_group(number, members, opts, group_pool, device_parallelism, report, di, groups)
        timings["commit"] = (time.perf_counter() - commit_started) * 1000
    finally:
        opened = sum(p.opened for p in pools)
        for pool in pools:
            pool.close()
        if di is not None:
            di.close()  # every VM's blobs: imported, rolled back or left out
    timings["total"] = (time.perf_counter() - started) * 1000
    ordered = tuple(results[i.vm] for i in todo if i.vm in results)
    return BatchResult(ordered, timings, opened)


BULK_MIN_VMS = 4     # bulk-read a device the batch touches with at least this many VMs ...
BULK_MIN_SHARE = 0.25  # ... making at least this share of the device's hosts (its site's, off a leaf)


def bulk_devices(plans: Sequence[MigrationPlan], topology: Topology) -> dict[str, BulkDevice]:
    """The devices worth reading once for the whole batch, chosen by count: many of the batch's VMs
    touch the device and they are a good share of what it serves (else the VMs' own filtered reads
    cost less than reading the device's containers whole)."""
    touching = Counter(name for p in plans
                       for name in {d.name for d in (*p.source_devices, *p.destination_devices)})
    on_bridge = Counter(h.bridge for h in topology.hosts.values())
    at_site = Counter(h.site for h in topology.hosts.values())
    chosen = {}
    for name, count in touching.items():
        device = topology.devices.get(name)
        served = on_bridge[name] or (at_site[device.site] if device is not None else 0)
        if count >= BULK_MIN_VMS and count >= BULK_MIN_SHARE * served:
            chosen[name] = BulkDevice(name, get_codec(device.codec.value) if device is not None else None)
    return chosen


def _commit_group(number: int, members: list[PreparedMigration], opts: MigrationOptions, pool: SessionPool,
                  parallelism: int, report: Callable[[VmResult], None], di: MiddleBatch | None = None,
                  journal: BatchJournal | None = None) -> None:
    """One group commit; with a ``journal`` the group is journaled and compensable (merged undo)."""
    if not members:
        return
    changes = group_changes(members)
    if di is not None:
        changes = di.extend(members, changes)
    elif journal is not None:
        from netmig.batch_middle import with_merged_undo

        changes = [with_merged_undo(c, members, consume=True) for c in changes]  # a group runs once
    record = journal.group(number, members) if journal is not None else None
    txn = NetworkTransaction(changes, timeouts=opts.timeouts, commit=opts.commit, max_workers=parallelism,
                             session_factory=pool.factory, owns_sessions=False,
                             on_step=record.hook if record is not None else None)
    started = time.perf_counter()
    error: str | None = None
    try:
        if record is not None:
            record.begin(number, members, changes, txn, di)
        outcomes = txn.run()
    except TransactionError as exc:
        error = f"{type(exc).__name__}: group {number} ({len(members)} VMs): {exc}"
        if record is not None:
            record.failed(exc)
    except NetmigError as exc:  # the journal refused the group: nothing was sent
        error = f"{type(exc).__name__}: group {number} ({len(members)} VMs): not journaled: {exc}"
    else:
        if record is not None:
            record.succeeded(outcomes, len(members))
    elapsed = (time.perf_counter() - started) * 1000
    for p in members:
        devices = di.devices(p) if di is not None else tuple(c.endpoint.name for c in p.changes)
        if error is None:
            report(VmResult(p.plan.vm_id, Outcome.SUCCESS, None, devices, number, elapsed))
        else:
            report(VmResult(p.plan.vm_id, Outcome.FAIL, error, devices, number, elapsed))
    log.info("group %d: %d VMs on %d devices, %s in %.0f ms", number, len(members), len(changes),
             "committed" if error is None else "rolled back", elapsed)

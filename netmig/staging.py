"""Pre-staging: the two-phase migration that keeps the VM's suspension short (issue 7).

Phase one, :func:`prepare`, runs while the VM still runs at the source (like live migration's memory
pre-copy): pull, translate, check and encode everything, then stage it on every destination: lock the
candidate, discard, edit-config, validate. The candidates stay locked and hold the change; the sessions
stay open in a :class:`~netmig.sessionpool.SessionPool`.

Phase two, :meth:`Stage.commit`, runs when the VM is suspended: one state-only ``get`` (the codec's state
filter) per source device, diffed against the pre-copy with the timers ignored; only the learned entries
that appeared or changed are translated, encoded and merged onto the staged candidates (entries that went
away are removed from them); then commit confirmed, verify, confirm, in parallel. The result reports
the suspension phase (``timings_ms["suspension"]``) apart from the pre-copy (``timings_ms["pre-copy"]``).

Staging lives in this process: the locks and the staged candidates belong to the open sessions, so the
two phases must run in the same process (``netmig migrate --prestage`` runs both and reports the
suspension time). :meth:`Stage.abort` (or leaving the ``with`` block without committing) discards and
unlocks everywhere; a coordinator that dies between the phases drops its sessions and the devices
release the locks and discard the candidates themselves (RFC 6241 7.5/8.3.5.1).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from netmig.api import new_migration_id
from netmig.codecs.base import Element, VmContext
from netmig.devices import DeviceHandle, handles_for, ssh_policy_for
from netmig.errors import InputError
from netmig.feedback import DeviceOutcome, MigrationResult, Outcome
from netmig.model import PolicyKind, VmBundle
from netmig.model.bundle import DynamicInfo
from netmig.modes.centralized import PreparedMigration, _rules_for, verifier
from netmig.modes.centralized import prepare as prepare_centralized
from netmig.options import MigrationOptions, Mode
from netmig.pull import context_from
from netmig.sessionpool import SessionPool
from netmig.topology import load_topology, resolve
from netmig.topology.model import Topology
from netmig.transaction import DeviceChange, NetworkTransaction, StepHook
from netmig.translate import translate
from netmig.xmlkit import NC_NS, element, fingerprint

__all__ = ["DiDelta", "Stage", "di_delta", "prepare"]

log = logging.getLogger(__name__)

_DI_KINDS = tuple(k for k in PolicyKind if k.is_dynamic)


_CONTENT_FIELDS: dict[type, tuple[str, ...]] = {}


def _content_fields(entry_type: type) -> tuple[str, ...]:
    """The fields of an entry type that are not timers (cached per type)."""
    names = _CONTENT_FIELDS.get(entry_type)
    if names is None:
        timers = set(getattr(entry_type, "TIMERS", ()))
        names = _CONTENT_FIELDS[entry_type] = tuple(f.name for f in dataclasses.fields(entry_type)
                                                    if f.name not in timers)
    return names


def _content(entry: Any) -> tuple[Any, ...]:
    """An entry's values without its timers: what tells a changed entry from one that only aged.

    A plain tuple (no ``dataclasses.replace``, which would re-run the entry's validation)."""
    return tuple(getattr(entry, name) for name in _content_fields(type(entry)))


@dataclass(frozen=True, slots=True)
class DiDelta:
    """Learned state that changed between two reads of one device's (or bundle's) DI."""

    added: VmBundle      # new or changed entries (fresh timers)
    removed: VmBundle    # entries that went away

    @property
    def empty(self) -> bool:
        return not self.added.kinds() and not self.removed.kinds()


def di_delta(before: VmBundle, after: VmBundle) -> DiDelta:
    """What changed in the learned state from ``before`` to ``after`` (timers alone do not count)."""
    added: dict[str, tuple[Any, ...]] = {}
    removed: dict[str, tuple[Any, ...]] = {}
    for kind in _DI_KINDS:
        old = {e.key: _content(e) for e in before.entries(kind)}
        new = after.entries(kind)
        added[kind.attr] = tuple(e for e in new if old.get(e.key) != _content(e))
        keys = {e.key for e in new}
        removed[kind.attr] = tuple(e for e in before.entries(kind) if e.key not in keys)
    base = VmBundle(after.vm_id, identity=after.identity)
    return DiDelta(replace(base, dynamic=DynamicInfo(**added)), replace(base, dynamic=DynamicInfo(**removed)))


def _with_dynamic(bundle: VmBundle, dynamic: Mapping[str, tuple[Any, ...]]) -> VmBundle:
    return replace(bundle, dynamic=replace(bundle.dynamic, **dynamic))


class Stage:
    """A migration staged on its destinations, waiting for the VM's suspension; see the module text."""

    def __init__(self, stage_id: str, prepared: PreparedMigration, txn: NetworkTransaction,
                 pool: SessionPool, handles: Mapping[str, DeviceHandle], options: MigrationOptions, *,
                 owns_pool: bool, timings_ms: dict[str, float]) -> None:
        self.id = stage_id
        self.prepared = prepared
        self._txn = txn
        self._pool = pool
        self._handles = handles
        self._options = options
        self._owns_pool = owns_pool
        self.timings_ms = timings_ms
        self.result: MigrationResult | None = None
        self._open = True
        self._last_state: dict[str, tuple[bytes, VmBundle]] = {}  # per source: (fingerprint, decoded)

    @property
    def vm_id(self) -> str:
        return self.prepared.plan.vm_id

    @property
    def staged(self) -> bool:
        return self._open

    # ------------------------------------------------------------------ phase two
    def _source_contexts(self) -> dict[str, VmContext]:
        plan, prepared = self.prepared.plan, self.prepared
        base = VmContext(plan.vm_id, plan.source.port, default_ttl_s=self._options.seed_ttl_s)
        wide = base
        for bundle in prepared.pulled.values():
            wide = context_from(bundle, wide)
        bridge = plan.source.bridge.name
        return {name: replace(wide, port=plan.source.port if name == bridge else "")
                for name in prepared.pulled}

    def _read_state(self) -> dict[str, VmBundle]:
        """One state-only get per source device that held something of the VM, in parallel.

        A device whose answer has the same canonical bytes as at the last read is not decoded again: its
        bundle from then is reused (the learned state of a few hundred entries costs ~15 ms to decode).
        """
        contexts = self._source_contexts()

        def read(name: str) -> tuple[str, VmBundle]:
            handle, ctx = self._handles[name], contexts[name]
            with self._pool.using(handle.endpoint) as session:
                state = session.get(handle.codec.state_filter(ctx))
            seen = fingerprint(state)
            known = self._last_state.get(name)
            if known is not None and known[0] == seen:
                return name, known[1]
            bundle = handle.codec.decode(_empty_data(), state, ctx).only(_DI_KINDS)
            self._last_state[name] = (seen, bundle)
            return name, bundle

        names = sorted(contexts)
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as workers:
            return dict(workers.map(read, names))

    def _updates(self, fresh: Mapping[str, VmBundle]) -> tuple[dict[str, DeviceChange], dict[str, int]]:
        """Per staged device: the edit adding what changed in the learned state, and its new verifier."""
        prepared, plan = self.prepared, self.prepared.plan
        counts = {"added": 0, "removed": 0}
        if all(di_delta(prepared.pulled[name], bundle).empty for name, bundle in fresh.items()
               if name in prepared.pulled):
            return {}, counts  # nothing learned or forgotten since the pre-copy: the staged change stands
        partners = {(d, PolicyKind(k.value)): dests for (d, k), dests in plan.partners.items()}
        rules = _rules_for(plan)
        merged = {name: _with_dynamic(bundle, {k.attr: fresh[name].entries(k) for k in _DI_KINDS})
                  if name in fresh else bundle for name, bundle in prepared.pulled.items()}
        routed = translate(merged, partners, rules)
        staged = {c.endpoint.name for c in prepared.changes}
        updates: dict[str, DeviceChange] = {}
        for name, check in prepared.checks.items():
            now_there = routed.get(name)
            if now_there is None:
                continue
            keep = check.bundle.kinds() | ({k for k in _DI_KINDS} - set(check.dropped)
                                             - {c.kind for c in check.conflicts})
            change = di_delta(check.bundle, now_there.only(k for k in keep if k.is_dynamic))
            if change.empty:
                continue
            if name not in staged:
                raise InputError(f"{plan.vm_id}: learned state for {name} appeared after the pre-copy and "
                                 "that device was not staged; migrate in one shot")
            handle, ctx = self._handles[name], prepared.contexts[name]
            edit = handle.codec.encode(change.added, ctx)
            if change.removed.kinds():
                removal = handle.codec.encode_removal(change.removed, ctx)
                edit = _merge_configs(edit, removal)
            counts["added"] += sum(change.added.counts().values())
            counts["removed"] += sum(change.removed.counts().values())
            intended = _with_dynamic(check.bundle, {
                k.attr: tuple({e.key: e for e in (*[x for x in check.bundle.entries(k)
                                                      if x not in change.removed.entries(k)],
                                                   *change.added.entries(k))}.values())
                for k in _DI_KINDS})
            old = next(c for c in prepared.changes if c.endpoint.name == name)
            updates[name] = replace(old, edit=edit, verify=verifier(handle.codec, intended, ctx))
        return updates, counts

    def commit(self, *, migration_id: str | None = None) -> MigrationResult:
        """Phase two (the VM is suspended): refresh the learned state, commit everywhere, report.

        Raises a :class:`~netmig.errors.TransactionError` subclass like a one-shot migration; the staged
        candidates are discarded then.
        """
        if not self._open:
            raise InputError(f"stage {self.id} was already committed or aborted")
        self._open = False
        started = time.perf_counter()
        try:
            fresh = self._read_state()
            pulled_at = time.perf_counter()
            updates, counts = self._updates(fresh)
            diffed_at = time.perf_counter()
        except BaseException:
            self._txn.release()
            self._close()
            raise
        try:
            # Confirmed everywhere: the VM may resume now; unlocking and closing are not on its path.
            outcomes: tuple[DeviceOutcome, ...] = self._txn.commit_staged(updates, then=self._close)
        except BaseException:
            self._close()
            raise
        ended = time.perf_counter()
        timings = dict(self.timings_ms)
        timings["suspension"] = (ended - started) * 1000
        timings["suspension.pull-state"] = (pulled_at - started) * 1000
        timings["suspension.diff"] = (diffed_at - pulled_at) * 1000
        timings["suspension.commit"] = (ended - diffed_at) * 1000
        for phase, ms in self._txn.timings_ms.items():
            timings[f"apply.{phase}"] = ms
        log.info("%s: suspension %.1f ms (%d learned entries added, %d removed since the pre-copy)",
                 self.vm_id, timings["suspension"], counts["added"], counts["removed"])
        prepared = self.prepared
        self.result = MigrationResult(migration_id or self.id, self.vm_id, "centralized-prestaged",
                                      Outcome.SUCCESS, outcomes, prepared.moved, prepared.dropped, timings,
                                      prepared.conflicts)
        return self.result

    def abort(self) -> None:
        """Give the staging up: discard and unlock every staged candidate."""
        if not self._open:
            return
        self._open = False
        try:
            self._txn.release()
        finally:
            self._close()

    def _close(self) -> None:
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()


def _empty_data() -> Element:
    """An empty ``<data>`` reply: the config side of a state-only decode."""
    return element(NC_NS, "data")


def _merge_configs(first: Element, second: Element) -> Element:
    """One ``<config>`` holding both edits' top-level containers (same-named containers are kept apart,
    which NETCONF merges on the device)."""
    for child in list(second):
        first.append(child)
    return first


def prepare(vm_id: str, *, source: str, destination: str, topology: Topology | str | Path,
            options: MigrationOptions | None = None, environ: Mapping[str, str] | None = None,
            on_step: StepHook | None = None, pool: SessionPool | None = None,
            stage_id: str | None = None) -> Stage:
    """Phase one: pull, translate, check, and stage everything on the destinations (candidates locked).

    Returns a :class:`Stage`; call :meth:`Stage.commit` at suspension or :meth:`Stage.abort`.
    """
    opts = options if options is not None else MigrationOptions()
    if opts.mode is not Mode.CENTRALIZED or opts.dry_run or opts.cleanup_source:
        raise InputError("pre-staging works in the centralized mode, without --dry-run or --cleanup-source")
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    plan = resolve(topo, vm_id, source, destination)
    ssh = ssh_policy_for(topo, opts.ssh)
    owns = pool is None
    sessions = pool if pool is not None else SessionPool(ssh=ssh, timeouts=opts.timeouts)
    started = time.perf_counter()
    try:
        prepared = prepare_centralized(plan, topo, opts, environ=environ, on_step=on_step, pool=sessions)
        txn = NetworkTransaction(prepared.changes, ssh=ssh, timeouts=opts.timeouts, commit=opts.commit,
                                 on_step=on_step, session_factory=sessions.factory, owns_sessions=False)
        staged_at = time.perf_counter()
        txn.stage()
    except BaseException:
        if owns:
            sessions.close()
        raise
    ended = time.perf_counter()
    timings = dict(prepared.timings_ms)
    timings["stage"] = (ended - staged_at) * 1000
    handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
    stage = Stage(stage_id or new_migration_id(), prepared, txn, sessions, handles, opts, owns_pool=owns,
                  timings_ms=timings)
    try:
        stage._read_state()  # the learned state as staged, decoded now, while the VM still runs
    except BaseException:
        stage.abort()
        raise
    timings["pre-copy"] = (time.perf_counter() - started) * 1000
    return stage

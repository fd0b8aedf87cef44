"""Which VMs of a d-push / d-pull batch group are tried again after the group was rolled back, and in
which groups (issue 7: one VM's failure must not fail the rest of the batch).

A group's VMs share one pending confirmed commit per destination device, and a VM's DI travels in the
devices' follow-up commits of it: a failed transfer cannot be taken out alone, the whole group is
cancelled. :func:`isolate` then tries again without the VMs the failure is attributed to, as new
groups (new group id and persist-ids: ``<group>-r1``, ``<group>-r2``, ...):

* a failure naming VMs (a device's fail report, an associate the bridge refused): those VMs are FAIL
  with their own reason; the others are tried again, together, in one group;
* a failure naming none (a device silent past the feedback deadline, a session lost during the
  transfers): the VMs are split in halves and each half is tried again, recursively, down to the VM
  that fails alone;
* anything else (staging, verify, confirm failed; sessions could not be opened): not tried again.

Bounded: a retry is at most ``max_depth(n)`` (= floor(log2 n) + 1) splits below the group of ``n``
VMs, and the group makes at most ``budget`` retries in all (default ``2 * max_depth(n)``: what finding
one unattributed culprit by halving costs). A rollback that did not complete everywhere (``stuck``
devices) stops the group: nothing more is tried, and every VM not yet moved is FAIL saying so.

Pure logic over a callback that runs one try (:class:`Attempt` is what it reports); no I/O here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Attempt", "Isolated", "isolate", "max_depth"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try of (part of) a group came to.

    ``errors``: per VM of the try, None (moved) or why not. ``blamed``: the VMs a transfer failure is
    attributed to, with the reason. ``unattributed``: a transfer failure attributed to no VM.
    ``retryable``: the try failed only in its transfers and was rolled back on every device.
    ``stuck``: devices where the rollback did not complete (nothing more may be tried)."""

    errors: Mapping[str, str | None]
    blamed: Mapping[str, str] = field(default_factory=dict)
    unattributed: bool = False
    retryable: bool = False
    stuck: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Isolated(Generic[T]):
    """The outcome of a group and its retries: per VM the final error (None: moved), the group ids it
    was tried in (in order), and when its last try ended (ms since the group started)."""

    errors: dict[str, str | None]
    tries: dict[str, tuple[str, ...]]
    ended_ms: dict[str, float]
    retries: int


def max_depth(n: int) -> int:
    """How many times a group of ``n`` VMs may be split: floor(log2 n) + 1."""
    return max(1, n.bit_length())


def isolate(group_id: str, members: Sequence[T], attempt: Callable[[str, Sequence[T]], Attempt],
            vm_of: Callable[[T], str], *, budget: int | None = None) -> Isolated[T]:
    """Run ``attempt(group_id, members)``, then the retries its failures call for (module docstring),
    each as ``attempt("<group_id>-r<k>", part)``, breadth first."""
    started = time.perf_counter()
    depth_limit = max_depth(len(members))
    allowed = 2 * depth_limit if budget is None else max(0, budget)
    errors: dict[str, str | None] = {vm_of(m): None for m in members}
    tries: dict[str, list[str]] = {vm: [] for vm in errors}
    ended: dict[str, float] = {}
    queue: deque[tuple[str, list[T], int]] = deque([(group_id, list(members), 0)])
    retries = 0
    halted: str | None = None
    while queue:
        gid, part, depth = queue.popleft()
        vms = [vm_of(m) for m in part]
        if halted is not None:
            for vm in vms:
                errors[vm] = f"{errors[vm]}; not tried again: {halted}"
            continue
        result = attempt(gid, part)
        now = (time.perf_counter() - started) * 1000
        for vm in vms:
            tries[vm].append(gid)
            errors[vm] = result.errors.get(vm, f"{gid}: no outcome reported for {vm}")
            ended[vm] = now
        if result.stuck:
            halted = f"{gid} was not rolled back on {', '.join(result.stuck)}"
            continue
        failed = [m for m in part if errors[vm_of(m)] is not None]
        if not failed or not result.retryable:
            continue
        rest = [m for m in part if vm_of(m) not in result.blamed]
        if not rest:
            continue
        if result.blamed:
            parts = [rest]
        elif len(rest) > 1 and depth < depth_limit:
            half = (len(rest) + 1) // 2
            parts = [rest[:half], rest[half:]]
        else:
            if len(rest) > 1:
                _note(errors, [vm_of(m) for m in rest], f"not tried again: {depth_limit} splits made")
            continue  # one VM failing alone, for no named reason: its own failure
        if retries + len(parts) > allowed:
            _note(errors, [vm_of(m) for m in rest], f"not tried again: the group's {allowed} retries "
                                                    "are spent")
            continue
        names = []
        for p in parts:
            retries += 1
            names.append(f"{group_id}-r{retries}")
            queue.append((names[-1], p, depth + 1))
        for vm in result.blamed:
            errors[vm] = f"{errors[vm]}; left out, the others tried again as {' and '.join(names)}"
    for vm, error in errors.items():
        if error is not None and len(tries[vm]) > 1:
            errors[vm] = f"{error} (tried in {', '.join(tries[vm])})"
    return Isolated(errors, {vm: tuple(t) for vm, t in tries.items()}, ended, retries)


def _note(errors: dict[str, str | None], vms: Sequence[str], note: str) -> None:
    for vm in vms:
        if errors.get(vm) is not None:
            errors[vm] = f"{errors[vm]}; {note}"

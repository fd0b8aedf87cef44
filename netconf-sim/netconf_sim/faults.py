"""Fault injection for one simulated device: the catalogue behind ``runtime.RpcFaults``.

Per-rpc faults are :class:`FaultRule` values matched against each rpc's operation name:

========================  ==========================================================================
kind                      effect when an rpc matches
========================  ==========================================================================
``latency``               sleep ``delay-s`` before running the operation
``slow-reply``            run the operation, then sleep ``delay-s`` before replying (a commit that takes
                          longer than its confirm timeout: the timer runs while the client waits)
``rpc-error``             reply ``<rpc-error>`` with ``error-tag`` instead of running the operation
``drop-before``           end the session (close the SSH channel) before the operation runs
``drop-after``            run the operation, then end the session: it took effect, the reply is lost
``malformed-reply``       run the operation, reply with bytes that are not well-formed XML
``oversized-reply``       run the operation, reply with a well-formed reply padded to ``size-bytes``
``down``                  the whole device goes down before the operation runs (see below); back up
                          after ``up-after-s`` when given, else at :meth:`DeviceFaults.up`
========================  ==========================================================================

``operation`` is an rpc name (``get``, ``get-config``, ``edit-config``, ``validate``, ``lock``,
``unlock``, ``discard-changes``, ``cancel-commit``, ``close-session``, ...) or one of the commit
flavours: ``commit`` (any commit), ``confirmed-commit`` (a commit with ``<confirmed/>``),
``confirming-commit`` (a commit without ``<confirmed/>``: confirms a pending one, with or without
``<persist-id>``). ``None`` or ``"*"`` matches every rpc. ``nth`` fires the rule on the Nth matching rpc
only (counted per rule since it was set); without it the rule fires on every match.

Device-level faults are methods of :class:`DeviceFaults`: :meth:`~DeviceFaults.hold_lock` (another,
fake session holds a datastore lock), :meth:`~DeviceFaults.down` and :meth:`~DeviceFaults.up`.

Down: the listener is closed and every session dropped. ``reboot=True`` (default) behaves like a
reboot: every pending confirmed commit rolls back, persistent or not (RFC 6241 8.4: the server restores
the earlier configuration if it reboots before the commit is confirmed). ``reboot=False`` is a network
partition: sessions drop, so a non-persistent confirmed commit rolls back as its session is gone, but a
persistent one stays pending with its timer running and can be confirmed or cancelled once the device
is back up. Up: the listener is opened again on the same port with the same host key.

Rules and device faults are set from any thread; rpc-side work runs on the fabric's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lxml import etree

from .rpcerror import SimRpcError
from .runtime import DeviceRuntime, RpcContext
from .xml import NC_NS, Element, qname

__all__ = ["FAULT_KINDS", "DeviceFaults", "DevicePower", "FaultRule", "rule_from_mapping"]

log = logging.getLogger(__name__)

FAULT_KINDS = frozenset({"latency", "slow-reply", "rpc-error", "drop-before", "drop-after",
                         "malformed-reply", "oversized-reply", "down"})
ERROR_TAGS = frozenset({"in-use", "invalid-value", "too-big", "missing-attribute", "bad-attribute",
                        "unknown-attribute", "missing-element", "bad-element", "unknown-element",
                        "unknown-namespace", "access-denied", "lock-denied", "resource-denied",
                        "rollback-failed", "data-exists", "data-missing", "operation-not-supported",
                        "operation-failed", "malformed-message"})
FAKE_LOCK_SESSION = 4_000_000_000  # never handed out by DeviceRuntime.register in a simulator's lifetime
_KEYS = {"kind", "operation", "error-tag", "nth", "delay-s", "size-bytes", "up-after-s", "reboot", "message"}


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One per-rpc fault; see the module docstring for kinds and operation names."""

    kind: str
    operation: str | None = None
    error_tag: str = "operation-failed"
    nth: int | None = None
    delay_s: float = 0.0
    size_bytes: int = 8 * 1024 * 1024
    up_after_s: float | None = None
    reboot: bool = True
    message: str = "injected fault"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(sorted(FAULT_KINDS))})")
        if self.error_tag not in ERROR_TAGS:
            raise ValueError(f"unknown error-tag {self.error_tag!r}")
        if self.nth is not None and self.nth < 1:
            raise ValueError("nth must be at least 1")
        if self.delay_s < 0 or (self.up_after_s is not None and self.up_after_s < 0):
            raise ValueError("delays must not be negative")
        if self.size_bytes < 1:
            raise ValueError("size-bytes must be positive")

    def matches(self, names: frozenset[str]) -> bool:
        return self.operation in (None, "*") or self.operation in names


def rule_from_mapping(raw: Mapping[str, Any]) -> FaultRule:
    """A rule from its fabric-file form (``kind``, ``operation``, ``error-tag``, ``nth``, ``delay-s``,
    ``size-bytes``, ``up-after-s``, ``reboot``, ``message``); raises ValueError naming the problem."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    if not isinstance(raw.get("kind"), str):
        raise ValueError("kind is missing")

    def number(key: str, kind: type) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and
                                                                               not isinstance(value, int)):
            raise ValueError(f"{key} must be a {'whole ' if kind is int else ''}number")
        return kind(value)

    operation = raw.get("operation")
    if operation is not None and not isinstance(operation, str):
        raise ValueError("operation must be a string")
    reboot = raw.get("reboot", True)
    if not isinstance(reboot, bool):
        raise ValueError("reboot must be true or false")
    kwargs: dict[str, Any] = {"kind": raw["kind"], "operation": operation, "reboot": reboot,
                              "nth": number("nth", int), "up_after_s": number("up-after-s", float)}
    for key, attr, kind in (("delay-s", "delay_s", float), ("size-bytes", "size_bytes", int)):
        if (value := number(key, kind)) is not None:
            kwargs[attr] = value
    for key, attr in (("error-tag", "error_tag"), ("message", "message")):
        if key in raw:
            kwargs[attr] = str(raw[key])
    return FaultRule(**kwargs)


class DevicePower(Protocol):
    """Takes a device's listener down and up (``fabric.SimDevice`` implements it); runs on its loop."""

    loop: asyncio.AbstractEventLoop | None

    async def power_off(self, *, reboot: bool) -> None: ...
    async def power_on(self) -> None: ...


def operation_names(ctx: RpcContext) -> frozenset[str]:
    """The names an rpc answers to: its operation, plus the commit flavour for a commit."""
    if ctx.operation != "commit":
        return frozenset({ctx.operation})
    ops = [c for c in ctx.rpc if isinstance(c.tag, str)]
    confirmed = bool(ops) and ops[0].find(qname(NC_NS, "confirmed")) is not None
    return frozenset({"commit", "confirmed-commit" if confirmed else "confirming-commit"})


@dataclass(slots=True)
class _Armed:
    rule: FaultRule
    seen: int = 0


@dataclass(slots=True)
class DeviceFaults:
    """The faults of one device: per-rpc rules (an ``RpcFaults`` for its runtime) and device faults."""

    name: str = "device"
    runtime: DeviceRuntime | None = None
    power: DevicePower | None = None
    _rules: list[_Armed] = field(default_factory=list)
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _held: set[str] = field(default_factory=set)
    fired: list[tuple[str, str]] = field(default_factory=list)  # (kind, operation) of each fault fired
    # Rules to apply once the operation ran, per rpc in flight (keyed by its context object's id).
    _after: dict[int, list[FaultRule]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- run-time API ---------------------------------------------------------------------------
    def set(self, *rules: FaultRule, **one: Any) -> None:
        """Replace the rules: ``set(FaultRule(...), ...)`` or ``set(kind="rpc-error", operation=...)``."""
        new = list(rules) + ([FaultRule(**one)] if one else [])
        with self._mutex:
            self._rules = [_Armed(r) for r in new]

    def add(self, rule: FaultRule) -> None:
        with self._mutex:
            self._rules.append(_Armed(rule))

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        with self._mutex:
            return tuple(a.rule for a in self._rules)

    def clear(self) -> None:
        """Remove every rule and release held locks (a device that is down stays down: call up())."""
        with self._mutex:
            self._rules = []
        for datastore in list(self._held):
            self.release_lock(datastore)

    def hold_lock(self, datastore: str = "candidate") -> int:
        """Another session (a fake one, id ``FAKE_LOCK_SESSION``) holds ``datastore``'s lock."""
        rt = self._need_runtime()
        holder = rt.locks.get(datastore)
        if holder is not None and holder != FAKE_LOCK_SESSION:
            raise RuntimeError(f"{self.name}: {datastore} is already locked by session {holder}")
        rt.locks[datastore] = FAKE_LOCK_SESSION
        self._held.add(datastore)
        return FAKE_LOCK_SESSION

    def release_lock(self, datastore: str = "candidate") -> None:
        rt = self._need_runtime()
        if rt.locks.get(datastore) == FAKE_LOCK_SESSION:
            del rt.locks[datastore]
        self._held.discard(datastore)

    def down(self, *, reboot: bool = True) -> None:
        """Take the device down now (blocking; from any thread but the fabric's loop)."""
        self._blocking(self._need_power().power_off(reboot=reboot))

    def up(self) -> None:
        """Bring the device back up on the same port (blocking; from any thread but the fabric's loop)."""
        self._blocking(self._need_power().power_on())

    # -- RpcFaults --------------------------------------------------------------------------------
    async def before_rpc(self, ctx: RpcContext) -> Element | bytes | None:
        reply = await self._before(ctx)
        if reply is not None or ctx.session.closed:
            self._after.pop(id(ctx), None)  # the operation will not run: nothing to do after it
        return reply

    async def _before(self, ctx: RpcContext) -> Element | None:
        for rule in self._firing(ctx):
            log.info("%s: fault %s on %s (session %d)", self.name, rule.kind, ctx.operation,
                     ctx.session.session_id)
            if rule.kind == "latency":
                await asyncio.sleep(rule.delay_s)
            elif rule.kind == "rpc-error":
                err = SimRpcError("application", rule.error_tag, message=rule.message)
                return _reply_to(ctx.rpc, [err.to_element()])
            elif rule.kind == "drop-before":
                ctx.session.abort()
                return None
            elif rule.kind == "down":
                await self._go_down(rule)  # listener closed first, then every session (this one too)
                ctx.session.abort()
                return None
            else:
                self._after.setdefault(id(ctx), []).append(rule)
        return None

    async def after_rpc(self, ctx: RpcContext, reply: Element) -> Element | bytes | None:
        out: Element | bytes | None = None
        for rule in self._after.pop(id(ctx), []):
            if rule.kind == "slow-reply":
                await asyncio.sleep(rule.delay_s)
            elif rule.kind == "drop-after":
                ctx.session.abort()
            elif rule.kind == "malformed-reply":
                out = _malformed(ctx.rpc)
            elif rule.kind == "oversized-reply":
                out = _padded(reply, rule.size_bytes)
        return out

    # -- internals --------------------------------------------------------------------------------
    def _firing(self, ctx: RpcContext) -> list[FaultRule]:
        names = operation_names(ctx)
        fired: list[FaultRule] = []
        with self._mutex:
            for armed in self._rules:
                if not armed.rule.matches(names):
                    continue
                armed.seen += 1
                if armed.rule.nth is None or armed.seen == armed.rule.nth:
                    fired.append(armed.rule)
        for rule in fired:
            self.fired.append((rule.kind, ctx.operation))
        return fired

    async def _go_down(self, rule: FaultRule) -> None:
        power = self._need_power()
        await power.power_off(reboot=rule.reboot)
        if rule.up_after_s is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(rule.up_after_s, lambda: self._spawn(loop, power.power_on()))

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _need_runtime(self) -> DeviceRuntime:
        if self.runtime is None:
            raise RuntimeError(f"{self.name}: faults are not attached to a device runtime")
        return self.runtime

    def _need_power(self) -> DevicePower:
        if self.power is None:
            raise RuntimeError(f"{self.name}: faults are not attached to a running device")
        return self.power

    def _blocking(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._need_power().loop
        if loop is None:
            coro.close()
            raise RuntimeError(f"{self.name}: the device is not running")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)


def _reply_to(rpc: Element, body: list[Element]) -> Element:
    reply = etree.Element(qname(NC_NS, "rpc-reply"), nsmap={None: NC_NS})
    for key, value in rpc.attrib.items():
        reply.set(key, value)
    reply.extend(body)
    return reply


def _malformed(rpc: Element) -> bytes:
    """A reply to ``rpc`` that is not well-formed XML (unclosed element, undefined entity)."""
    mid = (rpc.get("message-id") or "").replace('"', "")
    return (f'<?xml version="1.0" encoding="UTF-8"?><rpc-reply xmlns="{NC_NS}" message-id="{mid}">'
            "<data>&bogus;<unclosed></rpc-reply").encode()


def _padded(reply: Element, size_bytes: int) -> bytes:
    """``reply`` serialised with an XML comment inside making it ``size_bytes`` long (at least)."""
    body = etree.tostring(reply, xml_declaration=True, encoding="UTF-8")
    pad = max(0, size_bytes - len(body) - 7)
    cut = body.rindex(b"</")
    return body[:cut] + b"<!--" + b" " * pad + b"-->" + body[cut:]

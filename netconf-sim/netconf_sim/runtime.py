"""Per-device state shared by a device's NETCONF sessions.

Locks per datastore, the pending confirmed commit (snapshot, timer, persist-id, owning session),
notification subscribers, the session table (for kill-session) and the capability list of the hello.
Data operations stay in the engine; this module only decides who may run them and when to roll back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from lxml import etree

from .rpcerror import SimRpcError
from .xml import NC_NS, Element, qname

if TYPE_CHECKING:
    from .nacm import Nacm
    from .session import Session

__all__ = [
    "BASE_10",
    "BASE_11",
    "NCN_NS",
    "NOTIF_NS",
    "SERVER_CAPABILITIES",
    "DeviceRuntime",
    "EngineLike",
    "MigrationHandler",
    "PendingCommit",
    "RpcContext",
    "RpcFaults",
]

log = logging.getLogger(__name__)

BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
NCN_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
_CAP = "urn:ietf:params:netconf:capability:"
SERVER_CAPABILITIES = (
    BASE_10, BASE_11,
    _CAP + "candidate:1.0", _CAP + "confirmed-commit:1.1", _CAP + "rollback-on-error:1.0",
    _CAP + "validate:1.1", _CAP + "startup:1.0", _CAP + "xpath:1.0",
    _CAP + "notification:1.0", _CAP + "interleave:1.0",
)
_YANG_LIBRARY_CAP = _CAP + "yang-library:1.0"
# Modules whose operations or notifications the session layer implements itself.
_SESSION_MODULES = (
    "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring?module=ietf-netconf-monitoring&revision=2010-10-04",
    NCN_NS + "?module=ietf-netconf-notifications&revision=2012-02-06",
)


class EngineLike(Protocol):
    """The part of ``engine.DeviceEngine`` the sessions use."""

    @property
    def capabilities(self) -> list[str]: ...
    def get_config(self, source: str, filter: Element | None) -> Element: ...
    def get(self, filter: Element | None) -> Element: ...
    def edit_config(self, target: str, config: Element, *, default_operation: str = ...,
                    test_option: str = ..., error_option: str = ...) -> None: ...
    def copy_config(self, target: str, source: str | Element) -> None: ...
    def delete_config(self, target: str) -> None: ...
    def validate(self, source: str | Element) -> None: ...
    def commit(self) -> list[str]: ...
    def commit_keeping_previous(self) -> tuple[list[str], Element]: ...
    def discard_changes(self) -> None: ...
    def list_entry(self, store: str, path: tuple[str, ...], key: dict[str, str]) -> Element | None: ...
    def candidate_dirty(self) -> bool: ...
    def snapshot_running(self) -> Element: ...
    def restore_running(self, snap: Element) -> None: ...
    def get_schema(self, identifier: str, version: str | None, fmt: str) -> str: ...


@dataclass(slots=True)
class RpcContext:
    """What a fault hook sees of one rpc."""

    session: Session
    operation: str
    rpc: Element


class MigrationHandler(Protocol):
    """The netmig-migration operations of a device (``migration.MigrationAgent``); None: not supported."""

    def dispatch(self, session: Session, op: Element) -> list[Element]: ...


class RpcFaults(Protocol):
    """Fault-injection hook consulted around every rpc (the catalogue lives elsewhere).

    ``before_rpc`` may return a complete ``<rpc-reply>`` to send instead of running the operation, or
    call ``ctx.session.abort()``; ``after_rpc`` may return a replacement reply. Both may sleep. A reply
    given as ``bytes`` is framed and sent as is (malformed or oversized replies).
    """

    async def before_rpc(self, ctx: RpcContext) -> Element | bytes | None: ...
    async def after_rpc(self, ctx: RpcContext, reply: Element) -> Element | bytes | None: ...


@dataclass(slots=True)
class PendingCommit:
    """A confirmed commit waiting for its confirming commit."""

    snapshot: Element
    owner: int
    persist_id: str | None
    timer: asyncio.TimerHandle


def _error(tag: str, message: str, *, error_type: str = "protocol", info: dict[str, str] | None = None
           ) -> SimRpcError:
    return SimRpcError(error_type, tag, message=message, info=info)


class DeviceRuntime:
    """Session-level state of one simulated device."""

    def __init__(self, engine: EngineLike, *, name: str = "device", faults: RpcFaults | None = None) -> None:
        self.engine = engine
        self.name = name
        self.faults = faults
        self.sessions: dict[int, Session] = {}
        self.locks: dict[str, int] = {}
        self.pending: PendingCommit | None = None
        self.migration: MigrationHandler | None = None
        self.nacm: Nacm | None = None  # RFC 8341 access control (session.py enforces it); None: off
        self._next_id = 1
        self._capabilities: list[str] | None = None

    # -- sessions -------------------------------------------------------------------------------
    def register(self, session: Session) -> int:
        """A new session id (never reused within this runtime)."""
        sid = self._next_id
        self._next_id += 1
        self.sessions[sid] = session
        return sid

    def capabilities(self) -> list[str]:
        """Protocol capabilities, then the engine's module capabilities, then yang-library."""
        if self._capabilities is None:
            caps = list(SERVER_CAPABILITIES)
            caps += [c for c in self.engine.capabilities if c not in caps]
            have = {c.split("?")[0] for c in caps}
            caps += [m for m in _SESSION_MODULES if m.split("?")[0] not in have]
            if not any(c.startswith(_YANG_LIBRARY_CAP) for c in caps):
                digest = hashlib.sha256("\n".join(sorted(caps)).encode()).hexdigest()[:16]
                caps.append(f"{_YANG_LIBRARY_CAP}?revision=2016-06-21&module-set-id={digest}")
            self._capabilities = caps
        return self._capabilities

    def hello(self, session_id: int) -> Element:
        hello = etree.Element(qname(NC_NS, "hello"), nsmap={None: NC_NS})
        caps = etree.SubElement(hello, qname(NC_NS, "capabilities"))
        for cap in self.capabilities():
            etree.SubElement(caps, qname(NC_NS, "capability")).text = cap
        etree.SubElement(hello, qname(NC_NS, "session-id")).text = str(session_id)
        return hello

    def kill(self, target: int, by: int) -> None:
        if target == by:
            raise _error("invalid-value", "a session cannot kill itself; use close-session",
                         info={"bad-element": "session-id"})
        session = self.sessions.get(target)
        if session is None:
            raise _error("invalid-value", f"no session {target}", info={"bad-element": "session-id"})
        log.info("%s: session %d killed by session %d", self.name, target, by)
        session.abort()

    def session_ended(self, session: Session) -> None:
        """Release the session's locks (discarding an abandoned candidate), subscription and commit."""
        sid = session.session_id
        self.sessions.pop(sid, None)
        for datastore in [d for d, holder in self.locks.items() if holder == sid]:
            self._release(datastore)
        pending = self.pending
        if pending is not None and pending.persist_id is None and pending.owner == sid:
            self._rollback(f"session {sid} ended before confirming its commit")

    def shutdown(self) -> None:
        """Stop timers and end every session; a pending confirmed commit is rolled back."""
        for session in list(self.sessions.values()):
            session.abort()
        if self.pending is not None:
            self._rollback("device shutting down")

    # -- locks ----------------------------------------------------------------------------------
    def lock(self, datastore: str, sid: int) -> None:
        holder = self.locks.get(datastore)
        if holder is not None:
            raise _error("lock-denied", f"{datastore} is locked by session {holder}",
                         info={"session-id": str(holder)})
        if datastore == "candidate" and self.engine.candidate_dirty():
            raise _error("resource-denied", "the candidate has uncommitted changes; discard them first")
        self.locks[datastore] = sid

    def unlock(self, datastore: str, sid: int) -> None:
        if self.locks.get(datastore) != sid:
            raise _error("operation-failed", f"{datastore} is not locked by this session")
        self._release(datastore)

    def check_unlocked(self, datastore: str, sid: int) -> None:
        """Raise in-use when another session holds ``datastore``'s lock."""
        holder = self.locks.get(datastore)
        if holder is not None and holder != sid:
            raise _error("in-use", f"{datastore} is locked by session {holder}")

    def _release(self, datastore: str) -> None:
        del self.locks[datastore]
        if datastore == "candidate":
            try:
                self.engine.discard_changes()
            except SimRpcError as exc:
                log.warning("%s: discarding the released candidate failed: %s", self.name, exc)

    # -- commit ---------------------------------------------------------------------------------
    def commit(self, session: Session, *, confirmed: bool, timeout_s: int, persist: str | None,
               persist_id: str | None) -> None:
        """Plain, confirmed, follow-up or confirming commit (RFC 6241 8.4)."""
        sid = session.session_id
        self.check_unlocked("running", sid)
        self.check_unlocked("candidate", sid)
        if persist is not None and not confirmed:
            raise _error("invalid-value", "persist needs confirmed", info={"bad-element": "persist"})
        pending = self.pending
        if pending is not None:
            if confirmed and persist_id is None and pending.owner != sid:  # a new change, not a follow-up:
                raise _error("in-use", f"a confirmed commit of session {pending.owner} is pending",  # wait
                             info={"session-id": str(pending.owner)})
            self._check_may_settle(pending, sid, persist_id)
        elif persist_id is not None:
            raise _error("invalid-value", "no confirmed commit is pending for this persist-id",
                         info={"bad-element": "persist-id"})
        snapshot: Element | None = None
        if pending is not None:
            snapshot = pending.snapshot
            changed = self.engine.commit()
        elif confirmed:
            changed, snapshot = self.engine.commit_keeping_previous()  # no copy of running on this path
        else:
            changed = self.engine.commit()
        if pending is not None:
            pending.timer.cancel()
            self.pending = None
        if confirmed and snapshot is not None:
            timer = asyncio.get_running_loop().call_later(timeout_s, self._expire)
            self.pending = PendingCommit(snapshot, sid, persist or None, timer)
            log.info("%s: confirmed commit by session %d, %d s to confirm", self.name, sid, timeout_s)
        if changed:
            self._notify(session, changed)

    def cancel_commit(self, session: Session, persist_id: str | None) -> None:
        pending = self.pending
        if pending is None:
            raise _error("operation-failed", "no confirmed commit is pending", error_type="application")
        self._check_may_settle(pending, session.session_id, persist_id)
        self._rollback(f"cancel-commit by session {session.session_id}")

    def _check_may_settle(self, pending: PendingCommit, sid: int, persist_id: str | None) -> None:
        if pending.persist_id is not None:
            if persist_id is None:
                raise _error("operation-failed", "a persistent confirmed commit is pending: "
                             "give its persist-id", error_type="application")
            if persist_id != pending.persist_id:
                raise _error("invalid-value", "persist-id does not match the pending confirmed commit",
                             info={"bad-element": "persist-id"})
        elif persist_id is not None:
            raise _error("invalid-value", "the pending confirmed commit has no persist-id",
                         info={"bad-element": "persist-id"})
        elif pending.owner != sid:
            raise _error("in-use", f"a confirmed commit of session {pending.owner} is pending")

    def _expire(self) -> None:
        self._rollback("confirm-timeout expired")

    def _rollback(self, reason: str) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        pending.timer.cancel()
        try:
            self.engine.restore_running(pending.snapshot)
        except Exception:  # a timer callback must not die silently: log and carry on
            log.exception("%s: rollback failed (%s)", self.name, reason)
            return
        log.info("%s: confirmed commit rolled back: %s", self.name, reason)
        self._notify(None, [])

    # -- notifications ----------------------------------------------------------------------------
    def subscribe(self, session: Session, *, stream: str | None, start_time: str | None) -> None:
        if stream not in (None, "NETCONF"):
            raise _error("invalid-value", f"no stream {stream}; only NETCONF", error_type="application",
                         info={"bad-element": "stream"})
        if start_time is not None:
            raise _error("operation-failed", "replay is not supported", error_type="application",
                         info={"bad-element": "startTime"})
        if session.subscribed:
            raise _error("operation-failed", "this session already has a subscription",
                         error_type="application")
        session.subscribed = True

    def _notify(self, by: Session | None, changed: list[str]) -> None:
        subscribers = [s for s in self.sessions.values() if s.subscribed]
        if not subscribers:
            return
        note = config_change_notification(by, changed)
        for session in subscribers:
            session.send_notification(note)


def config_change_notification(by: Session | None, changed: list[str]) -> Element:
    """An RFC 6470 ``netconf-config-change`` for running, by a session or by the server itself."""
    note = etree.Element(qname(NOTIF_NS, "notification"), nsmap={None: NOTIF_NS})
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    etree.SubElement(note, qname(NOTIF_NS, "eventTime")).text = stamp
    change = etree.SubElement(note, qname(NCN_NS, "netconf-config-change"), nsmap={None: NCN_NS})
    by_el = etree.SubElement(change, qname(NCN_NS, "changed-by"))
    if by is None:
        etree.SubElement(by_el, qname(NCN_NS, "server"))
    else:
        etree.SubElement(by_el, qname(NCN_NS, "username")).text = by.username
        etree.SubElement(by_el, qname(NCN_NS, "session-id")).text = str(by.session_id)
        if by.source_host:
            etree.SubElement(by_el, qname(NCN_NS, "source-host")).text = by.source_host
    etree.SubElement(change, qname(NCN_NS, "datastore")).text = "running"
    for path in changed:
        edit = etree.SubElement(change, qname(NCN_NS, "edit"))
        etree.SubElement(edit, qname(NCN_NS, "target")).text = path
        etree.SubElement(edit, qname(NCN_NS, "operation")).text = "replace"
    return note

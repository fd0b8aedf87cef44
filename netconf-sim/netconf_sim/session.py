"""One NETCONF session (RFC 6241) over any byte transport, and the per-device state sessions share.

:class:`Session` speaks hello, framing and rpc/rpc-reply; the operations that touch session state
(lock, unlock, commit with ``:confirmed-commit:1.1``, cancel-commit, close/kill-session,
create-subscription) run against a per-device :class:`DeviceRuntime`; every data operation is delegated
to the device engine, whose :class:`SimRpcError` becomes an ``<rpc-error>``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from lxml import etree

from .framing import FrameDecoder, FrameEncoder, FramingError
from .rpcerror import SimRpcError
from .runtime import BASE_10, BASE_11, NOTIF_NS, DeviceRuntime, RpcContext, RpcFaults
from .xml import MONITORING_NS, NC_NS, Element, XmlInputError, parse, qname

__all__ = ["RpcContext", "RpcFaults", "Session", "Transport"]

log = logging.getLogger(__name__)

MIGRATION_NS = "urn:netmig:yang:netmig-migration"  # netmig-migration RPCs, see migration.py
DATASTORES = frozenset({"running", "candidate", "startup"})
_ENUMS = {
    "default-operation": ("merge", frozenset({"merge", "replace", "none"})),
    "test-option": ("test-then-set", frozenset({"test-then-set", "set", "test-only"})),
    "error-option": ("stop-on-error", frozenset({"stop-on-error", "continue-on-error", "rollback-on-error"})),
}


class Transport(Protocol):
    """Where a session writes; server.py adapts an SSH channel to this."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class Session:
    """One NETCONF session: :meth:`start`, then :meth:`data_received` until :meth:`connection_lost`."""

    def __init__(self, runtime: DeviceRuntime, transport: Transport, *, username: str = "",
                 source_host: str | None = None, hello_timeout_s: float = 60.0,
                 max_message_bytes: int = 32 * 1024 * 1024) -> None:
        self.runtime = runtime
        self.transport = transport
        self.username = username
        self.source_host = source_host
        self.session_id = runtime.register(self)
        self.subscribed = False
        self._decoder = FrameDecoder(max_message_bytes=max_message_bytes)
        self._encoder = FrameEncoder()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._hello_done = False
        self._hello_queued = False
        self._closed = False
        self._hello_timeout_s = hello_timeout_s
        self._worker: asyncio.Task[None] | None = None
        self._hello_timer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    # -- transport side -------------------------------------------------------------------------
    def start(self) -> None:
        """Send the server hello and start reading."""
        loop = asyncio.get_running_loop()
        self._send(self.runtime.hello(self.session_id))
        self._worker = loop.create_task(self._run(), name=f"netconf-{self.runtime.name}-{self.session_id}")
        self._hello_timer = loop.call_later(self._hello_timeout_s, self._hello_expired)

    def data_received(self, data: bytes) -> None:
        """Bytes from the client; complete messages are queued in order."""
        if self._closed:
            return
        self._decoder.feed(data)
        self._drain()

    def _drain(self) -> None:
        try:
            # Stop behind the client hello: the framing may switch to chunked once it is read.
            while not self._hello_queued and (message := self._decoder.pop()) is not None:
                self._queue.put_nowait(message)
                self._hello_queued = not self._hello_done
        except FramingError as exc:
            log.warning("%s session %d: framing error: %s", self.runtime.name, self.session_id, exc)
            self.abort()

    def connection_lost(self) -> None:
        """The transport went away: release everything the session held."""
        self._finish()

    def abort(self) -> None:
        """End the session now (kill-session, framing error, fault injection)."""
        self._finish()
        self.transport.close()

    def send_notification(self, notification: Element) -> None:
        if not self._closed and self._hello_done:
            self._send(notification)

    # -- internals ------------------------------------------------------------------------------
    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()
        self.runtime.session_ended(self)

    def _hello_expired(self) -> None:
        if not self._hello_done:
            log.info("%s session %d: no client hello in time", self.runtime.name, self.session_id)
            self.abort()

    def _send(self, element: Element) -> None:
        data = etree.tostring(element, xml_declaration=True, encoding="UTF-8")
        self.transport.write(self._encoder.encode(data))

    async def _run(self) -> None:
        while not self._closed:
            message = await self._queue.get()
            if not self._hello_done:
                if message.strip():
                    self._on_hello(message)
                if not self._closed:
                    self._hello_queued = False
                    self._drain()  # decode what arrived behind the hello, in the new framing
            elif message.strip():
                await self._on_rpc(message)

    def _on_hello(self, message: bytes) -> None:
        try:
            hello = parse(message)
        except XmlInputError as exc:
            log.info("%s session %d: bad hello: %s", self.runtime.name, self.session_id, exc)
            self.abort()
            return
        caps = hello.find(qname(NC_NS, "capabilities"))
        found = [] if caps is None else caps.iter(qname(NC_NS, "capability"))
        names = {(c.text or "").strip() for c in found}
        if (hello.tag != qname(NC_NS, "hello") or hello.find(qname(NC_NS, "session-id")) is not None
                or not names & {BASE_10, BASE_11}):
            log.info("%s session %d: refused client hello", self.runtime.name, self.session_id)
            self.abort()
            return
        self._hello_done = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if BASE_11 in names:
            self._decoder.set_chunked()
            self._encoder.chunked = True

    async def _on_rpc(self, message: bytes) -> None:
        try:
            rpc = parse(message)
        except XmlInputError as exc:
            self._send(_reply(None, [SimRpcError("rpc", "malformed-message", message=str(exc)).to_element()]))
            return
        if rpc.tag != qname(NC_NS, "rpc"):
            err = SimRpcError("protocol", "unknown-element", message="expected <rpc>",
                              info={"bad-element": etree.QName(rpc).localname})
            self._send(_reply(None, [err.to_element()]))
            return
        if rpc.get("message-id") is None:
            self._send(_reply(rpc, [_missing_message_id()]))
            return
        ops = [c for c in rpc if isinstance(c.tag, str)]
        name = etree.QName(ops[0]).localname if len(ops) == 1 else ""
        ctx = RpcContext(self, name, rpc)
        faults = self.runtime.faults
        reply: Element | bytes | None = await faults.before_rpc(ctx) if faults is not None else None
        if self._closed:
            return
        if reply is None:
            try:
                if len(ops) != 1:
                    raise SimRpcError("protocol", "malformed-message",
                                      message="an rpc holds exactly one operation")
                body = self._dispatch(ops[0])
            except SimRpcError as exc:
                body = exc.to_elements()
            except Exception:  # fault barrier: a bug in one operation must not hang the session
                log.exception("%s session %d: %s failed", self.runtime.name, self.session_id, name)
                body = [SimRpcError.operation_failed(f"internal error in {name}").to_element()]
            built = _reply(rpc, body)
            reply = await faults.after_rpc(ctx, built) if faults is not None else None
            reply = built if reply is None else reply
        if self._closed:
            return
        if isinstance(reply, bytes):
            self.transport.write(self._encoder.encode(reply))  # injected fault: sent as is
            return
        self._send(reply)
        if name == "close-session" and reply.find(qname(NC_NS, "ok")) is not None:
            self._finish()
            self.transport.close()

    def _dispatch(self, op: Element) -> list[Element]:
        """Run one operation; returns the reply's children (empty means ``<ok/>``)."""
        ns, name = etree.QName(op).namespace, etree.QName(op).localname
        rt, engine, sid = self.runtime, self.runtime.engine, self.session_id
        nacm = rt.nacm if rt.nacm is not None and rt.nacm.enabled else None
        if nacm is not None:  # RFC 8341: protocol operation access (close-session is always allowed)
            nacm.check_rpc(self.username, ns, name)
        if ns == NOTIF_NS and name == "create-subscription":
            rt.subscribe(self, stream=_text(op, "stream", NOTIF_NS),
                         start_time=_text(op, "startTime", NOTIF_NS))
            return []
        if ns == MONITORING_NS and name == "get-schema":
            ident = _text(op, "identifier", MONITORING_NS)
            if not ident:
                raise SimRpcError.missing_element("identifier", error_type="protocol")
            fmt = (_text(op, "format", MONITORING_NS) or "yang").rpartition(":")[2]
            text = engine.get_schema(ident, _text(op, "version", MONITORING_NS) or None, fmt)
            data = etree.Element(qname(MONITORING_NS, "data"), nsmap={None: MONITORING_NS})
            data.text = text
            return [data]
        if ns == MIGRATION_NS and rt.migration is not None:
            return rt.migration.dispatch(self, op)
        if ns != NC_NS:
            raise SimRpcError.operation_not_supported(f"unknown operation {name} in {ns}")
        if name == "get":
            data = engine.get(op.find(qname(NC_NS, "filter")))
            return [nacm.filter_read(self.username, data) if nacm is not None else data]
        if name == "get-config":
            data = engine.get_config(_datastore(op, "source"), op.find(qname(NC_NS, "filter")))
            return [nacm.filter_read(self.username, data) if nacm is not None else data]
        if name == "edit-config":
            target = _datastore(op, "target")
            rt.check_unlocked(target, sid)
            config = op.find(qname(NC_NS, "config"))
            if config is None:
                if op.find(qname(NC_NS, "url")) is not None:
                    raise SimRpcError.operation_not_supported(":url is not supported")
                raise SimRpcError.missing_element("config", error_type="protocol")
            options = {k.replace("-", "_"): _enum(op, k) for k in _ENUMS}
            if nacm is not None and target in DATASTORES:  # data write access, before anything changes
                nacm.check_edit(self.username, engine.get_config(target, None), config,
                                default_operation=options["default_operation"],
                                error_option=options["error_option"])
            engine.edit_config(target, config, **options)
            return []
        if name == "copy-config":
            target = _datastore(op, "target")
            rt.check_unlocked(target, sid)
            source = _source(op)
            if nacm is not None:
                after = engine.get_config(source, None) if isinstance(source, str) else source
                nacm.check_write(self.username, engine.get_config(target, None), after)
            engine.copy_config(target, source)
            return []
        if name == "delete-config":
            target = _datastore(op, "target")
            rt.check_unlocked(target, sid)
            engine.delete_config(target)
            return []
        if name == "validate":
            engine.validate(_source(op))
            return []
        if name == "discard-changes":
            rt.check_unlocked("candidate", sid)
            engine.discard_changes()
            return []
        if name == "commit":
            timeout = _text(op, "confirm-timeout")
            rt.commit(self, confirmed=op.find(qname(NC_NS, "confirmed")) is not None,
                      timeout_s=_uint32(timeout, "confirm-timeout") if timeout is not None else 600,
                      persist=_text(op, "persist"), persist_id=_text(op, "persist-id"))
            return []
        if name == "cancel-commit":
            rt.cancel_commit(self, _text(op, "persist-id"))
            return []
        if name == "lock":
            rt.lock(_datastore(op, "target"), sid)
            return []
        if name == "unlock":
            rt.unlock(_datastore(op, "target"), sid)
            return []
        if name == "close-session":
            return []
        if name == "kill-session":
            target_id = _text(op, "session-id")
            if target_id is None:
                raise SimRpcError.missing_element("session-id", error_type="protocol")
            rt.kill(_uint32(target_id, "session-id"), sid)
            return []
        raise SimRpcError.operation_not_supported(f"operation {name} is not supported")


# -- pure helpers ---------------------------------------------------------------------------------
def _reply(rpc: Element | None, body: list[Element]) -> Element:
    nsmap: dict[str | None, str] = {None: NC_NS}
    if rpc is not None:
        nsmap.update({p: u for p, u in rpc.nsmap.items() if p is not None})
    reply = etree.Element(qname(NC_NS, "rpc-reply"), nsmap=nsmap)
    if rpc is not None:
        for key, value in rpc.attrib.items():
            reply.set(key, value)
    if body:
        reply.extend(body)
    else:
        etree.SubElement(reply, qname(NC_NS, "ok"))
    return reply


def _missing_message_id() -> Element:
    return SimRpcError("rpc", "missing-attribute", message="rpc has no message-id",
                       info={"bad-attribute": "message-id", "bad-element": "rpc"}).to_element()


def _text(op: Element, name: str, ns: str = NC_NS) -> str | None:
    el = op.find(qname(ns, name))
    if el is None:
        return None
    return (el.text or "").strip()


def _uint32(text: str, name: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 0xFFFFFFFF:
        raise SimRpcError("protocol", "invalid-value", message=f"{name} must be 1..4294967295",
                          info={"bad-element": name})
    return int(text)


def _enum(op: Element, name: str) -> str:
    default, allowed = _ENUMS[name]
    value = _text(op, name)
    if value is None:
        return default
    if value not in allowed:
        raise SimRpcError("protocol", "invalid-value", message=f"{name} {value!r} is not one of "
                          + ", ".join(sorted(allowed)), info={"bad-element": name})
    return value


def _datastore(op: Element, param: str) -> str:
    holder = op.find(qname(NC_NS, param))
    if holder is None:
        raise SimRpcError.missing_element(param, error_type="protocol")
    kids = [c for c in holder if isinstance(c.tag, str)]
    if len(kids) != 1:
        raise SimRpcError("protocol", "missing-element" if not kids else "malformed-message",
                          message=f"<{param}> names exactly one datastore", info={"bad-element": param})
    qn = etree.QName(kids[0])
    if qn.localname == "url":
        raise SimRpcError.operation_not_supported(":url is not supported")
    if qn.namespace != NC_NS or qn.localname not in DATASTORES:
        raise SimRpcError("protocol", "invalid-value", message=f"unknown datastore {qn.localname}",
                          info={"bad-element": qn.localname})
    return qn.localname


def _source(op: Element) -> str | Element:
    holder = op.find(qname(NC_NS, "source"))
    config = holder.find(qname(NC_NS, "config")) if holder is not None else None
    return config if config is not None else _datastore(op, "source")


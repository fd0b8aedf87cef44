"""One NETCONF session's messages over an SSH channel, read in the thread that waits for them.

No session thread: a caller sends its ``<rpc>`` straight onto the channel and then reads the channel
itself until its reply arrives (paramiko's transport thread has decrypted it into the channel's buffer;
the caller wakes on that buffer's condition). When several threads share a session, one reads at a time
and files every message it finds: replies by ``message-id`` (any order, pipelined requests included),
notifications in a queue. Each message is screened and parsed once, by :func:`netmig.xmlkit.parse`
(entities refused, depth and size capped); a message that cannot be trusted ends the session with
:class:`HostileReplyError`, a closed or broken channel with :class:`SessionClosedError`, and every
waiting and later call raises the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import paramiko  # type: ignore[import-untyped]

from netmig.netconf.framing import FramingError, MessageFraming, frame
from netmig.xmlkit import NC_NS, Element, XmlError, local_name, parse, qualify, to_bytes

__all__ = ["BASE_10", "BASE_11", "ByteChannel", "Hello", "HostileReplyError", "NetconfChannel",
           "ReplyTimeout", "SessionClosedError"]

log = logging.getLogger(__name__)
T = TypeVar("T")

BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
_NOTIFICATION = qualify("urn:ietf:params:xml:ns:netconf:notification:1.0", "notification")
_RPC_REPLY = qualify(NC_NS, "rpc-reply")
_HELLO = qualify(NC_NS, "hello")
_RPC_OPEN = b'<rpc xmlns="' + NC_NS.encode() + b'" message-id="%d">'
_RPC_CLOSE = b"</rpc>"
_READ_BYTES = 1 << 16


class HostileReplyError(Exception):
    """A message from the device was refused (too large, DOCTYPE/ENTITY, bad framing, unparseable, or not
    a message a NETCONF server may send); the session is over."""


class SessionClosedError(Exception):
    """The channel closed or broke; the session is over."""


class ReplyTimeout(Exception):
    """No reply within the time allowed (the session goes on; a late reply is dropped)."""


class ByteChannel(Protocol):
    """What :class:`NetconfChannel` needs of a channel: paramiko's ``Channel`` has it (so has a socket)."""

    def sendall(self, data: bytes) -> None: ...
    def recv(self, nbytes: int) -> bytes: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Hello:
    """What the server's hello said."""

    session_id: str
    capabilities: tuple[str, ...]


class NetconfChannel:
    """Framed, message-id-matched NETCONF messages on one channel; thread-safe."""

    def __init__(self, channel: ByteChannel, *, max_bytes: int) -> None:
        self._channel = channel
        self._framing = MessageFraming(max_bytes)
        self._cond = threading.Condition(threading.Lock())  # never re-entered
        self._send_lock = threading.Lock()
        self._next_id = 1
        self._waiting: dict[str, None] = {}  # sent, no reply yet (in sending order)
        self._abandoned: set[str] = set()    # sent, then given up on: a late reply is dropped
        self._replies: dict[str, Element] = {}
        self._notifications: deque[Element] = deque()
        self._hello: Element | None = None
        self._reading = False
        self._failure: HostileReplyError | SessionClosedError | None = None

    # ------------------------------------------------------------------ session start
    def exchange_hellos(self, timeout_s: float) -> Hello:
        """Send our hello (base:1.0 and 1.1), read the server's; switch to chunked framing when both
        speak base:1.1 (RFC 6242 section 4.1)."""
        ours = (b'<hello xmlns="' + NC_NS.encode() + b'"><capabilities>'
                + b"".join(b"<capability>%s</capability>" % c.encode() for c in (BASE_10, BASE_11))
                + b"</capabilities></hello>")
        self._send_bytes(frame(ours, chunked=False))
        root = self._await(lambda: self._hello, time.monotonic() + timeout_s)
        if root is None:
            raise ReplyTimeout(f"no hello within {timeout_s:g} s")
        hello = _read_hello(root)
        if BASE_11 in hello.capabilities:
            self._framing.chunked = True
        return hello

    # ------------------------------------------------------------------ requests
    def send(self, operations: Sequence[Element]) -> list[str]:
        """Put one ``<rpc>`` per operation on the wire, in one write; return their message-ids."""
        bodies = [to_bytes(op) for op in operations]
        with self._send_lock:
            with self._cond:
                self._raise_if_failed()
                first = self._next_id
                self._next_id += len(bodies)
                ids = [str(first + n) for n in range(len(bodies))]
                self._waiting.update(dict.fromkeys(ids))
            chunked = self._framing.chunked
            self._send_bytes(b"".join(frame(_RPC_OPEN % (first + n) + body + _RPC_CLOSE, chunked=chunked)
                                      for n, body in enumerate(bodies)))
        return ids

    def reply(self, message_id: str, timeout_s: float) -> Element:
        """The parsed ``<rpc-reply>`` to ``message_id``; :class:`ReplyTimeout` when none comes in time."""
        got = self._await(lambda: self._replies.pop(message_id, None), time.monotonic() + timeout_s)
        if got is not None:
            return got
        with self._cond:
            if message_id in self._replies:  # arrived just now
                return self._replies.pop(message_id)
            self._waiting.pop(message_id, None)
            self._abandoned.add(message_id)
        raise ReplyTimeout(f"no reply within {timeout_s:g} s")

    def notification(self, timeout_s: float | None) -> Element | None:
        """The next ``<notification>``, or None when none arrives within ``timeout_s`` (None: wait on)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return self._await(lambda: self._notifications.popleft() if self._notifications else None,
                           deadline)

    @property
    def alive(self) -> bool:
        return self._failure is None

    def close(self) -> None:
        self._fail(SessionClosedError("session closed"))

    # ------------------------------------------------------------------ reading
    def _await(self, take: Callable[[], T | None], deadline: float | None) -> T | None:
        """Until ``take`` finds something: read the channel (one thread at a time), filing what arrives.
        Two lock round trips per read: claim the reader's turn, then file what was read."""
        cond = self._cond
        while True:
            with cond:
                while True:
                    got = take()
                    if got is not None:
                        return got
                    self._raise_if_failed()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    if not self._reading:
                        self._reading = True
                        break
                    cond.wait(remaining)
            messages: list[Element] = []
            failure: HostileReplyError | SessionClosedError | None = None
            try:
                messages = self._read_once(remaining)
            except (HostileReplyError, SessionClosedError) as exc:
                failure = exc
            finally:
                with cond:
                    self._reading = False
                    try:
                        for root in messages:
                            self._file(root)
                    except HostileReplyError as exc:
                        failure = exc
                    if failure is not None:
                        self._fail_locked(failure)
                    cond.notify_all()

    def _read_once(self, timeout_s: float | None) -> list[Element]:
        """What one read of the channel completed, parsed (nothing when ``timeout_s`` passed first)."""
        try:
            self._channel.settimeout(timeout_s)
            data = self._channel.recv(_READ_BYTES)
        except TimeoutError:  # socket.timeout (an alias since Python 3.10): nothing arrived in time
            return []
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SessionClosedError(f"channel broke: {type(exc).__name__}") from exc
        if not data:
            raise SessionClosedError("the device closed the session")
        try:
            return [parse(m) for m in self._framing.feed(data)]
        except (FramingError, XmlError) as exc:
            raise HostileReplyError(str(exc)) from exc

    def _file(self, root: Element) -> None:
        if root.tag == _RPC_REPLY:
            mid = root.get("message-id")
            if mid is None and self._waiting:  # a server may omit it on a request it could not parse
                mid = next(iter(self._waiting))
            if mid is not None and mid in self._waiting:
                del self._waiting[mid]
                self._replies[mid] = root
            elif mid is not None and mid in self._abandoned:
                self._abandoned.discard(mid)
                log.debug("late reply to message-id %s dropped", mid)
            else:
                raise HostileReplyError(f"rpc-reply to message-id {mid!r}, which no request is waiting for")
        elif root.tag == _NOTIFICATION:
            self._notifications.append(root)
        elif root.tag == _HELLO and self._hello is None:
            self._hello = root
        else:
            raise HostileReplyError(f"unexpected message <{local_name(root)}>")

    # ------------------------------------------------------------------ failure
    def _send_bytes(self, data: bytes) -> None:
        try:
            self._channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._fail(SessionClosedError(f"channel broke while sending: {type(exc).__name__}"))
            self._raise_if_failed()

    def _fail(self, failure: HostileReplyError | SessionClosedError) -> None:
        with self._cond:
            self._fail_locked(failure)
            self._cond.notify_all()

    def _fail_locked(self, failure: HostileReplyError | SessionClosedError) -> None:
        if self._failure is None:
            self._failure = failure
            try:
                self._channel.close()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                log.debug("closing the channel failed: %s", exc)

    def _raise_if_failed(self) -> None:
        failure = self._failure
        if failure is not None:
            raise type(failure)(str(failure))


def _read_hello(root: Element) -> Hello:
    caps = root.find(f"{{{NC_NS}}}capabilities")
    found = tuple((c.text or "").strip() for c in caps.iterfind(f"{{{NC_NS}}}capability")) \
        if caps is not None else ()
    sid = (root.findtext(f"{{{NC_NS}}}session-id") or "").strip()
    if not sid.isdigit() or int(sid) == 0:
        raise HostileReplyError(f"hello without a valid session-id ({sid!r})")
    if BASE_10 not in found and BASE_11 not in found:
        raise HostileReplyError("hello advertises neither base:1.0 nor base:1.1")
    return Hello(sid, found)


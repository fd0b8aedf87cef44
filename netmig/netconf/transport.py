"""SSH transport for ncclient 0.7.1 with the fixes FACTS.md measured.

1. The TCP socket is connected here, with TCP_NODELAY, and handed to ncclient (``sock=``).
2. ncclient's session thread only looks at its send queue between ``select(timeout=0.1)`` calls, so
   every RPC waits up to 100 ms. :class:`WakingSSHSession` registers one end of a socketpair in that
   selector and writes a byte to the other end whenever a request is queued; the selector then sleeps
   with no timeout until a request or a reply arrives. No polling, no global patching: the change lives
   in a subclass and in the one selector object that subclass is handed.
3. Host keys are checked against one known_hosts file (and only that file); unknown or changed keys
   are refused.
4. Replies never reach ncclient's own XML parsing of whole documents (lxml defaults: internal entities
   expanded). :class:`BoundedFraming` replaces ncclient's framing parser, which keeps the whole message in
   memory without limit and, for one huge base:1.1 chunk, copies and decodes the growing buffer on every
   4 KB read (quadratic): ours is linear and refuses a message over ``MAX_REPLY_BYTES``. Every message is
   screened for DOCTYPE/ENTITY before ncclient's root-tag peek, and :meth:`NcTransport.request` hands back
   the raw reply text without ncclient's parse; :func:`netmig.xmlkit.parse` is the only full parse.
   A refused message ends the session with :class:`HostileReplyError`.

This module raises the foreign exceptions (socket, ncclient); :mod:`netmig.netconf.session` is where they
become netmig errors.
"""

from __future__ import annotations

import contextlib
import logging
import re
import selectors
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree
from ncclient.manager import make_device_handler
from ncclient.operations.errors import TimeoutExpiredError
from ncclient.operations.rpc import RPC
from ncclient.transport.session import NetconfBase
from ncclient.transport.ssh import SSHSession
from ncclient.xml_ import NCClientError

from netmig.settings import DeviceEndpoint, SshPolicy
from netmig.xmlkit import MAX_REPLY_BYTES, Element, XmlError, screen

__all__ = ["BoundedFraming", "HostileReplyError", "NcTransport", "WakingSSHSession", "check_lxml",
           "open_socket"]

log = logging.getLogger(__name__)

_MIN_LXML = (5, 0)


def check_lxml() -> None:
    """Refuse to talk to devices with an lxml whose defaults resolve external entities."""
    if etree.LXML_VERSION[:2] < _MIN_LXML:
        raise RuntimeError(f"lxml >= 5.0 is required (found {etree.__version__}): older lxml resolves "
                           "external entities in device replies")


def open_socket(host: str, port: int, timeout_s: float) -> socket.socket:
    """A connected TCP socket with Nagle off (a NETCONF exchange is many small writes)."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()
        raise
    return sock


class HostileReplyError(NCClientError):  # type: ignore[misc]
    """A message from the device was refused before parsing (too large, DOCTYPE/ENTITY, bad framing)."""


_EOM = b"]]>]]>"
_CHUNK_HEADER = re.compile(rb"\n(?:#([1-9][0-9]{0,9})|(##))\n")


class BoundedFraming:
    """RFC 6242 end-of-message and chunked framing in linear time, with a per-message byte cap.

    Stands in for ncclient's ``DefaultXMLParser`` (same ``parse(data)`` contract: complete messages go to
    ``session._dispatch_message``); raises :class:`HostileReplyError` in the session thread, which ends the
    session and fails every waiting request with it.
    """

    def __init__(self, session: Any, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self._session = session
        self._max = max_bytes
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._size = 0  # bytes of the current message so far (chunked: the parts)
        self._need = 0  # chunked: bytes still owed to the current chunk

    def parse(self, data: bytes) -> None:
        self._buf += data
        if self._session._base == NetconfBase.BASE_11:
            self._parse11()
        else:
            self._parse10()

    def _too_large(self) -> HostileReplyError:
        return HostileReplyError(f"message larger than the {self._max}-byte limit")

    def _parse10(self) -> None:
        while True:
            end = self._buf.find(_EOM)
            if end < 0:
                if len(self._buf) > self._max + len(_EOM):
                    raise self._too_large()
                return
            message = bytes(self._buf[:end])
            del self._buf[:end + len(_EOM)]
            self._deliver(message)

    def _parse11(self) -> None:
        while self._buf:
            if self._need:
                take = min(self._need, len(self._buf))
                self._parts.append(bytes(self._buf[:take]))
                del self._buf[:take]
                self._need -= take
                continue
            match = _CHUNK_HEADER.match(self._buf)
            if match is None:
                if len(self._buf) >= 14 or not self._buf.startswith(b"\n"):
                    raise HostileReplyError("chunked framing error")
                return  # a header split across reads
            size, end = match.group(1), match.group(2)  # before the del: the match views self._buf
            del self._buf[:match.end()]
            if end:
                message, self._parts, self._size = b"".join(self._parts), [], 0
                self._deliver(message)
                continue
            self._need = int(size)
            self._size += self._need
            if self._size > self._max:
                raise self._too_large()

    def _deliver(self, message: bytes) -> None:
        text = message.decode("utf-8", errors="replace").strip()
        if text:
            self._session._dispatch_message(text)


class WakingSSHSession(SSHSession):  # type: ignore[misc]
    """ncclient's SSH session, woken by queued requests instead of a 100 ms poll."""

    def __init__(self, device_handler: Any, known_hosts: Path | None,
                 max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self._framing = BoundedFraming(self, max_reply_bytes)
        super().__init__(device_handler)
        self._known_hosts_file = known_hosts
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @property
    def parser(self) -> BoundedFraming:
        """Always our framing: ncclient assigns its own parser at init and again after the hello."""
        return self._framing

    @parser.setter
    def parser(self, value: object) -> None:
        pass

    def load_known_hosts(self, filename: str | None = None) -> None:
        """Load only the configured known_hosts file (ncclient would also read the user's)."""
        if self._known_hosts_file is not None:
            super().load_known_hosts(str(self._known_hosts_file))
        else:
            super().load_known_hosts(filename)

    def knows_host(self, host: str, port: int) -> bool:
        """True when known_hosts holds some key for this host (so a refusal means the key changed)."""
        keys = self._host_keys
        return bool(keys.lookup(host) or keys.lookup(f"[{host}]:{port}"))

    def send(self, message: str) -> None:
        super().send(message)
        self._wake()

    def _dispatch_message(self, raw: str) -> None:
        """Refuse DOCTYPE/ENTITY before ncclient peeks at the root tag (its parser expands entities)."""
        try:
            screen(raw)
        except XmlError as exc:
            raise HostileReplyError(str(exc)) from exc
        super()._dispatch_message(raw)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: a wake-up is already pending
        except OSError:
            pass  # closed: the session is over

    def _drain(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass

    def _transport_register(self, selector: selectors.BaseSelector, event: int) -> None:
        super()._transport_register(selector, event)
        selector.register(self._wake_r, selectors.EVENT_READ)
        select_events = selector.select
        wake_r = self._wake_r

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            # A request still queued (several queued, or the channel window was full): come back soon.
            # Otherwise sleep until a request is queued or the device sends something.
            wait: float | None = None
            if not self._q.empty():
                wait = 0 if self._send_ready() else 0.01
            events = select_events(wait)
            channel = [(key, mask) for key, mask in events if key.fileobj is not wake_r]
            if len(channel) != len(events):
                self._drain()
            return channel

        selector.select = select  # type: ignore[method-assign]

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_wake()

    def release_wake(self) -> None:
        """Close the wake-up socketpair (also after a failed connect, when close() is never called)."""
        self._wake_r.close()
        self._wake_w.close()


class _RawRpc(RPC):  # type: ignore[misc]
    """One request whose reply comes back as text, never parsed by ncclient (xmlkit parses it)."""

    def send_raw(self, op: Element) -> str:
        self.send_only(op)
        return self.wait_raw()

    def send_only(self, op: Element) -> None:
        """Put the request on the wire without waiting (its reply is matched by message-id)."""
        self._session.send(self._wrap(op))

    def wait_raw(self) -> str:
        """Wait for the reply of a request sent with :meth:`send_only`."""
        self._event.wait(self._timeout)
        if not self._event.is_set():
            raise TimeoutExpiredError("ncclient timed out while waiting for an rpc reply.")
        if self._error is not None:
            raise self._error
        return str(self._reply._raw)


class NcTransport:
    """One connected NETCONF-over-SSH session: send an RPC element, get the raw reply text."""

    def __init__(self, session: WakingSSHSession, device_handler: Any) -> None:
        self._session = session
        self._handler = device_handler

    @classmethod
    def connect(cls, endpoint: DeviceEndpoint, ssh: SshPolicy, *, connect_timeout_s: float,
                socket_factory: Callable[[str, int, float], socket.socket] = open_socket) -> NcTransport:
        """Open TCP, SSH (host key, auth), the netconf subsystem and exchange hellos.

        Raises the foreign exceptions unchanged (OSError, ncclient transport errors).
        """
        check_lxml()
        handler = make_device_handler({"name": "default"})
        session = WakingSSHSession(handler, ssh.known_hosts)
        if not ssh.verify_host_keys:
            log.warning("%s: SSH host key NOT verified (verify_host_keys is off)", endpoint.name)
        sock = socket_factory(endpoint.host, endpoint.port, connect_timeout_s)
        creds = endpoint.credentials
        # paramiko waits 15 s for a banner whatever we say: bound the whole setup by shutting the socket.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(connect_timeout_s, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            session.connect(
                host=endpoint.host, port=endpoint.port, sock=sock, timeout=connect_timeout_s,
                username=creds.username, password=creds.password,
                key_filename=str(creds.key_file) if creds.key_file is not None else None,
                hostkey_verify=ssh.verify_host_keys, look_for_keys=ssh.look_for_keys,
                allow_agent=ssh.allow_agent,
            )
        except BaseException as exc:
            if session.transport is not None:
                session.close()
            session.release_wake()
            sock.close()
            if expired.is_set():
                raise TimeoutError(f"SSH/NETCONF setup took longer than {connect_timeout_s:g} s") from exc
            raise
        finally:
            watchdog.cancel()
        if expired.is_set():  # fired just as the setup finished: the socket is shut, do not hand it out
            session.close()
            raise TimeoutError(f"SSH/NETCONF setup took longer than {connect_timeout_s:g} s")
        return cls(session, handler)

    @property
    def session(self) -> WakingSSHSession:
        return self._session

    @property
    def session_id(self) -> str | None:
        sid = self._session.id
        return None if sid is None else str(sid)

    @property
    def server_capabilities(self) -> list[str]:
        caps = self._session.server_capabilities
        return [] if caps is None else [str(uri) for uri in caps]

    @property
    def connected(self) -> bool:
        return bool(self._session.connected)

    def request(self, rpc: Element, timeout_s: float) -> str:
        """Send ``rpc``'s operation element (wrapped in ``<rpc>``) and return the raw ``<rpc-reply>`` text."""
        return _RawRpc(self._session, self._handler, timeout=timeout_s).send_raw(rpc)

    def send_many(self, rpcs: list[Element], timeout_s: float) -> list[Callable[[], str]]:
        """Send every operation before waiting for any reply (pipelining: the server answers in order);
        returns, in the same order, one function per request that waits for its raw reply. Saves a round
        trip per request after the first; the caller may stop at a bad reply without waiting for more."""
        waits = []
        for op in rpcs:
            call = _RawRpc(self._session, self._handler, timeout=timeout_s)
            call.send_only(op)
            waits.append(call.wait_raw)
        return waits

    def take_notification(self, timeout_s: float | None) -> str | None:
        """The next notification's raw XML, or None when none arrives within ``timeout_s``."""
        notif = self._session.take_notification(True, timeout_s)
        return None if notif is None else str(notif.notification_xml)

    def close(self) -> None:
        """Close the SSH connection (without a close-session RPC)."""
        if self._session.transport is not None:
            self._session.close()

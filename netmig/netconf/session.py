"""DeviceSession: typed NETCONF operations on one device (SSH set up by ncclient and paramiko, messages
handled by :mod:`netmig.netconf.channel`).

This is the one place where ncclient, paramiko, socket and channel exceptions become netmig errors (always
``raise ... from exc``): authentication -> AuthError, unknown or changed host key -> HostKeyError, socket and
SSH failures -> ConnectError, no answer in time -> DeviceTimeoutError, ``<rpc-error>`` -> RpcError with
every RFC 6241 field, an unparseable or unexpected reply -> MalformedReplyError. Requests are built by the
pure functions of :mod:`netmig.netconf.operations` (re-exported here); every reply is parsed once, by
:func:`netmig.xmlkit.parse`, in the channel.
Only connecting is retried, and only when TCP was refused, reset or timed out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

import paramiko  # type: ignore[import-untyped]
from ncclient.transport.errors import AuthenticationError, SSHUnknownHostError
from ncclient.xml_ import NCClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from netmig.errors import (
    AuthError,
    ConnectError,
    DeviceTimeoutError,
    HostKeyError,
    MalformedReplyError,
    RpcError,
)
from netmig.netconf.capabilities import Capabilities
from netmig.netconf.operations import (
    NOTIFICATION_NS,
    build_cancel_commit,
    build_commit,
    build_create_subscription,
    build_edit_config,
    build_get,
    build_get_config,
    build_kill_session,
    build_simple,
    build_validate,
    build_with_target,
    parse_rpc_errors,
    subtree_filter,
    xpath_filter,
    yang_library_filter,
)
from netmig.netconf.transport import HostileReplyError, NcTransport, ReplyTimeout, SessionClosedError
from netmig.quirks import drop_duplicate_entries, selections_may_repeat
from netmig.settings import DeviceEndpoint, SshPolicy, Timeouts
from netmig.xmlkit import NC_NS, Element, local_name, qualify

__all__ = [
    "NOTIFICATION_NS",
    "DeviceSession",
    "build_commit",
    "build_edit_config",
    "build_get",
    "build_get_config",
    "build_validate",
    "parse_rpc_errors",
    "subtree_filter",
    "xpath_filter",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RPC_REPLY = qualify(NC_NS, "rpc-reply")
_RPC_ERROR = qualify(NC_NS, "rpc-error")
_OK = qualify(NC_NS, "ok")
_DATA = qualify(NC_NS, "data")


def _name(operation: Element | str) -> str:
    return operation if isinstance(operation, str) else local_name(operation)


# Failures of the TCP connect that a second try can cure. Never auth, host key or protocol errors.
_TRANSIENT = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class DeviceSession:
    """A NETCONF session to one device; use as a context manager.

    >>> with DeviceSession(endpoint, ssh=SshPolicy(known_hosts=path)) as s:  # doctest: +SKIP
    ...     with s.locked("candidate"):
    ...         s.edit_config("candidate", config)
    ...         s.commit()
    """

    def __init__(self, endpoint: DeviceEndpoint, *, ssh: SshPolicy | None = None,
                 timeouts: Timeouts | None = None) -> None:
        self.endpoint = endpoint
        self.ssh = ssh if ssh is not None else SshPolicy()
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self._transport: NcTransport | None = None
        self._capabilities: Capabilities | None = None

    @property
    def device(self) -> str:
        """How errors name this device: ``name (host:port)``."""
        return self.endpoint.label

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> DeviceSession:
        """Connect, authenticate, exchange hellos. Retries only refused/reset/timed-out TCP connects."""
        if self._transport is not None:
            return self
        started = time.perf_counter()
        retrying = Retrying(
            stop=stop_after_attempt(self.timeouts.connect_attempts),
            wait=wait_exponential(multiplier=self.timeouts.connect_backoff_s, max=2),
            retry=retry_if_exception_type(_TRANSIENT), reraise=True)
        try:
            transport = retrying(self._connect_once)
        except AuthenticationError as exc:
            raise AuthError(self.device, f"authentication failed for user "
                                         f"{self.endpoint.credentials.username!r}") from exc
        except SSHUnknownHostError as exc:
            raise HostKeyError(self.device, self._host_key_problem(exc)) from exc
        except HostileReplyError as exc:
            raise MalformedReplyError(self.device, f"hello refused: {exc}") from exc
        except ReplyTimeout as exc:
            raise DeviceTimeoutError(self.device, f"hello: {exc}") from exc
        except SessionClosedError as exc:
            raise ConnectError(self.device, f"SSH/NETCONF setup failed: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceTimeoutError(self.device, f"no connection within {self.timeouts.connect_s:g} s "
                                                  f"({self.timeouts.connect_attempts} attempts)") from exc
        except ConnectionRefusedError as exc:
            raise ConnectError(self.device, f"connection refused "
                                            f"({self.timeouts.connect_attempts} attempts)") from exc
        except OSError as exc:
            raise ConnectError(self.device, f"cannot connect: {exc.strerror or exc}") from exc
        except (NCClientError, paramiko.SSHException, EOFError) as exc:
            raise ConnectError(self.device, f"SSH/NETCONF setup failed: {type(exc).__name__}") from exc
        self._transport = transport
        self._capabilities = Capabilities.from_hello(self.device, transport.server_capabilities)
        log.info("%s: connected, session-id %s, %.1f ms", self.device, transport.session_id,
                 (time.perf_counter() - started) * 1000)
        return self

    def _connect_once(self) -> NcTransport:
        return NcTransport.connect(self.endpoint, self.ssh, connect_timeout_s=self.timeouts.connect_s)

    def _host_key_problem(self, exc: SSHUnknownHostError) -> str:
        fingerprint = getattr(exc, "fingerprint", "")
        where = "the user's known_hosts" if self.ssh.known_hosts is None else str(self.ssh.known_hosts)
        probe = paramiko.HostKeys()
        try:
            if self.ssh.known_hosts is not None:
                probe.load(str(self.ssh.known_hosts))
        except OSError:
            pass
        host, port = self.endpoint.host, self.endpoint.port
        if probe.lookup(host) or probe.lookup(f"[{host}]:{port}"):
            return f"host key CHANGED (offered {fingerprint}, not the one in {where})"
        return f"unknown host key {fingerprint} (not in {where})"

    def close(self) -> None:
        """Send close-session (best effort) and drop the connection. Safe to call twice."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        try:
            if transport.connected:
                transport.request(build_simple("close-session"), min(self.timeouts.rpc_s, 5.0))
        except (NCClientError, OSError, EOFError, paramiko.SSHException, ReplyTimeout, SessionClosedError,
                HostileReplyError) as exc:
            log.debug("%s: close-session failed (%s); dropping the connection", self.device,
                      type(exc).__name__)
        finally:
            try:
                transport.close()
            except (NCClientError, OSError, EOFError, paramiko.SSHException) as exc:
                log.debug("%s: closing SSH failed: %s", self.device, type(exc).__name__)

    def __enter__(self) -> DeviceSession:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._transport.connected

    @property
    def session_id(self) -> str | None:
        return None if self._transport is None else self._transport.session_id

    @property
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            raise ConnectError(self.device, "session is not open")
        return self._capabilities

    def load_yang_library(self) -> Capabilities:
        """Read ietf-yang-library (RFC 7895 modules-state) and merge its modules into :attr:`capabilities`."""
        data = self.get(yang_library_filter())
        self._capabilities = self.capabilities.with_yang_library(data)
        return self._capabilities

    # ------------------------------------------------------------------ the one RPC path
    def rpc(self, operation: Element, *, timeout_s: float | None = None) -> Element:
        """Send any RPC operation element; return the parsed ``<rpc-reply>``; raise RpcError on rpc-error."""
        transport = self._open_transport()
        wait_s = self.timeouts.rpc_s if timeout_s is None else timeout_s
        reply = self._checked(operation, self._transported(
            operation, wait_s, lambda: transport.request(operation, wait_s)))
        if isinstance(reply, RpcError):
            raise reply
        return reply

    def pipeline(self, operations: Sequence[Element], *,
                 timeout_s: float | None = None) -> list[Element | RpcError]:
        """Send every operation before reading any reply (the server answers in order), then check each
        reply in turn: a parsed ``<rpc-reply>``, or the :class:`RpcError` the device answered (returned,
        not raised, so the caller sees every answer). A lost session or a bad reply raises."""
        transport = self._open_transport()
        wait_s = self.timeouts.rpc_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        ops = list(operations)
        waits = self._transported("+".join(local_name(op) for op in ops), wait_s,
                                  lambda: transport.send_many(ops, wait_s))
        # checked as each arrives: a bad reply ends the session at once, nothing more is awaited
        replies = [self._checked(op, self._transported(op, wait_s, wait)) for op, wait in zip(ops, waits,
                                                                                               strict=True)]
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %d request(s) %.2f ms", self.device, len(replies),
                      (time.perf_counter() - started) * 1000)
        return replies

    def _open_transport(self) -> NcTransport:
        transport = self._transport
        if transport is None:
            raise ConnectError(self.device, "session is not open")
        return transport

    def _transported(self, operation: Element | str, wait_s: float, action: Callable[[], T]) -> T:
        """Run a transport call; its foreign exceptions become netmig errors naming the operation."""
        try:
            return action()
        except ReplyTimeout as exc:
            raise DeviceTimeoutError(self.device,
                                     f"{_name(operation)}: no reply within {wait_s:g} s") from exc
        except HostileReplyError as exc:
            # The channel ended the session: a device that sends unparseable or unexpected messages is not
            # trusted with the rest of it, so recovery (cancel-commit with the persist-id) uses a fresh one.
            raise MalformedReplyError(self.device, f"{_name(operation)}: reply refused: {exc}") from exc
        except SessionClosedError as exc:
            raise ConnectError(self.device, f"{_name(operation)}: session lost ({exc})") from exc

    def _checked(self, operation: Element, reply: Element) -> Element | RpcError:
        if reply.tag != _RPC_REPLY:
            raise MalformedReplyError(self.device, f"{_name(operation)}: expected rpc-reply, got "
                                                   f"{local_name(reply)}")
        if reply.find(_RPC_ERROR) is None:
            return reply
        errors = parse_rpc_errors(reply)
        if any(e.severity != "warning" for e in errors):
            return RpcError(self.device, _name(operation), errors)
        for warning in errors:
            log.warning("%s: %s warning: %s", self.device, _name(operation), warning)
        return reply

    def _ok(self, operation: Element, *, timeout_s: float | None = None) -> None:
        reply = self.rpc(operation, timeout_s=timeout_s)
        if reply.find(_OK) is None:
            raise MalformedReplyError(self.device,
                                      f"{local_name(operation)}: reply has neither ok nor rpc-error")

    def _data(self, operation: Element) -> Element:
        return self._data_of(operation, self.rpc(operation))

    def _data_of(self, operation: Element, reply: Element) -> Element:
        data = reply.find(_DATA)
        if data is None:
            raise MalformedReplyError(self.device, f"{local_name(operation)}: reply has no data element")
        if selections_may_repeat(operation):  # netconfd repeats entries matched by two filter selections
            drop_duplicate_entries(data)
        return data

    # ------------------------------------------------------------------ RFC 6241 operations
    def get(self, filter: Element | None = None) -> Element:
        """``<get>``: running config and state; returns the ``<data>`` element."""
        return self._data(build_get(filter))

    def get_config(self, source: str = "running", filter: Element | None = None) -> Element:
        """``<get-config>`` of a datastore; returns the ``<data>`` element."""
        return self._data(build_get_config(source, filter))

    def edit_config(self, target: str, config: Element, *, default_operation: str | None = None,
                    test_option: str | None = None, error_option: str | None = None) -> None:
        """``<edit-config>``; ``config`` is the ``<config>`` element (or one top-level data node)."""
        if test_option is not None:
            self.capabilities.require(":validate")
        self._ok(build_edit_config(target, config, default_operation=default_operation,
                                test_option=test_option, error_option=error_option))

    def validate(self, source: str | Element = "candidate") -> None:
        """``<validate>`` a datastore, or a ``<config>`` element inline."""
        self.capabilities.require(":validate")
        self._ok(build_validate(source))

    def commit(self, *, confirmed: bool = False, timeout_s: int | None = None, persist: str | None = None,
               persist_id: str | None = None) -> None:
        """``<commit>``: plain, confirmed (with timeout and persist token) or confirming (persist-id)."""
        self._ok(self._commit_op(confirmed, timeout_s, persist, persist_id))

    def commit_and_read(self, read_filter: Element | None, *, confirmed: bool = False,
                        timeout_s: int | None = None, persist: str | None = None) -> Element | RpcError:
        """``<commit>`` and, in the same flight, ``<get-config>`` of running (pipelined: one round trip
        for both; the server reads running after the commit). Raises like :meth:`commit` when the commit
        fails; returns running's ``<data>``, or the read's own :class:`RpcError`."""
        commit_op = self._commit_op(confirmed, timeout_s, persist, None)
        read_op = build_get_config("running", read_filter)
        committed, read = self.pipeline([commit_op, read_op])
        if isinstance(committed, RpcError):
            raise committed
        if committed.find(_OK) is None:
            raise MalformedReplyError(self.device, "commit: reply has neither ok nor rpc-error")
        return read if isinstance(read, RpcError) else self._data_of(read_op, read)

    def _commit_op(self, confirmed: bool, timeout_s: int | None, persist: str | None,
                   persist_id: str | None) -> Element:
        self.capabilities.require(":candidate")
        if confirmed or persist_id is not None:
            tokens = persist is not None or persist_id is not None
            self.capabilities.require(":confirmed-commit:1.1" if tokens else ":confirmed-commit")
        return build_commit(confirmed=confirmed, timeout_s=timeout_s, persist=persist, persist_id=persist_id)

    def cancel_commit(self, persist_id: str | None = None) -> None:
        """``<cancel-commit>``: roll a pending confirmed commit back now."""
        self.capabilities.require(":confirmed-commit:1.1")
        self._ok(build_cancel_commit(persist_id))

    def discard_changes(self) -> None:
        """``<discard-changes>``: candidate := running."""
        self.capabilities.require(":candidate")
        self._ok(build_simple("discard-changes"))

    def lock(self, target: str = "candidate") -> None:
        self._ok(build_with_target("lock", target))

    def unlock(self, target: str = "candidate") -> None:
        self._ok(build_with_target("unlock", target))

    @contextmanager
    def locked(self, target: str = "candidate") -> Iterator[None]:
        """Hold a datastore lock for the block; an unlock failure while unwinding is logged, not raised."""
        self.lock(target)
        try:
            yield
        except BaseException:
            try:
                self.unlock(target)
            except (RpcError, ConnectError, DeviceTimeoutError, MalformedReplyError) as exc:
                log.warning("%s: unlock %s failed while unwinding: %s", self.device, target, exc)
            raise
        self.unlock(target)

    def kill_session(self, session_id: int | str) -> None:
        """``<kill-session>``: end another session (releasing its locks)."""
        self._ok(build_kill_session(session_id))

    # ------------------------------------------------------------------ RFC 5277 notifications
    def create_subscription(self, *, stream: str | None = None, filter: Element | None = None) -> None:
        """``<create-subscription>``; then read with :meth:`next_notification`."""
        self.capabilities.require(":notification")
        self._ok(build_create_subscription(stream=stream, filter=filter))

    def next_notification(self, timeout_s: float | None = None) -> Element | None:
        """The next ``<notification>`` element, or None when none arrives within ``timeout_s``."""
        transport = self._transport
        if transport is None:
            raise ConnectError(self.device, "session is not open")
        return self._transported("notification", timeout_s or 0,
                                 lambda: transport.take_notification(timeout_s))

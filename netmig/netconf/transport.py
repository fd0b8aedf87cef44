"""SSH transport for NETCONF: ncclient 0.7.1 sets the SSH connection up, netmig does the rest.

1. The TCP socket is connected here, with TCP_NODELAY, and handed to ncclient (``sock=``).
2. ncclient's SSH setup (host key check, authentication, the ``netconf`` subsystem) is kept; its session
   thread is never started. ncclient's thread looked at its send queue only between 100 ms ``select``
   calls (FACTS.md) and, even when woken at once, cost two thread hand-offs per RPC. Instead
   :class:`netmig.netconf.channel.NetconfChannel` exchanges the hellos and every later message on the
   channel in the calling thread: a request is written by the caller, and its reply is read by the caller
   as soon as paramiko has decrypted it.
3. Host keys are checked against one known_hosts file (and only that file); unknown or changed keys
   are refused.
4. Replies never reach ncclient's XML parsing (lxml defaults: internal entities expanded): the channel's
   framing is netmig's (linear, capped at ``MAX_REPLY_BYTES``) and each message is parsed once by
   :func:`netmig.xmlkit.parse`. A refused message ends the session with :class:`HostileReplyError`.

This module raises the foreign exceptions (socket, paramiko, ncclient's setup errors) and the channel's;
:mod:`netmig.netconf.session` is where they become netmig errors.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree
from ncclient.manager import make_device_handler
from ncclient.transport.ssh import SSHSession

from netmig.netconf.channel import (
    HostileReplyError,
    NetconfChannel,
    ReplyTimeout,
    SessionClosedError,
)
from netmig.settings import DeviceEndpoint, SshPolicy
from netmig.xmlkit import MAX_REPLY_BYTES, Element

__all__ = ["HostileReplyError", "NcTransport", "ReplyTimeout", "SessionClosedError", "SshSetup",
           "check_lxml", "open_socket"]

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


class SshSetup(SSHSession):  # type: ignore[misc]
    """ncclient's SSH connection setup only: after the ``netconf`` subsystem is open it stops (no hello,
    no session thread); :attr:`channel` is then :class:`NetconfChannel`'s to use."""

    def __init__(self, device_handler: Any, known_hosts: Path | None) -> None:
        super().__init__(device_handler)
        self._known_hosts_file = known_hosts

    def _post_connect(self, timeout: float = 60) -> None:
        """ncclient would send its hello and start its thread here; netmig's channel does the hello."""

    @property
    def channel(self) -> Any:
        return self._channel

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


class NcTransport:
    """One connected NETCONF-over-SSH session: send operation elements, get their parsed replies."""

    def __init__(self, ssh: SshSetup, channel: NetconfChannel, session_id: str,
                 capabilities: tuple[str, ...]) -> None:
        self._ssh = ssh
        self._channel = channel
        self._session_id = session_id
        self._capabilities = capabilities

    @classmethod
    def connect(cls, endpoint: DeviceEndpoint, ssh: SshPolicy, *, connect_timeout_s: float,
                socket_factory: Callable[[str, int, float], socket.socket] = open_socket,
                max_reply_bytes: int = MAX_REPLY_BYTES) -> NcTransport:
        """Open TCP, SSH (host key, auth), the netconf subsystem and exchange hellos, all within
        ``connect_timeout_s``.

        Raises the foreign exceptions unchanged (OSError, paramiko and ncclient setup errors) and the
        channel's (:class:`HostileReplyError` for a refused hello, :class:`ReplyTimeout`).
        """
        check_lxml()
        setup = SshSetup(make_device_handler({"name": "default"}), ssh.known_hosts)
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
            setup.connect(
                host=endpoint.host, port=endpoint.port, sock=sock, timeout=connect_timeout_s,
                username=creds.username, password=creds.password,
                key_filename=str(creds.key_file) if creds.key_file is not None else None,
                hostkey_verify=ssh.verify_host_keys, look_for_keys=ssh.look_for_keys,
                allow_agent=ssh.allow_agent,
            )
            channel = NetconfChannel(setup.channel, max_bytes=max_reply_bytes)
            hello = channel.exchange_hellos(connect_timeout_s)
        except BaseException as exc:
            if setup.transport is not None:
                setup.close()
            sock.close()
            if expired.is_set():
                raise TimeoutError(f"SSH/NETCONF setup took longer than {connect_timeout_s:g} s") from exc
            raise
        finally:
            watchdog.cancel()
        if expired.is_set():  # fired just as the setup finished: the socket is shut, do not hand it out
            setup.close()
            raise TimeoutError(f"SSH/NETCONF setup took longer than {connect_timeout_s:g} s")
        return cls(setup, channel, hello.session_id, hello.capabilities)

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def server_capabilities(self) -> list[str]:
        return list(self._capabilities)

    @property
    def connected(self) -> bool:
        transport = self._ssh.transport
        return bool(self._channel.alive and transport is not None and transport.is_active())

    def request(self, operation: Element, timeout_s: float) -> Element:
        """Send one operation (wrapped in ``<rpc>``) and return its parsed ``<rpc-reply>``."""
        (message_id,) = self._channel.send([operation])
        return self._channel.reply(message_id, timeout_s)

    def send_many(self, operations: list[Element], timeout_s: float) -> list[Callable[[], Element]]:
        """Send every operation in one write before reading any reply (pipelining); return, in the same
        order, one function per request that waits for its parsed reply. Saves a round trip per request
        after the first; the caller may stop at a bad reply without waiting for more."""
        ids = self._channel.send(operations)
        channel = self._channel
        return [lambda mid=mid: channel.reply(mid, timeout_s) for mid in ids]  # type: ignore[misc]

    def take_notification(self, timeout_s: float | None) -> Element | None:
        """The next parsed ``<notification>``, or None when none arrives within ``timeout_s``."""
        return self._channel.notification(timeout_s)

    def close(self) -> None:
        """Close the SSH connection (without a close-session RPC)."""
        self._channel.close()
        if self._ssh.transport is not None:
            self._ssh.close()

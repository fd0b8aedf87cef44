"""asyncssh front end of a simulated device: one listener per device, the ``netconf`` subsystem only.

Password and public-key authentication for the configured user (password also for extra accounts),
a persistent ed25519 host key, and no shell, exec or forwarding. A PTY request is accepted (scrapli's
system transport sends one). Many devices share one event loop.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from .runtime import DeviceRuntime, EngineLike
from .session import Session

__all__ = ["DeviceListenSpec", "DeviceServer", "load_or_create_host_key", "start_device_server"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeviceListenSpec:
    """Where and how one device listens. ``port=0`` picks a free port (see ``DeviceServer.port``)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    username: str = "admin"
    password: str | None = None
    authorized_keys: list[str] = field(default_factory=list)  # OpenSSH public key lines
    host_key_path: Path | None = None                        # None: a fresh key for this run only
    users: dict[str, str] = field(default_factory=dict)      # more accounts: username -> password


def load_or_create_host_key(path: Path | None) -> asyncssh.SSHKey:
    """Read the private host key at ``path``, or generate an ed25519 one and store it there (mode 0600)."""
    if path is not None and path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key("openssh"))
        os.replace(tmp, path)
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key("openssh"))
    return key


class DeviceServer:
    """A running SSH listener for one device; build it with :func:`start_device_server`."""

    def __init__(self, spec: DeviceListenSpec, runtime: DeviceRuntime, host_key: asyncssh.SSHKey) -> None:
        self.spec = spec
        self.runtime = runtime
        self.host_key = host_key
        self._client_keys = {asyncssh.import_public_key(line).public_data for line in spec.authorized_keys
                             if line.strip() and not line.lstrip().startswith("#")}
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._bound: int | None = None  # kept while stopped, so a restart listens on the same port

    @property
    def port(self) -> int:
        """The bound TCP port (also while stopped, after a first start)."""
        if self._bound is None:
            raise RuntimeError("server not started")
        return self._bound

    @property
    def listening(self) -> bool:
        return self._acceptor is not None

    def known_hosts_line(self) -> str:
        """``[host]:port keytype base64`` for an OpenSSH known_hosts file."""
        public = self.host_key.export_public_key("openssh").decode().split()
        return f"[{self.spec.host}]:{self.port} {public[0]} {public[1]}"

    async def start(self) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: _SshServer(self), self.spec.host, self._bound or self.spec.port,
            server_host_keys=[self.host_key], encoding=None, line_editor=False,
            allow_scp=False, agent_forwarding=False, x11_forwarding=False, allow_pty=True,
        )
        self._bound = self._acceptor.get_port()
        log.info("device %s listening on %s:%d", self.spec.name, self.spec.host, self.port)

    async def stop(self, *, reboot: bool = True) -> None:
        """Stop listening, end every session; a pending confirmed commit rolls back, unless ``reboot``
        is False (a network partition: a persistent confirmed commit stays pending). ``start`` again
        listens on the same port."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        if reboot:
            self.runtime.shutdown()
        else:
            for session in list(self.runtime.sessions.values()):
                session.abort()

    def check_password(self, username: str, password: str) -> bool:
        accounts = dict(self.spec.users)
        if self.spec.password is not None:
            accounts[self.spec.username] = self.spec.password
        ok = False
        for user, expected in accounts.items():  # every account compared, in constant time each
            ok |= (hmac.compare_digest(username.encode(), user.encode())
                   & hmac.compare_digest(password.encode(), expected.encode()))
        return ok

    def check_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.spec.username and key.public_data in self._client_keys


async def start_device_server(spec: DeviceListenSpec, engine: EngineLike,
                              runtime: DeviceRuntime | None = None) -> DeviceServer:
    """Start listening for ``spec``; sessions share ``runtime`` (a new one around ``engine`` if None)."""
    rt = runtime if runtime is not None else DeviceRuntime(engine, name=spec.name)
    server = DeviceServer(spec, rt, load_or_create_host_key(spec.host_key_path))
    await server.start()
    return server


class _SshServer(asyncssh.SSHServer):
    """Per-connection SSH callbacks: authentication and channel creation."""

    def __init__(self, device: DeviceServer) -> None:
        self._device = device
        self._conn: asyncssh.SSHServerConnection | None = None
        self._channels = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self._device.spec.password is not None or bool(self._device.spec.users)

    def validate_password(self, username: str, password: str) -> bool:
        return self._device.check_password(username, password)

    def public_key_auth_supported(self) -> bool:
        return bool(self._device.spec.authorized_keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self._device.check_key(username, key)

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        assert self._conn is not None
        self._channels += 1
        return _NetconfChannel(self._device, self._conn, self._channel_closed)

    def _channel_closed(self) -> None:
        self._channels -= 1
        if self._channels == 0 and self._conn is not None:
            self._conn.close()  # one NETCONF session per connection in practice: hang up with it


class _NetconfChannel(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel carrying the netconf subsystem; also the Session's transport."""

    def __init__(self, device: DeviceServer, conn: asyncssh.SSHServerConnection,
                 on_close: Callable[[], None]) -> None:
        self._device = device
        self._conn = conn
        self._on_close = on_close
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._session: Session | None = None
        self._subsystem = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        return True

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        self._subsystem = subsystem == "netconf"
        return self._subsystem

    def session_started(self) -> None:
        if not self._subsystem:
            self.close()
            return
        peer = self._conn.get_extra_info("peername")
        self._session = Session(self._device.runtime, self,
                                username=str(self._conn.get_extra_info("username") or ""),
                                source_host=str(peer[0]) if peer else None)
        self._session.start()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._session is not None and datatype is None:
            self._session.data_received(data)

    def eof_received(self) -> bool:
        return False  # close the channel when the client stops sending

    def connection_lost(self, exc: Exception | None) -> None:
        if self._session is not None:
            self._session.connection_lost()
        self._on_close()

    # Transport for Session
    def write(self, data: bytes) -> None:
        if self._chan is not None:
            self._chan.write(data)

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()

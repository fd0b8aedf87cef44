"""Settings as small immutable value objects, passed in explicitly (no config bags, no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "CommitPolicy",
    "Credentials",
    "DeviceEndpoint",
    "QuirkProfile",
    "SshPolicy",
    "Timeouts",
    "ValidateMode",
]

ValidateMode = Literal["candidate", "inline", "skip"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait for a device.

    ``connect_attempts`` and ``connect_backoff_s`` bound the retries of a connection that was refused,
    reset or timed out before SSH started; authentication and host key failures are never retried.
    ``busy_wait_s`` bounds how long a migration waits for devices another session holds: a candidate
    lock held elsewhere (lock-denied), or, on devices whose quirk profile says so, another session's
    pending confirmed commit (``in-use``; see :mod:`netmig.quirks`). Then it fails naming the device.
    """

    connect_s: float = 10
    rpc_s: float = 30
    connect_attempts: int = 3
    connect_backoff_s: float = 0.2
    busy_wait_s: float = 30

    def __post_init__(self) -> None:
        if self.connect_s <= 0 or self.rpc_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1")
        if self.connect_backoff_s < 0:
            raise ValueError("connect_backoff_s must not be negative")
        if self.busy_wait_s < 0:
            raise ValueError("busy_wait_s must not be negative")


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """How the network-wide transaction commits.

    ``persist``: the confirmed commit carries a persist token, so it survives our session and can be
    confirmed or cancelled from a new one. ``verify``: read running back after the confirmed commit and
    compare it with what was meant.
    """

    confirm_timeout_s: int = 60
    persist: bool = True
    verify: bool = True

    def __post_init__(self) -> None:
        if self.confirm_timeout_s < 1:
            raise ValueError("confirm_timeout_s must be at least 1 second")


@dataclass(frozen=True, slots=True)
class SshPolicy:
    """How SSH authenticates the device and us.

    ``known_hosts`` None means the user's ``~/.ssh/known_hosts``. Turning ``verify_host_keys`` off is
    for throw-away labs only; it is logged as a warning on every connection.
    """

    known_hosts: Path | None = None
    verify_host_keys: bool = True
    look_for_keys: bool = False
    allow_agent: bool = True


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who we are on a device. The password never appears in repr() or str()."""

    username: str
    password: str | None = field(default=None, repr=False)
    key_file: Path | None = None

    def __repr__(self) -> str:
        secret = "***" if self.password is not None else None
        return f"Credentials(username={self.username!r}, password={secret!r}, key_file={self.key_file!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class QuirkProfile:
    """What a server needs us to do differently (see docs FACTS.md for the yuma123 netconfd quirks).

    ``validate``: "candidate" sends ``<validate><source><candidate/>``; "inline" validates the edit's
    ``<config>`` itself (servers that lose the pending edit when the candidate is validated); "skip"
    sends no validate (servers that validate fully at edit-config time).
    ``confirmed_timer_needs_quiet_s``: seconds the server must see no traffic before its confirm timer can
    fire. ``commit_blocked_while_confirm_pending``: other sessions' commits fail while a confirmed commit
    is pending.
    """

    validate: ValidateMode = "candidate"
    confirmed_timer_needs_quiet_s: float = 0
    commit_blocked_while_confirm_pending: bool = False

    def __post_init__(self) -> None:
        if self.validate not in ("candidate", "inline", "skip"):
            raise ValueError(f"validate must be candidate, inline or skip, not {self.validate!r}")
        if self.confirmed_timer_needs_quiet_s < 0:
            raise ValueError("confirmed_timer_needs_quiet_s must not be negative")


@dataclass(frozen=True, slots=True)
class DeviceEndpoint:
    """One device: a name for messages, where it listens, how we log in, what it needs."""

    name: str
    host: str
    port: int
    credentials: Credentials
    quirks: QuirkProfile = field(default_factory=QuirkProfile)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"{self.name}: port {self.port} out of range")

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        """``name (host:port)``, how errors name the device."""
        return f"{self.name} ({self.address})"

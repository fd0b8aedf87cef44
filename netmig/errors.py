"""The one exception hierarchy of netmig.

::

    NetmigError                       exit_code 1
    ├── InputError                    exit 2: the user's input is wrong
    │   ├── TopologyError             every problem with file:line and path
    │   ├── UnknownVmError
    │   └── BundleError               bundle violates the netmig YANG model
    ├── DeviceError                   exit 3: .device names the device (name, host:port)
    │   ├── ConnectError
    │   ├── AuthError
    │   ├── HostKeyError
    │   ├── DeviceTimeoutError        (also a builtin TimeoutError)
    │   ├── MalformedReplyError       invalid XML or unexpected shape
    │   ├── VerifyError               running differs from what was committed
    │   ├── CapabilityError           missing capability, module or feature
    │   └── RpcError                  RFC 6241 rpc-error fields
    ├── TranslationError              exit 4
    │   ├── UnsupportedPolicyError    destination cannot express a policy
    │   └── PolicyConflictError       destination already holds something conflicting
    └── TransactionError              .outcomes: per-device outcome
        ├── MigrationRolledBackError  exit 5: failed, consistent, nothing applied anywhere
        └── RollbackIncompleteError   exit 6: inconsistent, names devices needing a person

Messages name what and where, in one line, and never contain secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BundleError",
    "CapabilityError",
    "ConnectError",
    "DeviceError",
    "DeviceTimeoutError",
    "HostKeyError",
    "InputError",
    "MalformedReplyError",
    "MigrationRolledBackError",
    "NetmigError",
    "PolicyConflictError",
    "Problem",
    "RollbackIncompleteError",
    "RpcError",
    "RpcErrorInfo",
    "TopologyError",
    "TransactionError",
    "TranslationError",
    "UnknownVmError",
    "UnsupportedPolicyError",
    "VerifyError",
]


class NetmigError(Exception):
    """Root of every error netmig raises on purpose."""

    exit_code: ClassVar[int] = 1


class InputError(NetmigError):
    """The user's input (topology, arguments, bundle) is wrong."""

    exit_code: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class TopologyError(InputError):
    """A topology or fabric file is invalid; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = str(self.problems[0]) if self.problems else "invalid topology"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


class UnknownVmError(InputError):
    """The VM is not known to the topology or to its source devices."""


class BundleError(InputError):
    """A VM bundle violates the netmig-vm-bundle model."""


class DeviceError(NetmigError):
    """Something went wrong talking to one device."""

    exit_code: ClassVar[int] = 3

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        self.detail = message
        super().__init__(f"{device}: {message}")


class ConnectError(DeviceError):
    """The device could not be reached."""


class AuthError(DeviceError):
    """The device refused our credentials."""


class HostKeyError(DeviceError):
    """The device's SSH host key is unknown or changed."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """The device did not answer in time."""


class VerifyError(DeviceError):
    """After the commit, the device's running config does not hold what was sent."""


class MalformedReplyError(DeviceError):
    """The device sent invalid XML or a reply of unexpected shape."""


class CapabilityError(DeviceError):
    """The device lacks a needed capability, module or feature."""


@dataclass(frozen=True, slots=True)
class RpcErrorInfo:
    """One <rpc-error> as RFC 6241 section 4.3 defines it."""

    type: str
    tag: str
    severity: str = "error"
    app_tag: str | None = None
    path: str | None = None
    message: str | None = None
    info: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.type}/{self.tag}"
        if self.path:
            text += f" at {self.path}"
        if self.message:
            text += f": {self.message}"
        return text


class RpcError(DeviceError):
    """The device answered an RPC with one or more rpc-errors."""

    def __init__(self, device: str, operation: str, errors: Sequence[RpcErrorInfo]) -> None:
        self.operation = operation
        self.errors = tuple(errors)
        first = self.errors[0] if self.errors else RpcErrorInfo("rpc", "operation-failed")
        self.tag = first.tag
        super().__init__(device, f"{operation} failed: {first}")


class TranslationError(NetmigError):
    """A bundle cannot be placed on its destination devices."""

    exit_code: ClassVar[int] = 4


class UnsupportedPolicyError(TranslationError):
    """A destination cannot express a policy kind the VM has."""

    def __init__(self, device: str, kind: str, reason: str = "") -> None:
        self.device = device
        self.kind = kind
        tail = f": {reason}" if reason else ""
        hint = f"use --allow-drop {kind} to migrate without it"
        super().__init__(f"{device}: cannot express {kind}{tail} ({hint})")


class PolicyConflictError(TranslationError):
    """A destination already holds something that conflicts with the VM's policies."""

    def __init__(self, conflicts: Sequence[str]) -> None:
        self.conflicts = tuple(conflicts)
        more = f" (and {len(self.conflicts) - 1} more)" if len(self.conflicts) > 1 else ""
        super().__init__(f"conflict: {self.conflicts[0] if self.conflicts else 'unknown'}{more}")


class TransactionError(NetmigError):
    """The network-wide transaction failed; .outcomes says what happened on each device."""

    def __init__(self, message: str, outcomes: Sequence[Any] = ()) -> None:
        self.outcomes = tuple(outcomes)
        super().__init__(message)


class MigrationRolledBackError(TransactionError):
    """The migration failed and every device was returned to where it was."""

    exit_code: ClassVar[int] = 5


class RollbackIncompleteError(TransactionError):
    """The migration failed and some devices could not be rolled back: a person must look."""

    exit_code: ClassVar[int] = 6

    def __init__(self, message: str, devices: Sequence[str], outcomes: Sequence[Any] = ()) -> None:
        self.devices = tuple(devices)
        super().__init__(f"{message}; needs manual action: {', '.join(self.devices)}", outcomes)

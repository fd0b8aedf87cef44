"""The change set of a network-wide transaction: what each device takes, and the steps taken on it.

Value types shared by :mod:`netmig.transaction` (which applies them), the modes that build them, the
journal hook that records the steps and the progress display that shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from netmig.netconf.session import DeviceSession
from netmig.settings import DeviceEndpoint
from netmig.xmlkit import Element

__all__ = ["DeviceChange", "PlannedChange", "SessionFactory", "Step", "StepHook"]


class Step(StrEnum):
    """A step the transaction is about to take on one device."""

    CONNECT = "connect"
    CHECK = "check-capabilities"
    LOCK = "lock"
    DISCARD = "discard-changes"
    EDIT = "edit-config"
    VALIDATE = "validate"
    CHECK_STAGED = "check-staged"  # read the staged candidate back and verify it (changes nothing)
    COMMIT_CONFIRMED = "commit-confirmed"
    VERIFY = "verify"
    CONFIRM = "confirm-commit"
    UNLOCK = "unlock"
    CANCEL_COMMIT = "cancel-commit"
    ROLLBACK_DISCARD = "rollback-discard"
    # compensation: a confirmed device undone by its own confirmed commit when another device's
    # confirming commit failed for good (still under the transaction's candidate lock)
    COMPENSATE = "compensate"                    # discard, edit-config of the undo, validate
    COMPENSATE_COMMIT = "compensate-commit"      # commit confirmed, persist-id compensate_ids[device]
    COMPENSATE_VERIFY = "compensate-verify"      # running no longer holds the VM's entries
    COMPENSATE_CONFIRM = "compensate-confirm"    # confirming commit of the undo


StepHook = Callable[[str, Step], None]
SessionFactory = Callable[[DeviceEndpoint], DeviceSession]


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """What one device must take: the ``<config>`` to send and how to check running afterwards.

    ``verify`` gets the device's running config (``<data>``, read with ``verify_filter``) and returns a
    list of mismatches, empty when the device holds what was meant. ``undo`` is the ``<config>`` removing
    exactly what ``edit`` adds (nothing the device held before), ``verify_undone`` checks running (read
    the same way) no longer holds any of it: with both, a device already confirmed when another device's
    confirming commit fails for good is compensated, and a cancel-commit that finds nothing pending
    counts as rolled back when running does not hold the change.

    ``extra_ops`` are RPC operations sent once, right after the edit (in the EDIT step, under the
    candidate lock: e.g. the middle mode's ``import-di``); ``undo_ops`` are sent right after the undo's
    edit when the device is compensated (e.g. ``withdraw-di``). A device whose change is only
    ``extra_ops`` (an empty ``edit``, no ``undo``) is compensated with ``undo_ops`` alone; its
    ``verify_undone`` may be None, and then the device's replies to ``undo_ops`` are the evidence.
    """

    endpoint: DeviceEndpoint
    edit: Element
    verify: Callable[[Element], list[str]]
    verify_filter: Element | None = None
    modules: tuple[str, ...] = ()
    features: tuple[tuple[str, str], ...] = ()
    undo: Element | None = None
    verify_undone: Callable[[Element], list[str]] | None = None
    extra_ops: tuple[Element, ...] = ()
    undo_ops: tuple[Element, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One device's part of a dry run: nothing is sent."""

    device: str
    address: str
    validate: str
    edit_xml: str

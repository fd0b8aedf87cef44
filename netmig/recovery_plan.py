"""Reading a journaled migration's plan: how to reach each device, and how to tell it holds the change.

The plan (netmig.journal_hook.journal_plan) names devices by endpoint and by the environment variable
holding their password; recovery and rollback rebuild endpoints, SSH policy and VM contexts from it, and
check a device's running config against the bundle the migration sent it, or, for a destination that
took learned state only (the plan's ``di-only``), ask it with ``export-di`` how many entries it holds for
the VM (the count only: the blob is opaque and never read).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from netmig.codecs.base import VmContext
from netmig.codecs.registry import get_codec
from netmig.errors import InputError, MalformedReplyError, NetmigError
from netmig.model import VmBundle
from netmig.model.bundle import from_dict
from netmig.netconf.session import DeviceSession
from netmig.settings import Credentials, DeviceEndpoint, QuirkProfile, SshPolicy
from netmig.xmlkit import element, sub, text_of

__all__ = ["ChangeLostError", "Check", "context_from_plan", "di_check", "endpoint_from_plan",
           "group_check", "holding_check", "plan_mapping", "ssh_from_plan"]


def plan_mapping(value: object, where: str) -> Mapping[str, object]:
    """``value`` as a mapping; InputError naming ``where`` in the plan when it is not one."""
    if not isinstance(value, Mapping):
        raise InputError(f"journal plan: {where} is missing or not an object")
    return value


def endpoint_from_plan(plan: Mapping[str, object], device: str,
                       environ: Mapping[str, str] | None = None) -> DeviceEndpoint:
    """The endpoint of ``device`` from a journal plan; the password is read from the variable it names."""
    entry = plan_mapping(plan_mapping(plan.get("devices"), "devices").get(device), f"devices/{device}")
    env = os.environ if environ is None else environ
    var = entry.get("login-env")
    password = env.get(var) if isinstance(var, str) else None
    if isinstance(var, str) and not password:
        raise InputError(f"{device}: environment variable {var} is not set; it must hold the password")
    key_file = entry.get("key-file")
    quirks = plan_mapping(entry.get("quirks", {}), f"devices/{device}/quirks")
    return DeviceEndpoint(device, str(entry["host"]), int(str(entry["port"])),
                          Credentials(str(entry["username"]), password,
                                      Path(key_file) if isinstance(key_file, str) else None),
                          QuirkProfile(validate=str(quirks.get("validate", "candidate")),  # type: ignore[arg-type]
                                       confirmed_timer_needs_quiet_s=float(
                                           str(quirks.get("confirmed-timer-needs-quiet-s", 0))),
                                       commit_blocked_while_confirm_pending=bool(
                                           quirks.get("commit-blocked-while-confirm-pending", False))))


def ssh_from_plan(plan: Mapping[str, object], base: SshPolicy | None = None) -> SshPolicy:
    """The SSH policy the migration used: its known_hosts unless the caller names one."""
    known = plan.get("known-hosts")
    policy = base or SshPolicy()
    if policy.known_hosts is None and isinstance(known, str):
        policy = replace(policy, known_hosts=Path(known))
    if plan.get("verify-host-keys") is False:
        policy = replace(policy, verify_host_keys=False)
    return policy


def context_from_plan(entry: Mapping[str, object]) -> VmContext:
    """The VM context journaled in a plan's ``destinations`` or ``sources`` entry."""
    ctx = plan_mapping(entry.get("context"), "context")
    macs, ips = ctx.get("macs") or [], ctx.get("ips") or []
    vlan, tenant = ctx.get("vlan"), ctx.get("tenant")
    return VmContext(str(ctx["vm-id"]), str(ctx.get("port") or ""),
                     macs=tuple(str(m) for m in macs) if isinstance(macs, list) else (),
                     ips=tuple(str(a) for a in ips) if isinstance(ips, list) else (),
                     tenant=tenant if isinstance(tenant, str) else None,
                     vlan=vlan if isinstance(vlan, int) else None)


class ChangeLostError(NetmigError):
    """A device was to be confirmed, but its pending commit is gone and running lacks the change: the
    device rolled the migration back by itself (its confirm timer expired before recovery came)."""

    def __init__(self, device: str, problem: str) -> None:
        self.device = device
        super().__init__(f"{device}: lost the change (its confirmed commit is gone, rolled back by the "
                         f"device's timer): running lacks it: {problem}")


Check = Callable[[DeviceSession], list[str]]


def holding_check(plan: Mapping[str, object], device: str, migration_id: str = "") -> Check | None:
    """How to tell that ``device`` holds what the migration sent it: its running config against the
    journaled ``sent`` bundle and VM context; for a DI-only destination (the plan's ``di-only``) the
    entries it holds for the VM (:func:`di_check`). None when the plan journals nothing to check against."""
    from netmig.modes.centralized import verifier

    entry = plan.get("destinations")
    entry = entry.get(device) if isinstance(entry, Mapping) else None
    devices = plan.get("devices")
    role = devices.get(device) if isinstance(devices, Mapping) else None
    if not isinstance(entry, Mapping):
        di_only = plan.get("di-only")
        di = di_only.get(device) if isinstance(di_only, Mapping) else None
        if isinstance(di, Mapping) and di.get("evidence") == "export-di" and isinstance(di.get("vm-id"), str):
            return di_check(str(di["vm-id"]), migration_id)
        if isinstance(di, Mapping) and di.get("evidence") == "export-di" and isinstance(di.get("vms"), list):
            return _all_of([di_check(str(vm), str(mid)) for vm, mid in di["vms"]])
        return None
    if isinstance(entry.get("edit"), str):
        return group_check(entry)
    if not isinstance(role, Mapping) or "codec" not in role:
        return None
    codec = get_codec(str(role["codec"]))
    ctx = context_from_plan(entry)
    sent = from_dict(VmBundle, plan_mapping(entry.get("sent"), f"destinations/{device}/sent"))
    verify = verifier(codec, sent, ctx)
    wanted = codec.config_filter(ctx)
    return lambda session: verify(session.get_config("running", wanted))


def group_check(entry: Mapping[str, object]) -> Check:
    """Whether a device holds a batch group's merged ``edit`` (journaled as XML, with the ``filter`` its
    verify read running with): :func:`netmig.batch_merge.missing_from`, as the group's own verify."""
    from netmig.batch_merge import missing_from
    from netmig.xmlkit import parse

    edit = parse(str(entry["edit"]))
    flt_text = entry.get("filter")
    flt = parse(flt_text) if isinstance(flt_text, str) else None
    return lambda session: missing_from(session.get_config("running", flt), edit)


def _all_of(checks: list[Check]) -> Check:
    return lambda session: [problem for check in checks for problem in check(session)]


def di_check(vm_id: str, migration_id: str) -> Check:
    """Whether a device holds learned state of ``vm_id``: it answers ``export-di`` with the entries it
    holds for the VM (learned, and seeded ones its imports wrote, once committed); only the reply's
    ``entry-count`` is read. No entry means it holds none of the migration's DI (a problem)."""
    from netmig.modes.middle import MIGRATION_NS

    def check(session: DeviceSession) -> list[str]:
        op = element(MIGRATION_NS, "export-di")
        sub(op, MIGRATION_NS, "migration-id", migration_id or "recovery")
        sub(op, MIGRATION_NS, "vm-id", vm_id)
        count = (text_of(session.rpc(op), MIGRATION_NS, "entry-count") or "").strip()
        if not count.isdigit():
            raise MalformedReplyError(session.device, f"export-di: bad entry-count {count!r}")
        if int(count) == 0:
            return [f"holds no learned state of {vm_id} (export-di: 0 entries)"]
        return []
    return check

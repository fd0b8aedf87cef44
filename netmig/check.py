"""Check: pre-flight checks of one destination device before anything is touched. Pure, no I/O.

Three questions per destination: can the device hold every kind it is about to receive (models, features,
codec support), does it already hold something that conflicts (same name with other content, an address
or MAC bound to another VM, an overlapping NAT mapping, the VLAN used by another tenant), and what is left
after what the user allowed us to drop.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from netmig.codecs.base import DeviceCodec, DeviceInventory
from netmig.errors import PolicyConflictError, UnsupportedPolicyError
from netmig.model import PolicyKind, VmBundle

__all__ = ["CheckResult", "Conflict", "ConflictPolicy", "check_destination", "delta", "find_conflicts",
           "supportable"]


class ConflictPolicy(StrEnum):
    """What to do when a destination already holds something conflicting."""

    FAIL = "fail"                    # stop the migration, change nothing (default)
    SKIP = "skip-conflicting"        # leave the conflicting kinds out on that device and name them


@dataclass(frozen=True, slots=True)
class Conflict:
    """One conflict found on a destination device."""

    device: str
    kind: PolicyKind
    what: str

    def __str__(self) -> str:
        return f"{self.device}: {self.kind.value}: {self.what}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What will be applied on a device, and what was dropped or skipped on the way."""

    device: str
    bundle: VmBundle
    dropped: tuple[PolicyKind, ...]
    conflicts: tuple[Conflict, ...]


def supportable(device: str, codec: DeviceCodec, bundle: VmBundle, *, modules: Collection[str],
                features: Collection[tuple[str, str]],
                allow_drop: Collection[PolicyKind]) -> tuple[VmBundle, tuple[PolicyKind, ...]]:
    """The bundle reduced to what the device can hold; raise for a kind it cannot hold unless allowed.

    A kind is holdable when the codec can express it and the device implements the modules and features
    the codec needs for it (from its hello or yang-library).
    """
    dropped: list[PolicyKind] = []
    for kind in sorted(bundle.kinds(), key=lambda k: k.value):
        reason = ""
        if kind not in codec.supported_kinds:
            reason = f"the {codec.name} model has no place for it"
        else:
            missing_modules = sorted(set(codec.required_modules([kind])) - set(modules))
            missing_features = sorted(set(codec.required_features([kind])) - set(features))
            if missing_modules:
                reason = f"module {', '.join(missing_modules)} not implemented"
            elif missing_features:
                reason = "feature " + ", ".join(f"{m}:{f}" for m, f in missing_features) + " not supported"
        if not reason:
            continue
        if kind not in allow_drop:
            raise UnsupportedPolicyError(device, kind.value, reason)
        dropped.append(kind)
    return bundle.without(dropped), tuple(dropped)


def find_conflicts(device: str, bundle: VmBundle, inventory: DeviceInventory,
                   existing: VmBundle | None) -> list[Conflict]:
    """Everything on the device that contradicts the VM's bundle.

    ``existing`` is what the device already holds for this same VM (a retry, a stale copy): an entry with
    the same key and other content is a conflict; the same content is fine (applying it again is a no-op).
    """
    vm = bundle.vm_id
    found: list[Conflict] = []
    if existing is not None:
        for kind in sorted(bundle.kinds() & existing.kinds(), key=lambda k: k.value):
            if kind.is_dynamic:
                continue  # learned state is refreshed by the migration, never a conflict
            theirs = {_key(e): e for e in existing.entries(kind)}
            for entry in bundle.entries(kind):
                old = theirs.get(_key(entry))
                if old is not None and old != entry:
                    found.append(Conflict(device, kind, f"{_key(entry)} already exists with other content"))
    for address, kind in _addresses(bundle):
        others = sorted(o for o in inventory.owners_of(address) if o is not None and o != vm)
        if others:
            found.append(Conflict(device, kind, f"{address} is bound to VM {others[0]}"))
    ours_nat = {n.internal_address: n.external_address for n in bundle.static.nat_static}
    for mapping in inventory.nat:
        if mapping.owner == vm:
            continue
        for internal, external in ours_nat.items():
            same = (mapping.internal_address, mapping.external_address) == (internal, external)
            if not same and (mapping.external_address == external or mapping.internal_address == internal):
                found.append(Conflict(device, PolicyKind.NAT_STATIC,
                                      f"{internal}->{external} overlaps {mapping.internal_address}->"
                                      f"{mapping.external_address} of {mapping.owner or 'another owner'}"))
    for member in bundle.static.lb_member:
        for use in inventory.lb:
            if (use.pool, use.address, use.port) == (member.pool, member.address, member.port) \
                    and use.owner not in (None, vm):
                what = f"{member.pool} {member.address}:{member.port} belongs to VM {use.owner}"
                found.append(Conflict(device, PolicyKind.LB_MEMBER, what))
    vlan = bundle.static.port_profile.vlan if bundle.static.port_profile else bundle.identity.segment
    tenant = bundle.identity.tenant
    if vlan is not None and tenant is not None:
        for port in inventory.ports:
            if port.vlan == vlan and port.tenant not in (None, tenant) and port.vm_id != vm:
                found.append(Conflict(device, PolicyKind.PORT_PROFILE,
                                      f"VLAN {vlan} is used by tenant {port.tenant} on {port.port}"))
                break
    return found


def _key(entry: object) -> object:
    return getattr(entry, "key", entry)


def _addresses(bundle: VmBundle) -> Iterable[tuple[str, PolicyKind]]:
    seen: set[str] = set()
    for mac in bundle.identity.mac:
        if mac not in seen:
            seen.add(mac)
            yield mac, PolicyKind.MAC_ENTRY
    for ip in bundle.identity.ip:
        if ip not in seen:
            seen.add(ip)
            yield ip, PolicyKind.ARP_ENTRY


def check_destination(device: str, codec: DeviceCodec, bundle: VmBundle, *, modules: Collection[str],
                      features: Collection[tuple[str, str]], inventory: DeviceInventory,
                      existing: VmBundle | None, allow_drop: Collection[PolicyKind] = (),
                      on_conflict: ConflictPolicy = ConflictPolicy.FAIL) -> CheckResult:
    """Every pre-flight check for one destination; raises on what the user did not allow."""
    reduced, dropped = supportable(device, codec, bundle, modules=modules, features=features,
                                   allow_drop=allow_drop)
    conflicts = find_conflicts(device, reduced, inventory, existing)
    if conflicts and on_conflict is ConflictPolicy.FAIL:
        raise PolicyConflictError([str(c) for c in conflicts])
    if conflicts:
        reduced = reduced.without({c.kind for c in conflicts})
    return CheckResult(device, reduced, dropped, tuple(conflicts))


def delta(bundle: VmBundle, existing: VmBundle | None) -> VmBundle:
    """The static entries the device does not hold yet (same key, same content: already there).

    Learned state is always sent again, so the seeds carry fresh timers. Sending only the difference
    keeps a device's own naming of entries it already has (e.g. an ietf-nat mapping index).
    """
    if existing is None:
        return bundle
    static = bundle.static
    changes: dict[str, Any] = {}
    for kind in PolicyKind:
        if kind.is_dynamic:
            continue
        have = set(existing.entries(kind))
        want = bundle.entries(kind)
        if not want or not have:
            continue
        keep = tuple(e for e in want if e not in have)
        if kind in (PolicyKind.QOS, PolicyKind.PORT_PROFILE):
            changes[kind.attr] = keep[0] if keep else None
        else:
            changes[kind.attr] = keep
    return replace(bundle, static=replace(static, **changes)) if changes else bundle

"""Pull: fetch one VM's configuration and learned state from its source devices and decode it.

Each source device is asked only for this VM's entries (the codec's subtree filters, by VM id, port,
MACs and IPs), configuration with get-config and learned state with get; both replies are decoded into
the canonical bundle. The adjacent bridge is read first: what it knows of the VM (MACs, IPs, tenant,
VLAN) narrows the filters sent to the other devices, which are then read in parallel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

from netmig.codecs.base import DeviceCodec, Element, VmContext
from netmig.errors import UnknownVmError
from netmig.model import VmBundle

__all__ = ["ReadSession", "SourceDevice", "context_from", "pull_device", "pull_sources"]

log = logging.getLogger(__name__)


class ReadSession(Protocol):
    """The two reads pull needs from a NETCONF session."""

    def get_config(self, source: str, filter: Element | None = None) -> Element: ...

    def get(self, filter: Element | None = None) -> Element: ...


@dataclass(frozen=True, slots=True)
class SourceDevice:
    """A source device to read, with its codec and the VM's port on it (None: not attached there)."""

    name: str
    codec: DeviceCodec
    session: ReadSession
    port: str | None = None


def pull_device(source: SourceDevice, ctx: VmContext) -> VmBundle:
    """Read and decode this VM's part held by one device."""
    local = replace(ctx, port=source.port or "")
    config = source.session.get_config("running", source.codec.config_filter(local))
    state = source.session.get(source.codec.state_filter(local))
    bundle = source.codec.decode(config, state, local)
    log.debug("pull %s: %s", source.name, {k.value: n for k, n in bundle.counts().items() if n})
    return bundle


def context_from(bundle: VmBundle, base: VmContext) -> VmContext:
    """Widen the context with what a device revealed about the VM (MACs, IPs, tenant, VLAN)."""
    ident, dyn = bundle.identity, bundle.dynamic
    vlan = bundle.static.port_profile.vlan if bundle.static.port_profile else ident.segment
    macs = set(base.macs) | set(ident.mac) | {m.mac for m in dyn.mac_entry}
    ips = set(base.ips) | set(ident.ip) | {d.ip for d in dyn.dhcp_binding if d.ip is not None}
    ips |= {a.ip for a in dyn.arp_entry if a.mac in macs} | {n.ip for n in dyn.nd_entry if n.mac in macs}
    return replace(base, macs=tuple(macs), ips=tuple(ips),
                   tenant=base.tenant or ident.tenant, vlan=base.vlan or vlan)


def pull_sources(bridge: SourceDevice, others: list[SourceDevice], ctx: VmContext, *,
                 on_step: Callable[[str, str], None] | None = None,
                 workers: int = 8) -> tuple[VmContext, Mapping[str, VmBundle]]:
    """Read the bridge first, then the other source devices in parallel; per-device bundles.

    Raises UnknownVmError when no source device holds anything for the VM.
    """
    notify = on_step or (lambda device, step: None)
    notify(bridge.name, "pull")
    first = pull_device(bridge, ctx)
    wide = context_from(first, ctx)
    bundles: dict[str, VmBundle] = {bridge.name: first}
    if others and workers <= 1:  # sequential (a batch's thread; its reads are mostly local)
        for other in others:
            notify(other.name, "pull")
            bundles[other.name] = pull_device(other, wide)
    elif others:
        for other in others:
            notify(other.name, "pull")
        with ThreadPoolExecutor(max_workers=min(workers, len(others))) as pool:
            results = pool.map(lambda s: (s.name, pull_device(s, wide)), others)
            bundles.update(results)
    held = {name: b for name, b in bundles.items() if b.kinds()}
    if not held and not (first.identity.mac or first.identity.ip):
        raise UnknownVmError(f"{ctx.vm_id}: no source device holds anything for it "
                             f"(looked at {', '.join(sorted(bundles))})")
    return wide, held

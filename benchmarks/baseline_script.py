"""The baseline: a plain sequential script written the way ncclient's documentation shows.

For each device, one after another: ``manager.connect(...)``, ``get_config`` (and ``get`` for learned
state) at the source devices; then at each destination ``manager.connect(...)``, ``get_config``,
``edit_config(target="candidate")``, ``commit()``. Stock ncclient (no transport fixes), no pre-staging,
no parallelism, no confirmed commit, no verification. To be fair it reuses netmig's pure codecs and
translation for the data work, so the difference measured is how the NETCONF work is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from ncclient import manager

from netmig.codecs.base import Element, VmContext
from netmig.devices import handles_for
from netmig.model import PolicyKind
from netmig.modes.centralized import _rules_for
from netmig.pull import SourceDevice, pull_sources
from netmig.topology import resolve
from netmig.topology.model import Topology
from netmig.translate import translate

__all__ = ["migrate_vm"]


def _data(xml: str) -> Element:
    data = etree.fromstring(xml.encode()).find("{urn:ietf:params:xml:ns:netconf:base:1.0}data")
    if data is None:
        raise ValueError("reply without <data>")
    return data


class _Reads:
    """ncclient manager as the two reads netmig's pull needs (replies parsed as the docs show)."""

    def __init__(self, mgr: Any) -> None:
        self.mgr = mgr

    def get_config(self, source: str, filter: Element | None = None) -> Element:
        return _data(self.mgr.get_config(source=source, filter=filter).xml)

    def get(self, filter: Element | None = None) -> Element:
        return _data(self.mgr.get(filter=filter).xml)


def _connect(endpoint: Any, ssh_config: Path) -> Any:
    return manager.connect(host=endpoint.host, port=endpoint.port, username=endpoint.credentials.username,
                           password=endpoint.credentials.password, hostkey_verify=True,
                           ssh_config=str(ssh_config), allow_agent=False, look_for_keys=False, timeout=60)


def migrate_vm(topology: Topology, vm: str, source: str, destination: str, *,
               environ: Mapping[str, str], ssh_config: Path) -> int:
    """Move one VM the naive way; returns the number of devices changed."""
    plan = resolve(topology, vm, source, destination)
    handles = handles_for((*plan.source_devices, *plan.destination_devices), environ)
    now = datetime.now(UTC)
    hint = plan.vm
    ctx = VmContext(vm, plan.source.port, macs=hint.macs if hint else (), ips=hint.ips if hint else (),
                    tenant=hint.tenant if hint else None, now=now)
    managers = []
    try:
        sources = []
        for dev in plan.source_devices:  # one after another
            mgr = _connect(handles[dev.name].endpoint, ssh_config)
            managers.append(mgr)
            port = plan.source.port if dev.name == plan.source.bridge.name else None
            sources.append(SourceDevice(dev.name, handles[dev.name].codec, _Reads(mgr), port))
        bridge = next(s for s in sources if s.name == plan.source.bridge.name)
        wide, pulled = pull_sources(bridge, [s for s in sources if s is not bridge], ctx, workers=1)
    finally:
        for mgr in managers:
            mgr.close_session()
    partners = {(d, PolicyKind(k.value)): dests for (d, k), dests in plan.partners.items()}
    routed = translate(pulled, partners, _rules_for(plan))
    changed = 0
    for name, bundle in sorted(routed.items()):
        handle = handles[name]
        port = plan.destination.port if name == plan.destination.bridge.name else ""
        vlan = bundle.static.port_profile.vlan if bundle.static.port_profile else bundle.identity.segment
        dctx = VmContext(vm, port, macs=wide.macs, ips=wide.ips, tenant=bundle.identity.tenant or wide.tenant,
                         vlan=vlan, now=now)
        config = handle.codec.encode(bundle, dctx)
        with _connect(handle.endpoint, ssh_config) as mgr:
            mgr.get_config(source="running")
            mgr.edit_config(target="candidate", config=etree.tostring(config).decode())
            mgr.commit()
        changed += 1
    return changed

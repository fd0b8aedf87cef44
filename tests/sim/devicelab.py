"""A running two-site fabric seen through netmig's topology and an independent ncclient reader.

Shared by the simulator tests that compare every device's running config before and after a migration.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

from netmig.simlab import rewrite_for_fabric
from netmig.topology import Topology, load_topology

ALL_DEVICES = ("a-leaf1", "a-leaf2", "a-spine1", "a-fw1", "b-leaf1", "b-spine1", "b-fw1", "b-nat1")


class DeviceLab:
    """The fabric, the topology rewritten to reach it, and one ncclient manager per device (lazy)."""

    def __init__(self, fabric: Any, directory: Path, nc_connect: Callable[..., Any]) -> None:
        self.fabric = fabric
        self.topology: Topology
        self.topology, self.environ = rewrite_for_fabric(load_topology(directory / "topology.yaml"),
                                                         fabric.devices_json, fabric.known_hosts)
        self._nc = nc_connect
        self._managers: dict[str, Any] = {}

    def mgr(self, device: str) -> Any:
        if device not in self._managers:
            self._managers[device] = self._nc(self.fabric, device)
        return self._managers[device]

    def running(self, device: str) -> Any:
        return self.mgr(device).get_config(source="running").data_ele

    def snapshot(self) -> dict[str, bytes]:
        return {d: etree.tostring(self.running(d), method="c14n") for d in ALL_DEVICES}

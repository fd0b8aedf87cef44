"""Scale: 50 simulated devices in one process, each serving one concurrent NETCONF session.

A generated 50-device fabric (both flavours, with attached VMs) runs in one asyncio loop; 50 ncclient
sessions in 50 threads (host keys verified) all connect first, then each does edit-config + commit on
its own device at the same time. Every commit must land in that device's running datastore.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lxml import etree
from netconf_sim.profiles import ACME_NS, IF_NS, NMD_NS

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
DEVICES = 50


def scale_fabric(count: int = DEVICES) -> dict[str, Any]:
    """A fabric dict of ``count`` leaves, alternating IETF and acme flavour, one VM each."""
    devices: dict[str, Any] = {}
    for i in range(count):
        ietf = i % 2 == 0
        ports = ["eth1", "eth2", "eth3"] if ietf else ["ethernet-1/1", "ethernet-1/2", "ethernet-1/3"]
        devices[f"leaf{i:02d}"] = {
            "profile": "ietf-leaf" if ietf else "acme-leaf", "username": "admin", "password": f"pw{i}",
            "ports": ports,
            "vms": [{"vm-id": f"vm-{i:02d}", "port": ports[0], "tenant": "blue", "vlan": 100 + i,
                     "macs": [f"52:54:00:00:10:{i:02x}"], "ips": [f"10.9.{i}.10"]}],
        }
    return {"devices": devices}


def vlan_edit(device: str, vlan: int) -> tuple[str, str]:
    """(edit-config body, XPath that reads the VLAN back) for the device's second port."""
    if int(device[4:]) % 2 == 0:
        body = (f'<interfaces xmlns="{IF_NS}"><interface><name>eth2</name>'
                f'<access-vlan xmlns="{NMD_NS}">{vlan}</access-vlan></interface></interfaces>')
        return body, f".//{{{IF_NS}}}interface[{{{IF_NS}}}name='eth2']/{{{NMD_NS}}}access-vlan"
    body = (f'<acme-fabric xmlns="{ACME_NS}"><port><name>ethernet-1/2</name><vlan>{vlan}</vlan></port>'
            "</acme-fabric>")
    return body, f".//{{{ACME_NS}}}port[{{{ACME_NS}}}name='ethernet-1/2']/{{{ACME_NS}}}vlan"


def test_fifty_devices_serve_fifty_concurrent_sessions(fresh_fabric: Callable[..., Any],
                                                       nc_connect: Callable[..., Any]) -> None:
    started = time.monotonic()
    fab = fresh_fabric(scale_fabric())
    names = sorted(fab.endpoints)
    assert len(names) == DEVICES
    assert len(set(ep.port for ep in fab.endpoints.values())) == DEVICES
    all_connected = threading.Barrier(DEVICES, timeout=60)

    def session(name: str) -> tuple[str, str, int]:
        mgr = nc_connect(fab, name)  # thread-safe: it only appends to a list
        try:
            all_connected.wait()  # 50 sessions open at once before anyone writes
            vlan = 1000 + int(name[4:])
            body, read_back = vlan_edit(name, vlan)
            mgr.edit_config(target="candidate", config=f'<config xmlns="{NC}">{body}</config>')
            mgr.commit()
            running = etree.fromstring(mgr.get_config(source="running").xml.encode())
            got = [str(v.text) for v in running.iterfind(read_back)]
            return name, ",".join(got), vlan
        finally:
            mgr.close_session()

    with ThreadPoolExecutor(max_workers=DEVICES) as pool:
        results = list(pool.map(session, names))
    assert [r[0] for r in results] == names
    wrong = [(name, got, vlan) for name, got, vlan in results if got != str(vlan)]
    assert wrong == []
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"50-device scale run took {elapsed:.1f} s"

"""What a batch test reads back from a generated fabric (fabricgen, learned_fw=(0, 2)): the VMs named in
running, each device's learned entries per VM, and whether a VM moved or is absent everywhere at site B.

Shared by the middle and distributed batch tests.
"""

from __future__ import annotations

import re
import time
from typing import Any

from lxml import etree

# what each generated VM's learned state becomes at site B
DI_AT_B = {"leaf": {"mac-entry": 1, "arp-entry": 1, "dhcp-binding": 1},
           "b-spine1": {"mac-entry": 1, "arp-entry": 1}, "b-fw1": {"firewall-session": 2}}
KINDS = ("mac-entry", "arp-entry", "dhcp-binding", "firewall-session", "nat-session")


def running(fabric: Any, name: str) -> bytes:
    """A device's running tree, canonical XML, read on the simulator's loop."""
    dev = fabric.device(name)
    return bytes(fabric.call(lambda: etree.tostring(dev.engine.running_view(), method="c14n")))


def vms_in_running(fabric: Any, prefix: str) -> set[str]:
    """The generated VM ids named in the running config of the devices whose name starts with ``prefix``."""
    return {vm for name in fabric.devices if name.startswith(prefix)
            for vm in re.findall(r"vm-\d{5}", running(fabric, name).decode())}


def learned(fabric: Any, device: str, vm: str, origin: str | None = None) -> dict[str, int]:
    """How many entries of each DI kind ``device``'s tables hold for ``vm`` (of ``origin`` if given)."""
    counts: dict[str, int] = {}
    tables = fabric.device(device).learned
    for kind in (k for k in KINDS if k in tables.kinds):
        n = sum(1 for e in tables.entries(kind) if e.vm_id == vm and origin in (None, e.origin))
        if n:
            counts[kind] = n
    return counts


def assert_moved(fabric: Any, gen: Any, vm_id: str) -> None:
    """Static policies and learned state of ``vm_id`` at site B (all of it seeded there, the MAC on the
    translated port), its learned state still at site A."""
    vm = next(v for v in gen.vms if v.vm_id == vm_id)
    leaf_b, leaf_a = f"b-leaf{vm.leaf:02d}", f"a-leaf{vm.leaf:02d}"
    assert vm_id in running(fabric, leaf_b).decode(), f"{vm_id}: no static policy on {leaf_b}"
    assert (learned(fabric, leaf_b, vm_id) == learned(fabric, leaf_b, vm_id, "seeded")
            == DI_AT_B["leaf"]), vm_id
    macs = [e for e in fabric.device(leaf_b).learned.entries("mac-entry") if e.vm_id == vm_id]
    assert [(e.origin, e.fields.get("port")) for e in macs] == [("seeded", vm.b_port)]
    for device in ("b-spine1", "b-fw1"):
        assert (learned(fabric, device, vm_id) == learned(fabric, device, vm_id, "seeded")
                == DI_AT_B[device]), (vm_id, device)
    assert learned(fabric, leaf_a, vm_id) == DI_AT_B["leaf"], f"{vm_id}: source lost its state"


def assert_absent(fabric: Any, vm_id: str) -> None:
    """Nothing of ``vm_id`` at site B: no learned entry, no mention in running."""
    for name in fabric.devices:
        if name.startswith("b-"):
            assert learned(fabric, name, vm_id) == {}, (vm_id, name)
    assert vm_id not in vms_in_running(fabric, "b-")


def wait_settled(fabric: Any, timeout_s: float = 10.0) -> None:
    """Wait until no device has a confirmed commit pending."""
    deadline = time.monotonic() + timeout_s
    while any(d.runtime.pending is not None for d in fabric.devices.values()):
        assert time.monotonic() < deadline, "a confirmed commit stays pending"
        time.sleep(0.1)


def claim(fabric: Any, source: str, destination: str, vm_id: str, kind: str, owner: str) -> None:
    """Make ``destination`` hold, learned and owned by ``owner``, an entry at the key of ``vm_id``'s
    first ``kind`` entry on ``source``: importing ``vm_id``'s DI there conflicts (di-conflict)."""
    entry = next(e for e in fabric.device(source).learned.entries(kind) if e.vm_id == vm_id)
    fields = {k.replace("-", "_"): v for k, v in entry.fields.items()}
    fabric.device(destination).learned.add(kind, vm_id=owner, **fields)


def assert_nothing_pending(fabric: Any) -> None:
    """No device has a confirmed commit pending (a group cancelled, not left to expire)."""
    pending = sorted(n for n, d in fabric.devices.items() if d.runtime.pending is not None)
    assert pending == [], f"confirmed commits pending on {pending}"

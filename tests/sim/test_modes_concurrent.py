"""Many VMs at once in every mode: concurrent migrations of one coordinator share the spine and the
middleboxes of each site (one candidate lock, one pending confirmed commit per device) and must all move.

A generated two-site fabric (benchmarks/fabricgen.py) with 8 VMs on 4 leaves; 8 threads each run one
``netmig.api.migrate``. Before netmig.devicegate, such migrations livelocked on lock timeouts
(centralized, middle) or failed on each other's pending persistent commits (d-push, d-pull).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from netmig.api import migrate
from netmig.devicegate import held_s
from netmig.feedback import MigrationResult
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.store import SqliteStore


def _vms_on(fabric: Any, name: str) -> set[str]:
    text = fabric.call(lambda: etree.tostring(fabric.device(name).engine.running_view()).decode())
    return set(re.findall(r"vm-\d{5}", text))


@pytest.mark.parametrize("mode", list(Mode))
def test_eight_vms_at_once_all_move(tmp_path: Path, schema_cache: Any, fabricgen: Any, mode: Mode) -> None:
    gen = fabricgen.generate(8, leaves=4)
    options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        store = SqliteStore(tmp_path / "store.sqlite")
        assert _vms_on(fabric, "b-nat1") == set()
        before = held_s()

        def one(vm: Any) -> MigrationResult:
            result = migrate(vm.vm_id, source=vm.source_host, destination=vm.destination_host, topology=topo,
                             options=options, environ=environ, store=store, feedback_deadline_s=30)
            assert isinstance(result, MigrationResult)
            return result

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, gen.vms))
        assert all(r.ok for r in results)
        everyone = {v.vm_id for v in gen.vms}
        for shared in ("b-spine1", "b-fw1", "b-nat1"):  # every VM's part landed on the shared devices
            assert _vms_on(fabric, shared) == everyone, shared
        for vm in gen.vms:
            assert vm.vm_id in _vms_on(fabric, f"b-leaf{vm.leaf:02d}")
        assert all(fabric.call(lambda n=n: fabric.device(n).runtime.pending) is None
                   for n in ("b-spine1", "b-fw1", "b-nat1"))
        assert sum(held_s().values()) > sum(before.values())  # they queued through the gate

"""Mass migration over SSH to a generated fabric: group commit per destination device, per-VM feedback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from netmig.batch import BatchItem, load_batch, migrate_many
from netmig.errors import InputError
from netmig.feedback import Outcome


def _vms_on(fabric: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    for name, dev in fabric.devices.items():
        if name.startswith(prefix):
            found |= set(re.findall(r"vm-\d{5}", etree.tostring(dev.engine.running_view()).decode()))
    return found


def test_one_conflicting_vm_is_left_out_and_the_other_nine_move(tmp_path: Path, schema_cache: Any,
                                                                fabricgen: Any) -> None:
    gen = fabricgen.generate(10, leaves=14, occupied=[3])
    items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        assert _vms_on(fabric, "b-") == set()
        seen: list[str] = []
        result = migrate_many(items, topology=topo, environ=environ, workers=2,
                              on_vm=lambda r: seen.append(r.vm))
        expected = {v.vm_id for v in gen.vms} - {"vm-00003"}
        assert set(result.succeeded) == expected
        (failed,) = result.failed
        assert failed.vm == "vm-00003" and failed.outcome is Outcome.FAIL
        assert failed.error is not None and "squatter-00003" in failed.error
        assert _vms_on(fabric, "b-") == expected
        assert sorted(seen) == sorted(v.vm_id for v in gen.vms)
        # group commit: one group, every destination device of the nine in it, sessions reused
        assert {r.group for r in result.results if r.outcome is Outcome.SUCCESS} == {0}
        assert result.sessions_opened < 2 * len(fabric.devices) + len(fabric.devices)


def test_a_failing_group_fails_only_its_vms(tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    gen = fabricgen.generate(4, leaves=2)
    items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
    items.append(BatchItem("vm-nowhere", gen.vms[0].source_host, gen.vms[1].destination_host))
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, topo, environ):
        result = migrate_many(items, topology=topo, environ=environ, workers=2, group_size=2)
        assert set(result.succeeded) == {v.vm_id for v in gen.vms}
        assert [r.vm for r in result.failed] == ["vm-nowhere"]
        assert {r.group for r in result.results if r.group is not None} == {0, 1}
        assert _vms_on(fabric, "b-") == {v.vm_id for v in gen.vms}


def test_load_batch_csv_and_yaml(tmp_path: Path) -> None:
    csv_file = tmp_path / "b.csv"
    csv_file.write_text("vm,from,to\nvm-1,h1,h2\nvm-2,h3,h4\n")
    assert load_batch(csv_file) == (BatchItem("vm-1", "h1", "h2"), BatchItem("vm-2", "h3", "h4"))
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text("- {vm: vm-1, from: h1, to: h2}\n")
    assert load_batch(yaml_file) == (BatchItem("vm-1", "h1", "h2"),)
    yaml_file.write_text("- {vm: vm-1, from: h1, to: h2}\n- {vm: vm-1, from: h3, to: h4}\n")
    with pytest.raises(InputError, match="twice"):
        load_batch(yaml_file)
    yaml_file.write_text("- {vm: vm-1, from: h1}\n")
    with pytest.raises(InputError, match="needs vm, from and to"):
        load_batch(yaml_file)


def test_group_verify_finds_what_running_lacks() -> None:
    from netmig.batch import missing_from
    from netmig.xmlkit import parse

    ns = 'xmlns="urn:x" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"'
    running = parse(f'<data {ns}><top><e><k>1</k><v>a:x</v><extra>y</extra></e><e><k>2</k><v>b</v></e>'
                    f'<c><leaf>7</leaf></c></top></data>'.encode())
    ok = parse(f'<nc:config {ns}><top><e><k>1</k><v>other:x</v></e><e><k>2</k></e><c><leaf>7</leaf></c>'
               f'</top></nc:config>'.encode())
    assert missing_from(running, ok) == []
    bad = parse(f'<nc:config {ns}><top><e><k>1</k><v>z</v></e><e><k>3</k></e><c><leaf>8</leaf></c>'
                f'<e nc:operation="delete"><k>9</k></e></top></nc:config>'.encode())
    problems = missing_from(running, bad)
    assert len(problems) == 3, problems
    assert any("k=3" in p for p in problems) and any("leaf=8" in p for p in problems)


def test_bulk_reads_give_the_same_outcome_and_devices_as_per_vm_reads(tmp_path: Path, schema_cache: Any,
                                                                    fabricgen: Any) -> None:
    """Two leaves: every device is read once for the batch (netmig.bulkread), including the leaf where a
    squatter holds vm-00003's destination port; per-VM feedback, the conflict and what each device holds
    afterwards are those of per-VM reads."""
    from netmig.batch import bulk_devices
    from netmig.topology import resolve

    gen = fabricgen.generate(10, leaves=2, occupied=[3])
    items = [BatchItem(v.vm_id, v.source_host, v.destination_host) for v in gen.vms]
    after: dict[bool, tuple[Any, dict[str, bytes]]] = {}
    for bulk in (True, False):
        with fabricgen.running(gen, tmp_path / f"state-{bulk}", schemas=schema_cache) as (fabric, topo, env):
            if bulk:
                plans = [resolve(topo, i.vm, i.source, i.destination) for i in items]
                chosen = bulk_devices(plans, topo)
                assert {"b-leaf00", "b-leaf01", "a-leaf00", "a-leaf01", "b-spine1"} <= set(chosen)
            result = migrate_many(items, topology=topo, environ=env, workers=2, bulk=bulk)
            views = {n: etree.tostring(d.engine.running_view(), method="c14n")
                     for n, d in sorted(fabric.devices.items())}
            after[bulk] = (result, views)
    for bulk in (True, False):
        result = after[bulk][0]
        assert set(result.succeeded) == {v.vm_id for v in gen.vms} - {"vm-00003"}, bulk
        (failed,) = result.failed
        assert failed.vm == "vm-00003" and failed.error is not None and "squatter-00003" in failed.error
    assert [(r.vm, r.outcome, r.devices) for r in after[True][0].results] == \
        [(r.vm, r.outcome, r.devices) for r in after[False][0].results]
    differ = [n for n in after[True][1] if _stamped(after[True][1][n]) != _stamped(after[False][1][n])]
    assert differ == []


def _stamped(view: bytes) -> bytes:
    """A running config without its time stamps (seeded entries expire at an absolute time)."""
    return re.sub(rb">\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ<", b"><", view)

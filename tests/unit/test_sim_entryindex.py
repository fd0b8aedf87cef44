"""netconf-sim's keyed list entries kept across edits (EntryIndex) answer what a scan of the tree answers,
through edits, errors, test-only, commit's tree swap, discard, copy-config and restore; the candidate's
log of edits brings back the same trees after a restart."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from netconf_sim.editconfig import apply_edit
from netconf_sim.engine import DeviceEngine
from netconf_sim.entryindex import EntryIndex
from netconf_sim.rpcerror import SimRpcError
from netconf_sim.schema import Schema
from netconf_sim.xml import NC_NS, Element, parse

ST = "urn:netmig:test:simtest"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sim_engine"
NAMES = ["a", "b", "c", "d", "e"]
ITEM_PATH = (f"{{{ST}}}top", f"{{{ST}}}item")


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(["simtest"], {"simtest": ["colors"]}, search_path=[DATA_DIR])


def cfg(body: str) -> Element:
    return parse(f'<config xmlns="{NC_NS}" xmlns:nc="{NC_NS}"><top xmlns="{ST}">{body}</top></config>')


class ScanningEngine(DeviceEngine):
    """The reference: every edit gets a fresh index (what edit-config did before), nothing is kept."""

    def _entries_of(self, tree: Element) -> EntryIndex:
        return EntryIndex()


def _edit(step: tuple[Any, ...]) -> tuple[Element, str]:
    """The edit-config of a step and its test-option."""
    op, name, size = step
    item = f"<item{{}}><name>{name}</name><size>{size}</size></item>"
    bodies = {
        "merge": item.format(""),
        "create": item.format(' nc:operation="create"'),
        "replace": item.format(' nc:operation="replace"'),
        "delete": f'<item nc:operation="delete"><name>{name}</name></item>',
        "remove": f'<item nc:operation="remove"><name>{name}</name></item>',
        "drop-size": f'<item><name>{name}</name><size nc:operation="remove"/></item>',
        "drop-key": f'<item><name>{name}</name><name nc:operation="delete"/></item>',
        "bad-size": f"<item><name>{name}</name><size>500</size></item>",
        "test-only": item.format(""),
        "test-only-delete": f'<item nc:operation="delete"><name>{name}</name></item>',
        "replace-top": "",  # the whole container, with one item
    }
    if op == "replace-top":
        return parse(f'<config xmlns="{NC_NS}" xmlns:nc="{NC_NS}"><top xmlns="{ST}" nc:operation="replace">'
                     f"<item><name>{name}</name><size>{size}</size></item></top></config>"), "test-then-set"
    return cfg(bodies[op]), "test-only" if op.startswith("test-only") else "test-then-set"


EDITS = ["merge", "merge", "create", "replace", "delete", "remove", "drop-size", "drop-key", "bad-size",
         "test-only", "test-only-delete", "replace-top"]
OTHERS = ["commit", "commit-keep", "discard", "copy-running", "snapshot", "restore"]

_step = st.one_of(
    st.tuples(st.sampled_from(EDITS), st.sampled_from(NAMES), st.integers(1, 9)),
    st.tuples(st.sampled_from(OTHERS), st.just(""), st.just(0)),
)


def _run(eng: DeviceEngine, step: tuple[Any, ...], snaps: list[Element]) -> str:
    """Apply one step; the error tag it raised ('' when none)."""
    op = step[0]
    try:
        if op in EDITS:
            config, test_option = _edit(step)
            eng.edit_config("candidate", config, test_option=test_option)
        elif op == "commit":
            eng.commit()
        elif op == "commit-keep":
            eng.commit_keeping_previous()
        elif op == "discard":
            eng.discard_changes()
        elif op == "copy-running":
            eng.copy_config("candidate", "running")
        elif op == "snapshot":
            snaps.append(eng.snapshot_running())
        elif op == "restore" and snaps:
            eng.restore_running(snaps[-1])
    except SimRpcError as err:
        return err.tag
    return ""


def _scan(tree: Element, name: str) -> Element | None:
    top = tree.find(ITEM_PATH[0])
    if top is None:
        return None
    for entry in top.iterchildren(ITEM_PATH[1]):
        if (entry.findtext(f"{{{ST}}}name") or "").strip() == name:
            return entry
    return None


def _c14n(el: Element | None) -> bytes | None:
    return None if el is None else etree.tostring(el, method="c14n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, max_size=25))
def test_index_answers_as_the_scan_through_any_sequence(schema: Schema, steps: list[tuple[Any, ...]]) -> None:
    def initial() -> Element:
        return cfg("<item><name>a</name><size>1</size></item><item><name>b</name><size>2</size></item>")

    with tempfile.TemporaryDirectory() as tmp:
        kept = DeviceEngine("dev", schema, Path(tmp), initial_config=initial())
        ref = ScanningEngine("ref", schema, None, initial_config=initial())
        kept_snaps: list[Element] = []
        ref_snaps: list[Element] = []
        for step in steps:
            assert _run(kept, step, kept_snaps) == _run(ref, step, ref_snaps), step
            for store in ("candidate", "running"):
                assert _c14n(kept.get_config(store)) == _c14n(ref.get_config(store)), (step, store)
                live = kept._store(store)
                for name in NAMES:
                    found = kept.list_entry(store, ITEM_PATH, {"name": name})
                    assert found is _scan(live, name), (step, store, name)
        again = DeviceEngine("dev", schema, Path(tmp))  # the candidate comes back from its file and log
        for store in ("candidate", "running"):
            assert _c14n(again.get_config(store)) == _c14n(kept.get_config(store)), store
        assert again.candidate_dirty() == kept.candidate_dirty()


def test_index_survives_edits_of_the_same_tree_and_follows_each(schema: Schema) -> None:
    tree = parse(f'<data xmlns="{NC_NS}"><top xmlns="{ST}"/></data>')
    index = EntryIndex()
    top = tree[0]
    for n in range(50):
        apply_edit(tree, cfg(f"<item><name>i{n}</name><size>1</size></item>"), schema, index=index)
    assert len(index) == 1  # one table for top's items, built once and kept across the 50 edits
    apply_edit(tree, cfg('<item nc:operation="delete"><name>i7</name></item>'), schema, index=index)
    assert index.find(top, ITEM_PATH[1], (f"{{{ST}}}name",), ("i7",)) is None
    hit = index.find(top, ITEM_PATH[1], (f"{{{ST}}}name",), ("i8",))
    assert hit is not None and hit.findtext(f"{{{ST}}}name") == "i8"
    with pytest.raises(SimRpcError):
        apply_edit(tree, cfg('<item nc:operation="create"><name>i9</name></item>'), schema, index=index)
    assert len(index) == 0  # the failed edit was undone behind the index's back: it starts over


def test_duplicate_keys_are_answered_as_the_scan_does() -> None:
    tree = parse(f'<top xmlns="{ST}"><item><name>x</name><size>1</size></item>'
                 f"<item><name>x</name><size>2</size></item></top>")
    index = EntryIndex()
    keys = (f"{{{ST}}}name",)
    first = index.find(tree, ITEM_PATH[1], keys, ("x",))
    assert first is tree[0]
    tree.remove(tree[0])
    index.removed(tree, ITEM_PATH[1], first)
    assert index.find(tree, ITEM_PATH[1], keys, ("x",)) is tree[0]


def test_a_torn_log_record_is_ignored(schema: Schema, tmp_path: Path) -> None:
    initial = cfg("<item><name>a</name><size>1</size></item>")
    eng = DeviceEngine("dev", schema, tmp_path, initial_config=initial)
    eng.edit_config("candidate", cfg("<item><name>b</name><size>2</size></item>"))
    eng.edit_config("candidate", cfg("<item><name>c</name><size>3</size></item>"))
    assert not (tmp_path / "candidate.xml").exists()  # edits are appended, not the tree rewritten
    log = tmp_path / "candidate.log"
    log.write_bytes(log.read_bytes()[:-20])
    again = DeviceEngine("dev", schema, tmp_path)
    names = [i.findtext(f"{{{ST}}}name") for i in again.get_config("candidate").iter(f"{{{ST}}}item")]
    assert names == ["a", "b"]
    eng.commit()
    assert not log.exists() and not (tmp_path / "candidate.xml").exists()


def test_commits_append_to_running_log_which_is_compacted_and_reloads(schema: Schema, tmp_path: Path) -> None:
    initial = cfg("<item><name>a</name><size>1</size></item>")
    eng = DeviceEngine("dev", schema, tmp_path, initial_config=initial)
    log = tmp_path / "running.log"
    whole = (tmp_path / "running.xml").stat().st_mtime_ns
    eng.edit_config("candidate", cfg("<item><name>b</name><size>2</size></item>"))
    eng.commit()
    assert log.stat().st_size > 0 and (tmp_path / "running.xml").stat().st_mtime_ns == whole
    sizes = []
    for n in range(800):  # the log outgrows the tree (at least 64 KiB): saved whole, the log starts over
        eng.edit_config("candidate", cfg(f"<item><name>i{n}</name><size>{n % 90 + 1}</size></item>"))
        eng.commit()
        sizes.append(log.stat().st_size if log.exists() else 0)
    assert max(sizes) <= 1 << 16 and any(b < a for a, b in itertools.pairwise(sizes))
    assert (tmp_path / "running.xml").stat().st_mtime_ns != whole
    again = DeviceEngine("dev", schema, tmp_path)
    assert _c14n(again.get_config("running")) == _c14n(eng.get_config("running"))
    assert not again.candidate_dirty()

"""DeviceEngine: datastores, persistence, commit/validate, copy/delete, hooks, schema, speed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree
from netconf_sim.engine import DeviceEngine
from netconf_sim.rpcerror import SimRpcError
from netconf_sim.schema import Schema, SchemaCache
from netconf_sim.xml import NC_NS, parse

ST = "urn:netmig:test:simtest"
ACL = "urn:ietf:params:xml:ns:yang:ietf-access-control-list"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sim_engine"
OWNER = "<owner><id>o1</id><email>o1@example.com</email></owner>"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(["simtest"], {"simtest": ["colors"]}, search_path=[DATA_DIR])


def cfg(body: str) -> etree._Element:
    return parse(f'<config xmlns="{NC_NS}" xmlns:nc="{NC_NS}"><top xmlns="{ST}">{body}</top></config>')


def sizes(tree: etree._Element) -> dict[str, str]:
    return {str(i.findtext(f"{{{ST}}}name")): str(i.findtext(f"{{{ST}}}size"))
            for i in tree.iter(f"{{{ST}}}item")}


def engine(schema: Schema, state: Path | None) -> DeviceEngine:
    initial = cfg(OWNER + "<item><name>a</name><size>1</size></item>")
    return DeviceEngine("dev1", schema, state, initial_config=initial)


def test_running_is_not_writable(schema: Schema) -> None:
    eng = engine(schema, None)
    with pytest.raises(SimRpcError) as err:
        eng.edit_config("running", cfg("<item><name>b</name></item>"))
    assert err.value.tag == "operation-not-supported"
    with pytest.raises(SimRpcError) as err:
        eng.get_config("nonsense", None)
    assert err.value.tag == "invalid-value"


def test_edit_commit_persist_and_reload(schema: Schema, tmp_path: Path) -> None:
    eng = engine(schema, tmp_path)
    seen: list[dict[str, str]] = []
    eng.on_commit(lambda running, _changed: seen.append(sizes(running)))
    eng.edit_config("candidate", cfg("<item><name>b</name><size>2</size></item>"))
    assert eng.candidate_dirty()
    assert sizes(eng.get_config("running")) == {"a": "1"}
    assert sizes(eng.get_config("candidate")) == {"a": "1", "b": "2"}
    changed = eng.commit()
    assert changed == ["/st:top/st:item[st:name='b']"]
    assert not eng.candidate_dirty()
    assert seen == [{"a": "1", "b": "2"}]
    assert sizes(eng.get_config("running")) == {"a": "1", "b": "2"}
    assert (tmp_path / "running.xml").is_file() and (tmp_path / "startup.xml").is_file()
    assert not (tmp_path / "candidate.xml").exists()
    again = DeviceEngine("dev1", schema, tmp_path)
    assert sizes(again.get_config("running")) == {"a": "1", "b": "2"}
    assert sizes(again.get_config("startup")) == {"a": "1"}


def test_uncommitted_candidate_survives_restart(schema: Schema, tmp_path: Path) -> None:
    eng = engine(schema, tmp_path)
    eng.edit_config("candidate", cfg("<item><name>c</name><size>3</size></item>"))
    again = DeviceEngine("dev1", schema, tmp_path)
    assert again.candidate_dirty()
    assert sizes(again.get_config("candidate")) == {"a": "1", "c": "3"}
    assert again.commit() == ["/"]
    assert sizes(again.get_config("running")) == {"a": "1", "c": "3"}


def test_invalid_edit_leaves_candidate_unchanged(schema: Schema) -> None:
    eng = engine(schema, None)
    before = etree.tostring(eng.get_config("candidate"))
    with pytest.raises(SimRpcError) as err:
        eng.edit_config("candidate", cfg("<item><name>a</name><size>2</size></item>"
                                         "<item><name>b</name><size>999</size></item>"))
    assert err.value.tag == "invalid-value"
    assert etree.tostring(eng.get_config("candidate")) == before
    assert not eng.candidate_dirty()


def test_commit_validation_failure_keeps_running(schema: Schema) -> None:
    eng = engine(schema, None)
    eng.edit_config("candidate", cfg("<item><name>b</name><owner>ghost</owner></item>"))
    with pytest.raises(SimRpcError) as err:
        eng.commit()
    assert (err.value.tag, err.value.app_tag) == ("data-missing", "instance-required")
    assert sizes(eng.get_config("running")) == {"a": "1"}
    with pytest.raises(SimRpcError):
        eng.validate("candidate")
    eng.edit_config("candidate", cfg("<owner><id>ghost</id><email>g@example.com</email></owner>"))
    eng.validate("candidate")
    eng.commit()
    assert sizes(eng.get_config("running")) == {"a": "1", "b": "None"}


def test_deleting_a_leafref_target_fails_commit(schema: Schema) -> None:
    eng = engine(schema, None)
    eng.edit_config("candidate", cfg("<item><name>a</name><owner>o1</owner></item>"))
    eng.commit()
    eng.edit_config("candidate", cfg('<owner nc:operation="delete"><id>o1</id></owner>'))
    with pytest.raises(SimRpcError) as err:
        eng.commit()
    assert err.value.path == "/st:top/st:item[st:name='a']/st:owner"


def test_test_only_and_discard(schema: Schema) -> None:
    eng = engine(schema, None)
    eng.edit_config("candidate", cfg("<item><name>z</name></item>"), test_option="test-only")
    assert not eng.candidate_dirty()
    eng.edit_config("candidate", cfg("<item><name>z</name></item>"))
    eng.discard_changes()
    assert sizes(eng.get_config("candidate")) == {"a": "1"}
    assert eng.commit() == []


def test_copy_and_delete_config(schema: Schema) -> None:
    eng = engine(schema, None)
    eng.edit_config("candidate", cfg("<item><name>b</name><size>2</size></item>"))
    eng.commit()
    eng.copy_config("startup", "running")
    assert sizes(eng.get_config("startup")) == {"a": "1", "b": "2"}
    eng.delete_config("startup")
    assert len(eng.get_config("startup")) == 0
    with pytest.raises(SimRpcError) as err:
        eng.delete_config("running")
    assert err.value.tag == "operation-not-supported"
    with pytest.raises(SimRpcError):
        eng.copy_config("running", "startup")
    eng.copy_config("candidate", cfg(OWNER + "<item><name>q</name><size>9</size></item>"))
    assert eng.commit() == ["/"]
    assert sizes(eng.get_config("running")) == {"q": "9"}


def test_validate_inline_config(schema: Schema) -> None:
    eng = engine(schema, None)
    eng.validate(cfg(OWNER))
    with pytest.raises(SimRpcError) as err:
        eng.validate(cfg("<owner><id>x</id></owner>"))
    assert err.value.tag == "missing-element"


def test_get_with_operational_hook_and_filters(schema: Schema) -> None:
    def hook(data: etree._Element) -> None:
        top = data.find(f"{{{ST}}}top")
        assert top is not None
        stats = etree.SubElement(top, f"{{{ST}}}stats")
        etree.SubElement(stats, f"{{{ST}}}hits").text = "42"

    eng = DeviceEngine("dev1", schema, None, operational=hook,
                       initial_config=cfg(OWNER + "<item><name>a</name><size>1</size></item>"))
    assert eng.get(None).findtext(f".//{{{ST}}}hits") == "42"
    assert eng.get_config("running").find(f".//{{{ST}}}stats") is None
    sub = parse(f'<filter xmlns="{NC_NS}" type="subtree"><top xmlns="{ST}"><stats/></top></filter>')
    out = eng.get(sub)
    assert out.findtext(f".//{{{ST}}}hits") == "42" and out.find(f".//{{{ST}}}item") is None
    xp = parse(f'<filter xmlns="{NC_NS}" xmlns:t="{ST}" type="xpath" '
               f'select="/t:top/t:item[t:name=\'a\']/t:size"/>')
    out = eng.get_config("running", xp)
    item = out.find(f".//{{{ST}}}item")
    assert item is not None and [etree.QName(c).localname for c in item] == ["name", "size"]
    assert out.find(f".//{{{ST}}}owner") is None


def test_snapshot_restore(schema: Schema) -> None:
    eng = engine(schema, None)
    snap = eng.snapshot_running()
    calls: list[int] = []
    eng.on_commit(lambda _r, _changed: calls.append(1))
    eng.edit_config("candidate", cfg("<item><name>b</name></item>"))
    eng.commit()
    eng.restore_running(snap)
    assert sizes(eng.get_config("running")) == {"a": "1"}
    assert sizes(eng.get_config("candidate")) == {"a": "1"}
    assert calls == [1, 1]


def test_commit_keeping_previous_hands_over_the_old_running_untouched(schema: Schema) -> None:
    """A confirmed commit's rollback snapshot without a copy: the previous running tree, never changed
    again; the candidate becomes a copy of the new running on first use."""
    eng = engine(schema, None)
    eng.edit_config("candidate", cfg("<item><name>b</name><size>2</size></item>"))
    changed, previous = eng.commit_keeping_previous()
    assert changed == ["/st:top/st:item[st:name='b']"]
    assert sizes(previous) == {"a": "1"}
    assert sizes(eng.get_config("running")) == sizes(eng.get_config("candidate")) == {"a": "1", "b": "2"}
    before = etree.tostring(previous)
    # the candidate is a copy, not running itself: editing it changes neither running nor the snapshot
    eng.edit_config("candidate", cfg("<item><name>c</name><size>3</size></item>"))
    assert sizes(eng.get_config("running")) == {"a": "1", "b": "2"}
    eng.commit()
    eng.edit_config("candidate", cfg('<item nc:operation="delete"><name>a</name></item>'))
    eng.commit()
    assert etree.tostring(previous) == before
    assert sizes(eng.get_config("running")) == {"b": "2", "c": "3"}
    eng.restore_running(previous)
    assert sizes(eng.get_config("running")) == sizes(eng.get_config("candidate")) == {"a": "1"}
    empty_changed, copy_of_running = eng.commit_keeping_previous()
    assert empty_changed == [] and sizes(copy_of_running) == {"a": "1"}
    assert copy_of_running is not eng.running_view()


def test_schema_capabilities_and_library(schema: Schema) -> None:
    eng = engine(schema, None)
    assert eng.capabilities == [f"{ST}?module=simtest&revision=2026-01-01&features=colors"]
    assert "module simtest" in eng.get_schema("simtest", "2026-01-01", "yang")
    with pytest.raises(SimRpcError):
        eng.get_schema("simtest", "1999-01-01", "yang")
    lib = schema.yang_library()
    ns = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
    assert lib.findtext(f"{{{ns}}}module-set/{{{ns}}}module/{{{ns}}}name") == "simtest"
    state = schema.modules_state()
    assert state.findtext(f"{{{ns}}}module/{{{ns}}}conformance-type") == "implement"


def test_schema_cache_shares_schemas() -> None:
    cache = SchemaCache()
    one = cache.get(["ietf-interfaces"], {})
    assert cache.get(["ietf-interfaces"]) is one
    assert cache.get(["ietf-interfaces", "iana-if-type"]) is not one
    names = {m for m in one.modules}
    assert {"ietf-interfaces", "ietf-yang-types"} <= names
    assert not one.modules["ietf-yang-types"].implemented


def test_small_commit_on_a_thousand_entries_is_cheap(tmp_path: Path) -> None:
    acl_schema = Schema.load(["ietf-interfaces", "ietf-access-control-list"],
                             {"ietf-access-control-list": ["match-on-ipv4", "match-on-l4", "ipv4"]})
    body = "".join(
        f"<acl><name>vm{a}.in</name><type>acl:ipv4-acl-type</type><aces>"
        + "".join(f"<ace><name>r{r}</name><matches><ipv4><protocol>6</protocol></ipv4></matches>"
                  f"<actions><forwarding>acl:accept</forwarding></actions></ace>" for r in range(10))
        + "</aces></acl>" for a in range(100))
    initial = parse(f'<config xmlns="{NC_NS}"><acls xmlns="{ACL}" xmlns:acl="{ACL}">{body}</acls></config>')
    eng = DeviceEngine("big", acl_schema, tmp_path, initial_config=initial)
    timings = []
    for i in range(6):
        edit = parse(f'<config xmlns="{NC_NS}"><acls xmlns="{ACL}" xmlns:acl="{ACL}">'
                     f"<acl><name>vm{i}.in</name>"
                     f"<aces><ace><name>x{i}</name><actions><forwarding>acl:drop</forwarding></actions></ace>"
                     f"</aces></acl></acls></config>")
        started = time.perf_counter()
        eng.edit_config("candidate", edit)
        eng.commit()
        timings.append(time.perf_counter() - started)
    assert min(timings[1:]) < 0.05
    assert sum(1 for _ in eng.get_config("running").iter(f"{{{ACL}}}ace")) == 1006


def test_commit_swap_candidate_catches_up_and_reports_changed_paths(schema: Schema, tmp_path: Path) -> None:
    """A commit makes the validated candidate running without a copy; the old running becomes the
    candidate and owes it the committed edits, applied on its first use: candidate == running after,
    and edits after that touch the candidate only."""
    eng = engine(schema, tmp_path)
    seen: list[list[str] | None] = []
    eng.on_commit(lambda _running, changed: seen.append(changed))
    eng.edit_config("candidate", cfg("<item><name>b</name><size>2</size></item>"))
    eng.commit()
    assert seen and seen[-1] and all(p.startswith("/") for p in seen[-1])
    assert sizes(eng.get_config("running")) == {"a": "1", "b": "2"}
    assert sizes(eng.get_config("candidate")) == {"a": "1", "b": "2"}
    eng.edit_config("candidate", cfg("<item><name>c</name><size>3</size></item>"))
    assert sizes(eng.get_config("running")) == {"a": "1", "b": "2"}
    assert sizes(eng.get_config("candidate")) == {"a": "1", "b": "2", "c": "3"}
    eng.discard_changes()
    assert sizes(eng.get_config("candidate")) == {"a": "1", "b": "2"}
    eng.commit()  # nothing to commit: no callback
    assert len(seen) == 1

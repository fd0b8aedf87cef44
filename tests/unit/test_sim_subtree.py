"""RFC 6241 section 6 subtree filtering, on data equivalent to the section 6.4 examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from netconf_sim.listindex import ListIndex
from netconf_sim.schema import Schema
from netconf_sim.subtree import apply_subtree_filter
from netconf_sim.xml import NC_NS, parse

EX = "http://example.com/schema/1.2/config"
ST = "urn:netmig:test:simtest"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sim_engine"

DATA = f"""<data xmlns="{NC_NS}"><top xmlns="{EX}">
  <users>
    <user><name>root</name><type>superuser</type><full-name>Charlie Root</full-name>
      <company-info><dept>1</dept><id>1</id></company-info></user>
    <user><name>fred</name><type>admin</type><full-name>Fred Flintstone</full-name>
      <company-info><dept>2</dept><id>2</id></company-info></user>
    <user><name>barney</name><type>admin</type><full-name>Barney Rubble</full-name>
      <company-info><dept>2</dept><id>3</id></company-info></user>
  </users>
  <groups><group><name>admin</name></group></groups>
</top>
<interfaces xmlns="{EX}"><interface ifName="eth0"><ifName>eth0</ifName><mtu>1500</mtu></interface>
  <interface ifName="eth1"><ifName>eth1</ifName><mtu>9000</mtu></interface></interfaces>
</data>"""


def run(filter_body: str) -> etree._Element:
    flt = parse(f'<filter xmlns="{NC_NS}" type="subtree">{filter_body}</filter>')
    return apply_subtree_filter(parse(DATA), flt)


def names(out: etree._Element) -> list[str]:
    return [str(n.text) for n in out.iter(f"{{{EX}}}name")]


def test_empty_filter_selects_nothing() -> None:
    out = run("")
    assert out.tag == f"{{{NC_NS}}}data"
    assert len(out) == 0


def test_selection_node_returns_whole_subtree() -> None:
    out = run(f'<top xmlns="{EX}"><users/></top>')
    assert names(out) == ["root", "fred", "barney"]
    assert out.find(f".//{{{EX}}}groups") is None
    assert out.find(f".//{{{EX}}}company-info/{{{EX}}}id") is not None


def test_containment_and_selection_return_only_selected_leaves() -> None:
    out = run(f'<top xmlns="{EX}"><users><user><name/></user></users></top>')
    assert names(out) == ["root", "fred", "barney"]
    assert out.find(f".//{{{EX}}}type") is None


def test_content_match_alone_returns_the_whole_entry() -> None:
    out = run(f'<top xmlns="{EX}"><users><user><name>fred</name></user></users></top>')
    users = out.findall(f".//{{{EX}}}user")
    assert len(users) == 1
    assert users[0].findtext(f"{{{EX}}}full-name") == "Fred Flintstone"
    assert users[0].find(f"{{{EX}}}company-info/{{{EX}}}dept") is not None


def test_content_match_with_selection_siblings() -> None:
    out = run(f'<top xmlns="{EX}"><users><user><name>fred</name><type/>'
              f'<company-info><id/></company-info></user></users></top>')
    user = out.find(f".//{{{EX}}}user")
    assert user is not None
    assert [etree.QName(c).localname for c in user] == ["name", "type", "company-info"]
    assert user.find(f"{{{EX}}}company-info/{{{EX}}}dept") is None
    assert user.findtext(f"{{{EX}}}company-info/{{{EX}}}id") == "2"


def test_all_sibling_content_matches_must_hold() -> None:
    out = run(f'<top xmlns="{EX}"><users><user><name>fred</name><type>superuser</type></user></users></top>')
    assert len(out) == 0
    out = run(f'<top xmlns="{EX}"><users><user><type>admin</type></user></users></top>')
    assert names(out) == ["fred", "barney"]


def test_multiple_subtrees_are_unioned() -> None:
    out = run(f'<top xmlns="{EX}"><users><user><name>root</name><company-info/></user>'
              f'<user><name>barney</name><type/></user></users></top>'
              f'<interfaces xmlns="{EX}"><interface><ifName>eth1</ifName></interface></interfaces>')
    assert names(out) == ["root", "barney"]
    assert out.findtext(f".//{{{EX}}}interface/{{{EX}}}mtu") == "9000"
    assert len(out.findall(f".//{{{EX}}}interface")) == 1


def test_namespace_selection() -> None:
    assert len(run('<top xmlns="urn:other"><users/></top>')) == 0
    out = run("<top xmlns=''><users/></top>")  # no namespace: matches any
    assert names(out) == ["root", "fred", "barney"]


def test_attribute_match() -> None:
    out = run(f'<interfaces xmlns="{EX}"><interface ifName="eth0"/></interfaces>')
    ifs = out.findall(f".//{{{EX}}}interface")
    assert [i.get("ifName") for i in ifs] == ["eth0"]
    assert ifs[0].findtext(f"{{{EX}}}mtu") == "1500"


def test_containment_with_no_match_drops_the_parent() -> None:
    out = run(f'<top xmlns="{EX}"><users><user><name>nobody</name></user></users><groups/></top>')
    assert out.find(f".//{{{EX}}}users") is None
    assert out.find(f".//{{{EX}}}groups") is not None


def test_schema_adds_list_keys_to_partial_entries() -> None:
    schema = Schema.load(["simtest"], {"simtest": ["colors"]}, search_path=[DATA_DIR])
    data = parse(f'<data xmlns="{NC_NS}"><top xmlns="{ST}"><item><name>a</name><size>5</size>'
                 f'<mtu>1500</mtu></item><item><name>b</name><size>6</size></item></top></data>')
    flt = parse(f'<filter xmlns="{NC_NS}"><top xmlns="{ST}"><item><size/></item></top></filter>')
    out = apply_subtree_filter(data, flt, schema)
    items = out.findall(f".//{{{ST}}}item")
    assert [[etree.QName(c).localname for c in i] for i in items] == [["name", "size"], ["name", "size"]]
    assert apply_subtree_filter(data, flt).find(f".//{{{ST}}}name") is None


@pytest.mark.parametrize("body", ["<top xmlns='urn:x'/>", "<nothing/>"])
def test_unmatched_top_level(body: str) -> None:
    assert len(run(body)) == 0


# -- the indexed path gives what the scanning path gives ------------------------------------------------

NS_A, NS_B = "urn:t:a", "urn:t:b"
_TEXTS = ["x", "y", " x ", "", "z1"]


def _canon(out: etree._Element) -> bytes:
    return etree.tostring(out, method="c14n")


def _same(data: etree._Element, flt: etree._Element, schema: Schema | None = None,
          index: ListIndex | None = None) -> etree._Element:
    """Filter both ways and assert equal output; return it."""
    indexed = apply_subtree_filter(data, flt, schema, index)
    scanned = apply_subtree_filter(data, flt, schema, scan=True)
    assert _canon(indexed) == _canon(scanned), (etree.tostring(flt), etree.tostring(data))
    return indexed


@st.composite
def _data_entries(draw: st.DrawFn, ns: str, depth: int) -> etree._Element:
    entry = etree.Element(f"{{{ns}}}{draw(st.sampled_from(['item', 'item', 'other']))}")
    if draw(st.booleans()):
        entry.set("k", draw(st.sampled_from(["1", "2"])))
    for leaf in draw(st.lists(st.sampled_from(["name", "size", "tag", "tag"]), max_size=4)):
        leaf_ns = draw(st.sampled_from([ns, ns, NS_B]))
        el = etree.SubElement(entry, f"{{{leaf_ns}}}{leaf}")
        el.text = draw(st.sampled_from(_TEXTS))
        if draw(st.integers(0, 9)) == 0:
            el.set("k", "1")
    if depth and draw(st.booleans()):
        entry.append(draw(_data_list(ns, depth - 1)))
    return entry


@st.composite
def _data_list(draw: st.DrawFn, ns: str, depth: int) -> etree._Element:
    holder = etree.Element(f"{{{ns}}}list{depth}")
    for entry in draw(st.lists(_data_entries(ns, depth), max_size=12)):
        holder.append(entry)
    return holder


@st.composite
def _data(draw: st.DrawFn) -> etree._Element:
    root = etree.Element(f"{{{NC_NS}}}data")
    for ns in draw(st.lists(st.sampled_from([NS_A, NS_B]), min_size=1, max_size=2, unique=True)):
        top = etree.SubElement(root, f"{{{ns}}}top")
        top.append(draw(_data_list(ns, 1)))
        if draw(st.booleans()):
            etree.SubElement(top, f"{{{ns}}}flag").text = draw(st.sampled_from(_TEXTS))
    return root


def _fname(draw: st.DrawFn, name: str) -> str:
    ns = draw(st.sampled_from([None, NS_A, NS_B, NC_NS]))
    return name if ns is None else f"{{{ns}}}{name}"


@st.composite
def _filter_entry(draw: st.DrawFn, depth: int) -> etree._Element:
    node = etree.Element(_fname(draw, draw(st.sampled_from(["item", "item", "other"]))))
    if draw(st.integers(0, 5)) == 0:
        node.set("k", draw(st.sampled_from(["1", "2"])))
    kind = draw(st.sampled_from(["containment", "containment", "containment", "selection"]))
    if kind == "selection":
        return node
    for leaf in draw(st.lists(st.sampled_from(["name", "size", "tag"]), min_size=1, max_size=3)):
        el = etree.SubElement(node, _fname(draw, leaf))
        el.text = draw(st.sampled_from([*_TEXTS, "x", "y"]))  # blank: a selection node
        if draw(st.integers(0, 9)) == 0:
            el.set("k", "1")
    if depth and draw(st.booleans()):
        node.append(draw(_filter_list(depth - 1)))
    return node


@st.composite
def _filter_list(draw: st.DrawFn, depth: int) -> etree._Element:
    holder = etree.Element(_fname(draw, f"list{depth}"))
    for entry in draw(st.lists(_filter_entry(depth), min_size=0, max_size=4)):
        holder.append(entry)
    return holder


@st.composite
def _filters(draw: st.DrawFn) -> etree._Element:
    flt = etree.Element(f"{{{NC_NS}}}filter", type="subtree")
    for _ in range(draw(st.integers(1, 2))):
        top = etree.SubElement(flt, _fname(draw, "top"))
        top.append(draw(_filter_list(1)))
        if draw(st.integers(0, 3)) == 0:
            etree.SubElement(top, _fname(draw, "flag")).text = draw(st.sampled_from(_TEXTS))
    return flt


@settings(max_examples=300, deadline=None)
@given(_data(), st.lists(_filters(), min_size=1, max_size=3))
def test_indexed_filtering_equals_scanning(data: etree._Element, filters: list[etree._Element]) -> None:
    shared = ListIndex()  # one index reused over several filters, as the engine does per datastore
    for flt in filters:
        _same(data, flt)
        _same(data, flt, index=shared)


def _fw_schema() -> Schema:
    from netconf_sim.profiles import PROFILES

    fw = PROFILES["ietf-fw"]
    return Schema.load(list(fw.modules), dict(fw.features))


NMD = "urn:netmig:yang:netmig-device"
FW_DATA = f"""<data xmlns="{NC_NS}"><dynamic-info xmlns="{NMD}"><seeded>
  <nat-session><protocol>tcp</protocol><internal-address>10.0.0.1</internal-address>
    <internal-port>1</internal-port><external-address>100.64.0.1</external-address><vm-id>vm-a</vm-id>
  </nat-session>
  <nat-session><protocol>tcp</protocol><internal-address>10.0.0.1</internal-address>
    <internal-port>2</internal-port><vm-id>vm-a</vm-id></nat-session>
  <nat-session><protocol>udp</protocol><internal-address>10.0.0.2</internal-address>
    <internal-port>1</internal-port><vm-id>vm-b</vm-id></nat-session>
  <nat-session><protocol>udp</protocol><internal-address>10.0.0.3</internal-address>
    <vm-id>vm-c</vm-id></nat-session>
</seeded></dynamic-info></data>"""


@pytest.mark.parametrize("body, expect", [
    # several key leaves, all given; some given; one given with a selection; a key missing in the data
    ("<nat-session><protocol>tcp</protocol><internal-address>10.0.0.1</internal-address>"
     "<internal-port>2</internal-port></nat-session>", [("tcp", "2")]),
    ("<nat-session><internal-address>10.0.0.1</internal-address></nat-session>",
     [("tcp", "1"), ("tcp", "2")]),
    ("<nat-session><internal-port>1</internal-port><vm-id/></nat-session>", [("tcp", "1"), ("udp", "1")]),
    ("<nat-session><internal-address>10.0.0.3</internal-address><external-address/></nat-session>",
     [("udp", None)]),
    # two selections of one list, one by a non-key leaf; content match + selection mix
    ("<nat-session><vm-id>vm-b</vm-id></nat-session><nat-session><internal-port>2</internal-port>"
     "</nat-session>", [("tcp", "2"), ("udp", "1")]),
    ("<nat-session><vm-id>vm-a</vm-id><external-address/></nat-session>", [("tcp", "1"), ("tcp", "2")]),
    ("<nat-session><vm-id>nobody</vm-id></nat-session>", []),
])
def test_keyed_lookups_on_multi_key_lists(body: str, expect: list[tuple[str, str | None]]) -> None:
    schema = _fw_schema()
    data = parse(FW_DATA)
    flt = parse(f'<filter xmlns="{NC_NS}" type="subtree"><dynamic-info xmlns="{NMD}"><seeded>{body}'
                f"</seeded></dynamic-info></filter>")
    out = _same(data, flt, schema)
    sessions = out.findall(f".//{{{NMD}}}nat-session")
    got = [(s.findtext(f"{{{NMD}}}protocol"), s.findtext(f"{{{NMD}}}internal-port")) for s in sessions]
    assert got == expect
    for session in sessions:  # partial entries carry all their key leaves
        assert session.find(f"{{{NMD}}}internal-address") is not None


def test_index_lookup_finds_entries_in_any_namespace_once() -> None:
    data = parse(f'<data xmlns="{NC_NS}"><top xmlns="{NS_A}"><item><name>x</name><name>x</name></item>'
                 f'<b:item xmlns:b="{NS_B}"><name> x </name></b:item><item><name>y</name></item>'
                 f"</top></data>")
    top = data[0]
    index = ListIndex()
    assert [e.getparent() is top for e in index.lookup(top, "item", "name", "x")] == [True, True]
    assert index.lookup(top, "item", "name", "nope") == []
    assert len(index) == 1


# -- a datastore's cached index follows every change ------------------------------------------------------

def _engine_cfg(body: str) -> etree._Element:
    return parse(f'<config xmlns="{NC_NS}" xmlns:nc="{NC_NS}"><top xmlns="{ST}">{body}</top></config>')


_ITEM_NAMES = ["a", "b", "c", "d"]
_OPS = st.sampled_from(["merge", "delete", "resize", "commit", "discard", "copy", "test-only", "bad-edit",
                        "snapshot", "restore"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_OPS, st.sampled_from(_ITEM_NAMES), st.integers(1, 3)), max_size=25))
def test_engine_reads_through_its_index_match_a_scan_after_every_change(
        steps: list[tuple[str, str, int]]) -> None:
    from netconf_sim.engine import DeviceEngine
    from netconf_sim.rpcerror import SimRpcError

    schema = Schema.load(["simtest"], {"simtest": ["colors"]}, search_path=[DATA_DIR])
    eng = DeviceEngine("dev1", schema, None, initial_config=_engine_cfg(
        "<item><name>a</name><size>1</size></item><item><name>b</name><size>2</size></item>"))
    filters = [parse(f'<filter xmlns="{NC_NS}"><top xmlns="{ST}">{body}</top></filter>') for body in (
        *(f"<item><name>{n}</name></item>" for n in _ITEM_NAMES),
        *(f"<item><size>{s}</size><name/></item>" for s in (1, 2, 3)),
        "<item><name>a</name></item><item><size>2</size></item>")]
    snapshot = eng.snapshot_running()

    def check() -> None:
        for store in ("running", "candidate"):
            whole = eng.get_config(store)
            for flt in filters:
                assert _canon(eng.get_config(store, flt)) == _canon(
                    apply_subtree_filter(whole, flt, schema, scan=True)), (store, etree.tostring(flt))

    for op, name, size in steps:
        check()  # reads first, so the index exists when the change comes
        try:
            if op == "merge":
                eng.edit_config("candidate", _engine_cfg(f"<item><name>{name}</name><size>{size}</size>"
                                                         f"</item>"))
            elif op == "delete":
                eng.edit_config("candidate", _engine_cfg(
                    f'<item nc:operation="remove"><name>{name}</name></item>'))
            elif op == "resize":
                eng.edit_config("candidate", _engine_cfg(f"<item><name>{name}</name><size>{size}</size>"
                                                         f"</item>"), default_operation="replace")
            elif op == "commit":
                eng.commit()
            elif op == "discard":
                eng.discard_changes()
            elif op == "copy":
                eng.copy_config("candidate", "running")
            elif op == "test-only":
                eng.edit_config("candidate", _engine_cfg(f"<item><name>{name}</name><size>9</size></item>"),
                                test_option="test-only")
            elif op == "bad-edit":
                eng.edit_config("candidate", _engine_cfg(
                    f"<item><name>{name}</name><size>{size}</size></item><item><name>x</name><size>999</size>"
                    f"</item>"), error_option="rollback-on-error")
            elif op == "snapshot":
                snapshot = eng.snapshot_running()
            else:
                eng.restore_running(snapshot)  # confirmed-commit rollback
        except SimRpcError:
            pass
    check()

"""RFC 6241 section 6 subtree filtering, on data equivalent to the section 6.4 examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
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

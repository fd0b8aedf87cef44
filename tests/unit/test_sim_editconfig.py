"""edit-config operations on an lxml datastore: merge, replace, create, delete, remove, errors, undo."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from netconf_sim.editconfig import apply_edit
from netconf_sim.rpcerror import SimRpcError
from netconf_sim.schema import Schema
from netconf_sim.xml import NC_NS, parse

ST = "urn:netmig:test:simtest"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sim_engine"
NC_ATTR = f'xmlns:nc="{NC_NS}"'


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(["simtest"], {"simtest": ["colors"]}, search_path=[DATA_DIR])


def start() -> etree._Element:
    return parse(f'<data xmlns="{NC_NS}"><top xmlns="{ST}">'
                 f"<item><name>a</name><size>5</size><tag>x</tag><tag>y</tag></item>"
                 f"<item><name>b</name><size>6</size></item>"
                 f"<owner><id>o1</id><email>o1@example.com</email></owner></top></data>")


def cfg(body: str) -> etree._Element:
    return parse(f'<config xmlns="{NC_NS}" {NC_ATTR}><top xmlns="{ST}">{body}</top></config>')


def item(tree: etree._Element, name: str) -> etree._Element | None:
    for it in tree.iter(f"{{{ST}}}item"):
        if it.findtext(f"{{{ST}}}name") == name:
            return it
    return None


def text(tree: etree._Element, name: str, leaf: str) -> str | None:
    it = item(tree, name)
    return it.findtext(f"{{{ST}}}{leaf}") if it is not None else None


def test_merge_changes_leaf_and_creates_entry(schema: Schema) -> None:
    tree = start()
    journal = apply_edit(tree, cfg("<item><name>a</name><size>50</size></item>"
                                   "<item><name>c</name><size>7</size></item>"), schema)
    assert text(tree, "a", "size") == "50"
    assert text(tree, "c", "size") == "7"
    assert item(tree, "a") is not None and len(item(tree, "a").findall(f"{{{ST}}}tag")) == 2  # type: ignore[union-attr]
    assert "/st:top/st:item[st:name='c']" in journal.changed
    names = [i.findtext(f"{{{ST}}}name") for i in tree.iter(f"{{{ST}}}item")]
    assert names == ["a", "b", "c"]  # new entry goes after its siblings, before owner
    journal.rollback()
    assert etree.tostring(tree) == etree.tostring(start())


def test_new_entry_gets_key_first(schema: Schema) -> None:
    tree = start()
    apply_edit(tree, cfg("<item><size>9</size><name>d</name></item>"), schema)
    new = item(tree, "d")
    assert new is not None and etree.QName(new[0]).localname == "name"


def test_create_existing_is_data_exists(schema: Schema) -> None:
    tree = start()
    with pytest.raises(SimRpcError) as err:
        apply_edit(tree, cfg('<item nc:operation="create"><name>a</name></item>'), schema)
    assert err.value.tag == "data-exists"
    assert err.value.path == "/st:top/st:item[st:name='a']"
    assert err.value.path_nsmap == {"st": ST}


def test_delete_missing_is_data_missing_and_remove_is_silent(schema: Schema) -> None:
    tree = start()
    with pytest.raises(SimRpcError) as err:
        apply_edit(tree, cfg('<item nc:operation="delete"><name>zz</name></item>'), schema)
    assert err.value.tag == "data-missing"
    journal = apply_edit(tree, cfg('<item nc:operation="remove"><name>zz</name></item>'), schema)
    assert not journal
    apply_edit(tree, cfg('<item nc:operation="delete"><name>b</name></item>'), schema)
    assert item(tree, "b") is None


def test_replace_entry_drops_unmentioned_children(schema: Schema) -> None:
    tree = start()
    apply_edit(tree, cfg('<item nc:operation="replace"><name>a</name><mtu>1500</mtu></item>'), schema)
    assert text(tree, "a", "mtu") == "1500"
    assert text(tree, "a", "size") is None
    assert item(tree, "a").find(f"{{{ST}}}tag") is None  # type: ignore[union-attr]


def test_default_operation_replace(schema: Schema) -> None:
    tree = start()
    apply_edit(tree, cfg("<item><name>b</name></item>"), schema, default_operation="replace")
    assert item(tree, "a") is None
    assert text(tree, "b", "size") is None
    assert tree.find(f".//{{{ST}}}owner") is None


def test_leaf_list_entries_by_value(schema: Schema) -> None:
    tree = start()
    apply_edit(tree, cfg('<item><name>a</name><tag nc:operation="delete">x</tag><tag>z</tag></item>'), schema)
    assert [t.text for t in item(tree, "a").findall(f"{{{ST}}}tag")] == ["y", "z"]  # type: ignore[union-attr]
    with pytest.raises(SimRpcError) as err:
        apply_edit(tree, cfg('<item><name>a</name><tag nc:operation="delete">x</tag></item>'), schema)
    assert err.value.path == "/st:top/st:item[st:name='a']/st:tag[.='x']"


def test_list_entry_without_key_is_missing_element(schema: Schema) -> None:
    with pytest.raises(SimRpcError) as err:
        apply_edit(start(), cfg("<item><size>3</size></item>"), schema)
    assert err.value.tag == "missing-element"
    assert err.value.info == {"bad-element": "name"}


def test_unknown_element_and_namespace(schema: Schema) -> None:
    with pytest.raises(SimRpcError) as err:
        apply_edit(start(), cfg("<item><name>a</name><bogus>1</bogus></item>"), schema)
    assert (err.value.tag, err.value.error_type) == ("unknown-element", "application")
    assert err.value.info["bad-element"] == "bogus"
    assert err.value.path == "/st:top/st:item[st:name='a']"
    with pytest.raises(SimRpcError) as err:
        apply_edit(start(), parse(f'<config xmlns="{NC_NS}"><x xmlns="urn:nope"/></config>'), schema)
    assert err.value.tag == "unknown-namespace"


def test_bad_operation_attribute(schema: Schema) -> None:
    with pytest.raises(SimRpcError) as err:
        apply_edit(start(), cfg('<item nc:operation="frobnicate"><name>a</name></item>'), schema)
    assert err.value.tag == "bad-attribute"
    assert err.value.info["bad-attribute"] == "operation"


def test_config_false_node_is_refused(schema: Schema) -> None:
    with pytest.raises(SimRpcError) as err:
        apply_edit(start(), cfg("<stats><hits>3</hits></stats>"), schema)
    assert err.value.tag == "invalid-value"


def test_default_operation_none(schema: Schema) -> None:
    tree = start()
    with pytest.raises(SimRpcError) as err:
        apply_edit(tree, cfg("<item><name>zz</name><size>1</size></item>"), schema, default_operation="none")
    assert err.value.tag == "data-missing"
    apply_edit(tree, cfg("<item><name>a</name><size>1</size></item>"), schema, default_operation="none")
    assert text(tree, "a", "size") == "5"  # none: the leaf is not touched
    apply_edit(tree, cfg('<item><name>a</name><size nc:operation="replace">1</size></item>'), schema,
               default_operation="none")
    assert text(tree, "a", "size") == "1"
    apply_edit(tree, cfg('<item nc:operation="create"><name>n</name><size>2</size></item>'), schema,
               default_operation="none")
    assert text(tree, "n", "size") == "2"


def test_stop_on_error_undoes_earlier_changes(schema: Schema) -> None:
    tree = start()
    before = etree.tostring(tree)
    with pytest.raises(SimRpcError):
        apply_edit(tree, cfg('<item><name>a</name><size>77</size></item>'
                             '<item nc:operation="create"><name>b</name></item>'), schema,
                   error_option="rollback-on-error")
    assert etree.tostring(tree) == before


def test_continue_on_error_applies_the_rest(schema: Schema) -> None:
    tree = start()
    journal = apply_edit(tree, cfg('<item nc:operation="create"><name>b</name></item>'
                                   '<item><name>a</name><size>77</size></item>'
                                   '<item nc:operation="delete"><name>q</name></item>'), schema,
                         error_option="continue-on-error")
    assert [e.tag for e in journal.errors] == ["data-exists", "data-missing"]
    assert text(tree, "a", "size") == "77"


def test_nested_operation_inside_new_entry(schema: Schema) -> None:
    tree = start()
    with pytest.raises(SimRpcError) as err:
        apply_edit(tree, cfg('<item><name>new</name><tag nc:operation="delete">x</tag></item>'), schema)
    assert err.value.tag == "data-missing"
    assert item(tree, "new") is None


def test_identity_prefix_stays_declared(schema: Schema) -> None:
    tree = start()
    config = parse(f'<config xmlns="{NC_NS}"><top xmlns="{ST}" xmlns:zz="urn:zz"><item><name>a</name>'
                   f"<tag>zz:thing</tag></item></top></config>")
    apply_edit(tree, config, schema)
    copied = [t for t in item(tree, "a").findall(f"{{{ST}}}tag") if t.text == "zz:thing"]  # type: ignore[union-attr]
    assert copied and copied[0].nsmap.get("zz") == "urn:zz"
    again = parse(etree.tostring(tree))
    assert any(t.nsmap.get("zz") == "urn:zz" for t in again.iter(f"{{{ST}}}tag"))


@pytest.mark.parametrize("option", ["default_operation", "error_option"])
def test_bad_option_values(schema: Schema, option: str) -> None:
    with pytest.raises(SimRpcError) as err:
        apply_edit(start(), cfg(""), schema, **{option: "bogus"})
    assert err.value.tag == "invalid-value"

"""Datastore validation: RFC 6241 Appendix A tags, error paths, speed on 1000 ACL entries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree
from netconf_sim.schema import Schema
from netconf_sim.validate import validate_datastore
from netconf_sim.xml import NC_NS, parse

ST = "urn:netmig:test:simtest"
ACL = "urn:ietf:params:xml:ns:yang:ietf-access-control-list"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sim_engine"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(["simtest"], {"simtest": ["colors"]}, search_path=[DATA_DIR])


def data(body: str) -> etree._Element:
    return parse(f'<data xmlns="{NC_NS}"><top xmlns="{ST}">{body}</top></data>')


GOOD = "<item><name>a</name><size>5</size><color>red</color><owner>o1</owner><mtu>1500</mtu></item>" \
       "<owner><id>o1</id><email>o1@example.com</email></owner>"


def test_valid_tree_has_no_errors(schema: Schema) -> None:
    assert validate_datastore(schema, data(GOOD)) == []


@pytest.mark.parametrize(("body", "leaf"), [
    ("<item><name>a</name><size>500</size></item>", "size"),            # range
    ("<item><name>a</name><size>x</size></item>", "size"),              # type
    ("<item><name>Bad</name></item>", "name"),                          # pattern
    ("<item><name>abcdefghijklmnopq</name></item>", "name"),            # length
    ("<item><name>a</name><color>green</color></item>", "color"),       # enum
])
def test_bad_values_are_invalid_value(schema: Schema, body: str, leaf: str) -> None:
    errors = validate_datastore(schema, data(body))
    assert [(e.tag, e.error_type) for e in errors] == [("invalid-value", "application")]
    assert errors[0].path is not None and errors[0].path.endswith(f"/st:{leaf}")
    assert errors[0].path.startswith("/st:top/st:item[st:name=")


def test_missing_mandatory_leaf(schema: Schema) -> None:
    errors = validate_datastore(schema, data("<owner><id>o1</id></owner>"))
    assert [e.tag for e in errors] == ["missing-element"]
    assert errors[0].info == {"bad-element": "email"}
    assert errors[0].path == "/st:top/st:owner[st:id='o1']"


def test_dangling_leafref(schema: Schema) -> None:
    errors = validate_datastore(schema, data("<item><name>a</name><owner>ghost</owner></item>"))
    assert [(e.tag, e.app_tag) for e in errors] == [("data-missing", "instance-required")]
    assert errors[0].path == "/st:top/st:item[st:name='a']/st:owner"
    assert validate_datastore(schema, data("<item><name>a</name><owner>ghost</owner></item>"),
                              syntax_only=True) == []


def test_must_violation(schema: Schema) -> None:
    errors = validate_datastore(schema, data("<item><name>a</name><mtu>40</mtu></item>"))
    assert [(e.tag, e.app_tag, e.message) for e in errors] == [("operation-failed", "must-violation",
                                                                 "mtu too small")]


def test_unknown_element(schema: Schema) -> None:
    errors = validate_datastore(schema, data("<item><name>a</name><wat>1</wat></item>"))
    assert [(e.tag, e.error_type) for e in errors] == [("unknown-element", "application")]
    assert errors[0].info["bad-element"] == "wat"


def test_feature_disabled_leaf_is_unknown() -> None:
    plain = Schema.load(["simtest"], search_path=[DATA_DIR])
    errors = validate_datastore(plain, data("<item><name>a</name><color>red</color></item>"))
    assert [e.tag for e in errors] == ["unknown-element"]


def test_duplicate_keys_and_missing_key(schema: Schema) -> None:
    errors = validate_datastore(schema, data("<item><name>a</name></item><item><name>a</name></item>"
                                             "<item><size>3</size></item>"))
    assert sorted(e.tag for e in errors) == ["data-exists", "missing-element"]


def test_config_false_data_in_config(schema: Schema) -> None:
    errors = validate_datastore(schema, data("<stats><hits>1</hits></stats>"))
    assert [e.tag for e in errors] == ["invalid-value"]
    assert validate_datastore(schema, data("<stats><hits>1</hits></stats>"), config_only=False) == []


def test_rpc_error_element_carries_path_prefix(schema: Schema) -> None:
    err = validate_datastore(schema, data("<item><name>a</name><size>0</size></item>"))[0]
    el = err.to_element()
    assert el.findtext(f"{{{NC_NS}}}error-tag") == "invalid-value"
    assert el.nsmap["st"] == ST
    assert el.findtext(f"{{{NC_NS}}}error-path") == "/st:top/st:item[st:name='a']/st:size"


def acl_data(n_acl: int, n_ace: int) -> etree._Element:
    root = etree.Element(f"{{{NC_NS}}}data", nsmap={None: NC_NS})
    acls = etree.SubElement(root, f"{{{ACL}}}acls", nsmap={None: ACL, "acl": ACL})
    for a in range(n_acl):
        acl = etree.SubElement(acls, f"{{{ACL}}}acl")
        etree.SubElement(acl, f"{{{ACL}}}name").text = f"vm{a}.in"
        etree.SubElement(acl, f"{{{ACL}}}type").text = "acl:ipv4-acl-type"
        aces = etree.SubElement(acl, f"{{{ACL}}}aces")
        for r in range(n_ace):
            ace = etree.SubElement(aces, f"{{{ACL}}}ace")
            etree.SubElement(ace, f"{{{ACL}}}name").text = f"r{r}"
            ipv4 = etree.SubElement(etree.SubElement(ace, f"{{{ACL}}}matches"), f"{{{ACL}}}ipv4")
            etree.SubElement(ipv4, f"{{{ACL}}}protocol").text = "6"
            etree.SubElement(ipv4, f"{{{ACL}}}source-ipv4-network").text = f"10.{a % 250}.{r}.0/24"
            acts = etree.SubElement(ace, f"{{{ACL}}}actions")
            etree.SubElement(acts, f"{{{ACL}}}forwarding").text = "acl:accept"
    return root


@pytest.fixture(scope="module")
def acl_schema() -> Schema:
    return Schema.load(["ietf-interfaces", "iana-if-type", "ietf-access-control-list"],
                       {"ietf-access-control-list": ["match-on-ipv4", "match-on-ipv6", "match-on-l4",
                                                    "ipv4", "ipv6"]})


def test_ietf_acl_identities_and_when(acl_schema: Schema) -> None:
    tree = acl_data(2, 2)
    assert validate_datastore(acl_schema, tree) == []
    for t in tree.iter(f"{{{ACL}}}type"):
        t.text = "acl:no-such-type"
    assert {e.tag for e in validate_datastore(acl_schema, tree)} >= {"invalid-value"}
    for t in tree.iter(f"{{{ACL}}}type"):
        t.text = "acl:ipv6-acl-type"  # valid identity, but the ipv4 case's when is now false
    errors = validate_datastore(acl_schema, tree)
    assert errors and {e.tag for e in errors} == {"unknown-element"}


def test_thousand_acl_entries_validate_fast(acl_schema: Schema) -> None:
    tree = acl_data(100, 10)
    validate_datastore(acl_schema, tree)  # compile the XPath constraints once
    started = time.perf_counter()
    assert validate_datastore(acl_schema, tree) == []
    assert time.perf_counter() - started < 0.5

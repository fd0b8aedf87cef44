"""netmig.xmlkit.parse: the hardened parser every device reply goes through."""

from __future__ import annotations

import pytest
from lxml import etree

from netmig import xmlkit
from netmig.xmlkit import XmlError


def _chain(depth: int) -> etree._Element:
    root = node = etree.Element("n")
    for _ in range(depth - 1):
        node = etree.SubElement(node, "n")
    return root


def test_depth_check_refuses_one_level_past_the_limit() -> None:
    xmlkit._check_depth(_chain(xmlkit.MAX_DEPTH))  # exactly at the limit: accepted
    with pytest.raises(XmlError, match="nested deeper than"):
        xmlkit._check_depth(_chain(xmlkit.MAX_DEPTH + 1))


def test_depth_check_sees_a_deep_branch_among_wide_ones() -> None:
    root = etree.Element("data")
    for i in range(50):
        etree.SubElement(root, "entry").text = str(i)
    root.append(_chain(xmlkit.MAX_DEPTH))  # root + chain = MAX_DEPTH + 1 levels
    with pytest.raises(XmlError):
        xmlkit._check_depth(root)


def test_parse_refuses_doctype_and_entities() -> None:
    with pytest.raises(XmlError, match="refused"):
        xmlkit.parse(b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>')


def test_parse_refuses_deep_documents_and_reads_normal_ones() -> None:
    depth = xmlkit.MAX_DEPTH + 5
    with pytest.raises(XmlError):
        xmlkit.parse("<a>" * depth + "</a>" * depth)
    root = xmlkit.parse(b"<data><a><b>1</b></a></data>")
    assert root.findtext("a/b") == "1"


def test_parse_depth_boundary_whichever_layer_enforces_it() -> None:
    # libxml2 refuses the extra level itself when it can (then the tree is not walked again)
    at_limit = xmlkit.MAX_DEPTH
    assert xmlkit.parse("<a>" * at_limit + "</a>" * at_limit).tag == "a"
    past = xmlkit.MAX_DEPTH + 1
    with pytest.raises(XmlError):
        xmlkit.parse("<a>" * past + "</a>" * past)

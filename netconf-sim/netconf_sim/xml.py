"""Hardened XML parsing for client input and the namespace constants of the simulator."""

from __future__ import annotations

from lxml import etree

__all__ = [
    "MAX_INPUT_BYTES",
    "MONITORING_NS",
    "NC_NS",
    "NC_OP_ATTR",
    "YANGLIB_NS",
    "YANG_NS",
    "Element",
    "XmlInputError",
    "data_root",
    "parse",
    "qname",
    "to_bytes",
]

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
NC_OP_ATTR = f"{{{NC_NS}}}operation"
YANG_NS = "urn:ietf:params:xml:ns:yang:1"
MONITORING_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
YANGLIB_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
MAX_INPUT_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 200

Element = etree._Element


class XmlInputError(ValueError):
    """Client XML is malformed, oversize, too deep or carries a DOCTYPE/entity."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                           dtd_validation=False, remove_blank_text=True, remove_comments=True,
                           remove_pis=True)


def parse(data: bytes | str, *, max_bytes: int = MAX_INPUT_BYTES) -> Element:
    """Parse untrusted XML; refuse DTDs and entities, oversize input and deep nesting."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise XmlInputError(f"input of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    raw = raw.strip()
    upper = raw.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise XmlInputError("document type declarations and entities are refused")
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlInputError(f"malformed XML: {exc}") from exc
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise XmlInputError(f"XML nested deeper than {MAX_DEPTH} levels")
        stack.extend((c, depth + 1) for c in node if isinstance(c.tag, str))
    return root


def qname(namespace: str, name: str) -> str:
    """Clark notation ``{namespace}name``."""
    return f"{{{namespace}}}{name}"


def data_root() -> Element:
    """An empty ``<data>`` element in the base namespace: the root of every datastore."""
    return etree.Element(qname(NC_NS, "data"), nsmap={None: NC_NS})


def to_bytes(el: Element, *, pretty: bool = False) -> bytes:
    """Serialize without an XML declaration."""
    return bytes(etree.tostring(el, pretty_print=pretty))

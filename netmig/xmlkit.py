"""The one module of netmig that parses XML, and the element builders everything else uses.

Every byte that comes from a device goes through :func:`parse`: no DTD, no entity expansion, no network
access, no huge trees, and a size cap, so a hostile device cannot read local files or exhaust memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from lxml import etree

__all__ = [
    "MAX_REPLY_BYTES",
    "NC_NS",
    "XmlError",
    "child",
    "children",
    "element",
    "fingerprint",
    "local_name",
    "parse",
    "qualify",
    "screen",
    "sub",
    "text_of",
    "to_bytes",
]

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
MAX_REPLY_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 256

Element = etree._Element


class XmlError(ValueError):
    """The XML is malformed, too large, too deep or carries a DOCTYPE."""


class _ThreadParser(threading.local):
    """One parser per thread, reused: an lxml parser must not be shared across threads, and a fresh one
    per reply costs more than the parse of a small reply (its libxml2 context is set up again)."""

    parser: etree.XMLParser | None = None


_THREAD_PARSER = _ThreadParser()


def _thread_parser() -> etree.XMLParser:
    parser = _THREAD_PARSER.parser
    if parser is None:
        parser = _THREAD_PARSER.parser = _parser()
    return parser


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_blank_text=True,
    )


def parse(data: bytes | str, *, max_bytes: int = MAX_REPLY_BYTES) -> Element:
    """Parse untrusted XML into an element; refuse DOCTYPEs, entities, oversize and deep nesting."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise XmlError(f"document of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    raw = raw.lstrip()
    screen(raw)
    try:
        root = etree.fromstring(raw, _thread_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    if not _PARSER_LIMITS_DEPTH:
        _check_depth(root)
    return root


def screen(data: bytes | str) -> None:
    """Refuse a document carrying a DOCTYPE or an entity declaration, without parsing it (or copying it:
    XML markup is case-sensitive, so the exact spellings are the only ones lxml would act on)."""
    found = ("<!DOCTYPE" in data or "<!ENTITY" in data) if isinstance(data, str) else (
        b"<!DOCTYPE" in data or b"<!ENTITY" in data)
    if found:
        raise XmlError("document type declarations and entities are refused")


# One compiled XPath: is there an element MAX_DEPTH + 1 levels down? libxml2 walks the tree in C (a
# Python walk over every element cost 3-4x the parse itself on a 12,000-element reply).
_TOO_DEEP = etree.XPath("boolean(" + "/".join(["*"] * MAX_DEPTH) + ")")


def _check_depth(root: Element) -> None:
    if _TOO_DEEP(root):
        raise XmlError(f"XML nested deeper than {MAX_DEPTH} levels")


def _parser_limits_depth() -> bool:
    """Whether libxml2 itself refuses a document nested deeper than MAX_DEPTH (it does, without
    XML_PARSE_HUGE, in the versions lxml 5 and 6 ship): then the tree need not be walked again."""
    deeper = MAX_DEPTH + 1
    try:
        etree.fromstring(b"<n>" * deeper + b"</n>" * deeper, _parser())
    except etree.XMLSyntaxError:
        return True
    return False


_PARSER_LIMITS_DEPTH = _parser_limits_depth()


def qualify(namespace: str, name: str) -> str:
    """Clark notation ``{namespace}name``."""
    return f"{{{namespace}}}{name}"


def local_name(el: Element) -> str:
    """The element's tag without its namespace."""
    return etree.QName(el).localname


def element(namespace: str, name: str, text: str | None = None, attrib: Mapping[str, str] | None = None,
            nsmap: Mapping[str | None, str] | None = None) -> Element:
    """A new element in ``namespace``; the namespace becomes the default one."""
    el = etree.Element(f"{{{namespace}}}{name}", attrib=dict(attrib) if attrib else None,
                       nsmap=dict(nsmap) if nsmap is not None else {None: namespace})
    if text is not None:
        el.text = text
    return el


def sub(parent: Element, namespace: str, name: str, text: str | int | None = None,
        attrib: Mapping[str, str] | None = None) -> Element:
    """Append a child element in ``namespace``; ints become their decimal text."""
    el = etree.SubElement(parent, f"{{{namespace}}}{name}", attrib=dict(attrib) if attrib else None)
    if text is not None:
        el.text = str(text)
    return el


def child(parent: Element, namespace: str, name: str) -> Element | None:
    """The first child named ``name`` in ``namespace``, or None."""
    return parent.find(qualify(namespace, name))


def children(parent: Element, namespace: str, name: str) -> Iterable[Element]:
    """Every child named ``name`` in ``namespace``."""
    return parent.findall(qualify(namespace, name))


def text_of(parent: Element, namespace: str, name: str) -> str | None:
    """The stripped text of the first child ``name``, or None when absent."""
    el = child(parent, namespace, name)
    if el is None or el.text is None:
        return None
    return el.text.strip()


def fingerprint(el: Element) -> bytes:
    """Canonical XML (C14N 1.0) of ``el``: equal bytes mean equal content, whatever the serialiser."""
    return bytes(etree.tostring(el, method="c14n"))


def to_bytes(el: Element, *, pretty: bool = False) -> bytes:
    """Serialize without an XML declaration."""
    return bytes(etree.tostring(el, pretty_print=pretty))

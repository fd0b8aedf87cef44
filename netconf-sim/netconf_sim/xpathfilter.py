"""The ``:xpath`` capability's filter: lxml XPath over a ``<data>`` tree.

Selected nodes come back with their ancestors (no siblings) and, for list entries on the way, their key
leaves. The prefixes are those in scope on the request's ``<filter>`` element.
"""

from __future__ import annotations

import copy

from lxml import etree

from .rpcerror import SimRpcError
from .schema import Schema, SNode
from .xml import Element, data_root

__all__ = ["apply_xpath_filter", "reroot"]


def apply_xpath_filter(data: Element, select: str, nsmap: dict[str, str],
                       schema: Schema | None = None) -> Element:
    """Evaluate ``select`` with ``data`` as the document root; return the selection in a new ``<data>``."""
    try:
        xp = etree.XPath(reroot(select), namespaces=nsmap, smart_strings=False)
    except etree.XPathSyntaxError as exc:
        raise SimRpcError.invalid_value(f"bad xpath {select!r}: {exc}", error_type="protocol") from exc
    try:
        result = xp(data)
    except etree.XPathEvalError as exc:
        raise SimRpcError.invalid_value(f"cannot evaluate xpath {select!r}: {exc}",
                                        error_type="protocol") from exc
    out = data_root()
    if not isinstance(result, list):
        return out
    full: set[Element] = set()
    keep: set[Element] = set()
    for item in result:
        node = item.getparent() if not isinstance(item, etree._Element) else item
        if not isinstance(node, etree._Element) or node is data:
            if node is data:
                full.update(data)
            continue
        full.add(node)
        cur = node.getparent()
        while cur is not None and cur is not data:
            keep.add(cur)
            cur = cur.getparent()
    if schema is not None:
        _add_keys(data, schema.root, keep, full)
    _build(data, out, keep, full)
    return out


_BEFORE_ABSOLUTE = set("([|,=<>!+")
_OPERATOR_WORDS = ("and", "or", "div", "mod")


def reroot(select: str) -> str:
    """Make absolute paths start below the ``<data>`` document element: ``/a`` becomes ``/*/a``."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(select):
        ch = select[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "/":
            before = "".join(out).rstrip()
            if not before or before[-1] in _BEFORE_ABSOLUTE or (before.endswith(_OPERATOR_WORDS) and (
                    len(before) == 3 or not before[-4].isalnum())):
                out.append("/*")
                if select.startswith("//", i):
                    out.append("/")
                    i += 1
                    ch = "/"
        out.append(ch)
        i += 1
    return "".join(out)


def _add_keys(node: Element, snode: SNode, keep: set[Element], full: set[Element]) -> None:
    for child in node:
        if child not in keep:
            continue
        csnode = snode.children.get(str(child.tag))
        if csnode is None:
            continue
        if csnode.keys:
            full.update(k for k in child if k.tag in csnode.keys)
        _add_keys(child, csnode, keep, full)


def _build(src: Element, dst: Element, keep: set[Element], full: set[Element]) -> None:
    for c in src:
        if c in full:
            dst.append(copy.deepcopy(c))
        elif c in keep:
            new = etree.SubElement(dst, c.tag, attrib=dict(c.attrib), nsmap=c.nsmap)
            new.text = c.text
            _build(c, new, keep, full)

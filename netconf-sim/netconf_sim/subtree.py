"""RFC 6241 section 6 subtree filtering as a pure function over lxml trees.

The filter marks data nodes to keep (with their ancestors) and whole subtrees to copy; the output is
a fresh ``<data>`` tree holding only those. A filter element with no namespace (or the base namespace)
matches any namespace; attributes on a filter element must be present with equal values on the data.
"""

from __future__ import annotations

import copy
import functools

from lxml import etree

from .schema import Schema, SNode
from .xml import NC_NS, Element, data_root

__all__ = ["apply_subtree_filter"]

_NC_PREFIX = f"{{{NC_NS}}}"


def apply_subtree_filter(data: Element, filter: Element, schema: Schema | None = None) -> Element:
    """Select from ``data`` (a ``<data>`` root) what the children of ``filter`` ask for.

    With ``schema``, list entries that are output partially also carry their key leaves.
    """
    keep: set[Element] = set()
    full: set[Element] = set()
    fchildren = [f for f in filter if isinstance(f.tag, str)]
    if fchildren:
        _apply(data, fchildren, keep, full, schema.root if schema else None)
    out = data_root()
    _build(data, out, keep, full)
    return out


@functools.lru_cache(maxsize=4096)
def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def _name_matches(f: Element, d: Element) -> bool:
    if f.tag == d.tag:
        return True
    fns, fname = _local(str(f.tag))
    dns, dname = _local(str(d.tag))
    if fname != dname:
        return False
    if fns is None or fns == NC_NS:
        return True
    return fns == dns


def _attrs_match(f: Element, d: Element) -> bool:
    for key, value in f.attrib.items():
        if key.startswith(_NC_PREFIX):
            continue
        if d.get(key) != value:
            return False
    return True


def _is_content_match(f: Element) -> bool:
    return len(f) == 0 and bool((f.text or "").strip())


def _is_selection(f: Element) -> bool:
    return len(f) == 0 and not (f.text or "").strip()


def _child_snode(snode: SNode | None, d: Element) -> SNode | None:
    return snode.children.get(str(d.tag)) if snode is not None else None


def _apply(d: Element, fchildren: list[Element], keep: set[Element], full: set[Element],
           snode: SNode | None) -> bool:
    """Mark what ``fchildren`` (one sibling set) selects below ``d``; False when it selects nothing."""
    content = [f for f in fchildren if _is_content_match(f)]
    for f in content:
        want = (f.text or "").strip()
        if not any(_name_matches(f, c) and _attrs_match(f, c) and (c.text or "").strip() == want
                   for c in d if isinstance(c.tag, str)):
            return False
    if content and len(content) == len(fchildren):
        full.update(c for c in d if isinstance(c.tag, str))
        return True
    selected = bool(content)
    by_name: dict[str, list[Element]] = {}  # filter siblings by local name: data x filter stays linear
    for f in fchildren:
        by_name.setdefault(_local(str(f.tag))[1], []).append(f)
    for c in d:
        if not isinstance(c.tag, str):
            continue
        candidates = by_name.get(_local(str(c.tag))[1])
        if not candidates:
            continue
        matching = [f for f in candidates if _name_matches(f, c) and _attrs_match(f, c)]
        if not matching:
            continue
        if any(_is_selection(f) for f in matching):
            full.add(c)
            selected = True
            continue
        ctext = (c.text or "").strip()
        if any(_is_content_match(f) and (f.text or "").strip() == ctext for f in matching):
            full.add(c)
            selected = True
            continue
        csnode = _child_snode(snode, c)
        for f in matching:
            if len(f) and _apply(c, list(f), keep, full, csnode):
                keep.add(c)
                selected = True
        if c in keep and csnode is not None and csnode.keys:
            full.update(k for k in c if k.tag in csnode.keys)
    return selected


def _build(src: Element, dst: Element, keep: set[Element], full: set[Element]) -> None:
    for c in src:
        if c in full:
            dst.append(copy.deepcopy(c))
        elif c in keep:
            new = etree.SubElement(dst, c.tag, attrib=dict(c.attrib), nsmap=c.nsmap)
            new.text = c.text
            _build(c, new, keep, full)

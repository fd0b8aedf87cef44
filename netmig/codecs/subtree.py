"""RFC 6241 subtree filtering done locally, over a device's data read once (for batches: netmig.bulkread).

:class:`LocalData` answers a subtree filter from a ``<data>`` tree the way a device does (list entries
selected by content match whole, ancestors kept, a node kept only when something below it is selected,
several filter nodes for one list: the union), indexing the tree as it goes: children by tag, leaves by
(tag, text), list entries by each of their leaves. After the first use an answer costs the entries it
selects, not the size of the tree.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy

from lxml import etree

from netmig import xmlkit
from netmig.codecs.base import Element

__all__ = ["LocalData", "data_of", "empty_data", "filter_prefix", "prefix_filter"]

_NC_PREFIX = f"{{{xmlkit.NC_NS}}}"
_Key = tuple[str, str]  # (tag, text) of a leaf


def _text(el: Element) -> str:
    return (el.text or "").strip()


def _is_content(f: Element) -> bool:
    return len(f) == 0 and bool(_text(f))


def _qualified(f: Element) -> bool:
    return str(f.tag).startswith("{") and not str(f.tag).startswith(_NC_PREFIX)


def _attrs_match(f: Element, d: Element) -> bool:
    return all(d.get(k) == v for k, v in f.attrib.items() if not k.startswith(_NC_PREFIX))


class LocalData:
    """A ``<data>`` tree answering subtree filters in time proportional to the answer (after indexing).

    Indexes are built lazily and kept: per element, its children by tag (in document order) and its
    leaf children by (tag, text); per (element, tag), the entries of that tag by each of their leaves.
    Not thread-safe by itself (BulkDevice serialises).
    """

    def __init__(self, data: Element) -> None:
        self.data = data
        self._by_tag: dict[Element, dict[str, list[Element]]] = {}
        self._leaves: dict[Element, dict[_Key, list[Element]]] = {}
        self._entries: dict[tuple[Element, str], dict[_Key, list[Element]]] = {}
        self._position: dict[Element, dict[Element, int]] = {}

    def _children(self, d: Element) -> dict[str, list[Element]]:
        found = self._by_tag.get(d)
        if found is None:
            found = self._by_tag[d] = {}
            for c in d:
                if isinstance(c.tag, str):
                    found.setdefault(str(c.tag), []).append(c)
        return found

    def _named(self, d: Element, f: Element) -> list[Element]:
        """The children of ``d`` the filter node ``f`` names (any namespace when ``f`` has none)."""
        if _qualified(f):
            return self._children(d).get(str(f.tag), [])
        name = xmlkit.local_name(f)
        return [c for tag, kids in self._children(d).items() if tag.rpartition("}")[2] == name for c in kids]

    def _leaf_index(self, d: Element) -> dict[_Key, list[Element]]:
        found = self._leaves.get(d)
        if found is None:
            found = self._leaves[d] = {}
            for c in d:
                if isinstance(c.tag, str) and len(c) == 0:
                    found.setdefault((str(c.tag), _text(c)), []).append(c)
        return found

    def _leaf_matches(self, d: Element, f: Element) -> list[Element]:
        """The leaf children of ``d`` a content-match node ``f`` matches."""
        if _qualified(f):
            found = self._leaf_index(d).get((str(f.tag), _text(f)), [])
        else:
            found = [c for c in self._named(d, f) if len(c) == 0 and _text(c) == _text(f)]
        return [c for c in found if _attrs_match(f, c)]

    def _candidates(self, d: Element, f: Element) -> list[Element]:
        """The children of ``d`` that ``f`` (a containment node) may select: through the entry index on
        its first qualified content-match child when it has one, else every child ``f`` names."""
        content = next((g for g in f if isinstance(g.tag, str) and _is_content(g) and _qualified(g)), None)
        if content is None or not _qualified(f):
            return self._named(d, f)
        slot = (d, str(f.tag))
        index = self._entries.get(slot)
        if index is None:
            index = self._entries[slot] = {}
            for entry in self._children(d).get(str(f.tag), []):
                for leaf in entry:
                    if isinstance(leaf.tag, str) and len(leaf) == 0:
                        index.setdefault((str(leaf.tag), _text(leaf)), []).append(entry)
        return index.get((str(content.tag), _text(content)), [])

    def _apply(self, d: Element, fchildren: list[Element], keep: set[Element], full: set[Element]) -> bool:
        """Mark what one sibling set of filter nodes selects below ``d``; False when nothing."""
        content = [f for f in fchildren if _is_content(f)]
        matched: list[Element] = []
        for f in content:
            found = self._leaf_matches(d, f)
            if not found:
                return False
            matched += found
        if content and len(content) == len(fchildren):
            full.update(c for c in d if isinstance(c.tag, str))
            return True
        full.update(matched)
        selected = bool(content)
        for f in fchildren:
            if _is_content(f):
                continue
            if len(f) == 0:  # selection node: every child of that name, whole
                found = [c for c in self._named(d, f) if _attrs_match(f, c)]
                full.update(found)
                selected = selected or bool(found)
                continue
            below = [g for g in f if isinstance(g.tag, str)]
            for c in self._candidates(d, f):
                if c in full or not _attrs_match(f, c):
                    continue
                if self._apply(c, below, keep, full):
                    keep.add(c)
                    selected = True
        return selected

    def _order(self, parent: Element, kids: Iterable[Element]) -> list[Element]:
        position = self._position.get(parent)
        if position is None:
            position = self._position[parent] = {c: n for n, c in enumerate(parent)}
        return sorted(kids, key=position.__getitem__)

    def select(self, filter: Element | Iterable[Element] | None) -> Element:
        """A fresh ``<data>`` holding what the subtree ``filter`` (a ``<filter>``, or its top-level
        nodes) selects (everything when None)."""
        if filter is None:
            return deepcopy(self.data)
        keep: set[Element] = set()
        full: set[Element] = set()
        fchildren = [f for f in filter if isinstance(f.tag, str)]
        if fchildren:
            self._apply(self.data, fchildren, keep, full)
        below: dict[Element, list[Element]] = {}
        for node in keep | full:
            parent = node.getparent()
            if parent is not None and (parent in keep or parent is self.data):
                below.setdefault(parent, []).append(node)
        out = empty_data()
        self._build(self.data, out, below, full)
        return out

    def _build(self, src: Element, dst: Element, below: dict[Element, list[Element]],
               full: set[Element]) -> None:
        for c in self._order(src, below.get(src, ())):
            if c in full:
                dst.append(deepcopy(c))
            else:
                new = etree.SubElement(dst, c.tag, attrib=dict(c.attrib), nsmap=c.nsmap)
                new.text = c.text
                self._build(c, new, below, full)


def filter_prefix(f: Element) -> tuple[str, ...]:
    """The path a top-level filter node reaches down before it selects anything: through containment
    nodes with one child and no content match (a VM's filter selects within the subtree at its end)."""
    path = [str(f.tag)]
    node = f
    while True:
        kids = [g for g in node if isinstance(g.tag, str)]
        if len(kids) != 1 or not len(kids[0]) or node.attrib or not _qualified(kids[0]):
            return tuple(path)
        inner = [g for g in kids[0] if isinstance(g.tag, str)]
        if any(_is_content(g) for g in inner):
            return tuple(path)
        node = kids[0]
        path.append(str(node.tag))


def prefix_filter(paths: Iterable[tuple[str, ...]]) -> Element:
    """``<filter>`` selecting the whole subtree at the end of each path (of Clark tags)."""
    flt = xmlkit.element(xmlkit.NC_NS, "filter", attrib={"type": "subtree"}, nsmap={"nc": xmlkit.NC_NS})
    for path in paths:
        node = flt
        for tag in path:
            node = etree.SubElement(node, tag)
    return flt


def data_of(reply: Element, tag: str) -> Element:
    """A fresh ``<data>`` holding copies of the reply's top-level ``tag`` elements."""
    data = xmlkit.element(xmlkit.NC_NS, "data", nsmap={None: xmlkit.NC_NS})
    for c in reply:
        if isinstance(c.tag, str) and str(c.tag) == tag:
            data.append(deepcopy(c))
    return data


def empty_data() -> Element:
    """An empty ``<data>``."""
    return xmlkit.element(xmlkit.NC_NS, "data", nsmap={None: xmlkit.NC_NS})

"""RFC 6241 section 6 subtree filtering as a pure function over lxml trees.

The filter marks data nodes to keep (with their ancestors) and whole subtrees to copy; the output is
a fresh ``<data>`` tree holding only those. A filter element with no namespace (or the base namespace)
matches any namespace; attributes on a filter element must be present with equal values on the data.

Containment nodes whose children include a content-match node (``<acl><name>in</name></acl>``) find
their candidate entries through a :class:`ListIndex` (entries by the text of that leaf) instead of
walking the whole list; the usual matching then runs on those candidates only, so the result is the
same as a scan's. Pass the owner's cached index for a tree that outlives the request.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable

from lxml import etree

from .listindex import ListIndex
from .schema import Schema, SNode
from .xml import NC_NS, Element, data_root

__all__ = ["apply_subtree_filter"]

_NC_PREFIX = f"{{{NC_NS}}}"


def apply_subtree_filter(data: Element, filter: Element, schema: Schema | None = None,
                         index: ListIndex | None = None, *, scan: bool = False) -> Element:
    """Select from ``data`` (a ``<data>`` root) what the children of ``filter`` ask for.

    With ``schema``, list entries that are output partially also carry their key leaves. ``index``
    must belong to ``data`` as it is now (None: a fresh one for this call); ``scan`` walks every list
    instead (the reference behaviour, for tests).
    """
    run = _Run(None if scan else (index if index is not None else ListIndex()))
    fchildren = _elements(filter)
    if fchildren:
        run.apply(data, fchildren, schema.root if schema else None)
    out = data_root()
    _build(data, out, run)
    return out


@functools.lru_cache(maxsize=4096)
def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def _elements(f: Element) -> list[Element]:
    return [c for c in f if isinstance(c.tag, str)]


def _any_namespace(f: Element) -> bool:
    ns = _local(str(f.tag))[0]
    return ns is None or ns == NC_NS


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


def _child_snode(snode: SNode | None, d: Element) -> SNode | None:
    return snode.children.get(str(d.tag)) if snode is not None else None


def _named(d: Element, f: Element) -> Iterable[Element]:
    """Children of ``d`` whose name ``f`` matches (C-level tag filtering, no per-child Python test)."""
    return d.iterchildren(f"{{*}}{_local(str(f.tag))[1]}" if _any_namespace(f) else str(f.tag))


class _Run:
    """One filtering: the marks, the index, and each filter node's element children (computed once).

    Marks: ``full`` nodes are copied whole, ``keep`` nodes without their children (those marked are
    added), ``whole`` nodes are kept with every element child copied whole (a content-match-only
    filter's entries: copied in one piece).
    """

    __slots__ = ("_kids", "full", "index", "keep", "whole")

    def __init__(self, index: ListIndex | None) -> None:
        self.keep: set[Element] = set()
        self.full: set[Element] = set()
        self.whole: set[Element] = set()
        self.index = index
        self._kids: dict[Element, list[Element]] = {}

    def kids(self, f: Element) -> list[Element]:
        kids = self._kids.get(f)
        if kids is None:
            kids = self._kids[f] = _elements(f)
        return kids

    def apply(self, d: Element, fchildren: list[Element], snode: SNode | None) -> bool:
        """Mark what ``fchildren`` (one sibling set) selects below ``d``; False when it selects nothing."""
        content = [f for f in fchildren if not self.kids(f) and (f.text or "").strip()]
        for f in content:
            want = (f.text or "").strip()
            if not any((c.text or "").strip() == want and _attrs_match(f, c) for c in _named(d, f)):
                return False
        if content and len(content) == len(fchildren):
            if d.getparent() is None:  # the <data> root: it is not output itself
                self.full.update(c for c in d if isinstance(c.tag, str))
            else:
                self.whole.add(d)
            return True
        selected = bool(content)
        by_name: dict[str, list[Element]] = {}  # filter siblings by local name: each data child meets its own
        for f in fchildren:
            by_name.setdefault(_local(str(f.tag))[1], []).append(f)
        for name, group in by_name.items():
            for c, filters in self.candidates(d, name, group, snode):
                if self.visit(c, filters, _child_snode(snode, c)):
                    selected = True
        return selected

    def candidates(self, d: Element, name: str, group: list[Element],
                   snode: SNode | None) -> Iterable[tuple[Element, list[Element]]]:
        """The children of ``d`` named ``name`` that ``group`` (filters of that local name) may select,
        each with the filters that may select it: all children with the whole group, or with an index
        and only containment filters holding content-match nodes, per filter the entries whose probe
        leaf (a key leaf if the schema says which) has the wanted text."""
        index = self.index
        if index is None:
            return ((c, group) for c in d.iterchildren(f"{{*}}{name}"))
        probes: list[Element] = []
        for f in group:
            matches = [c for c in self.kids(f) if not self.kids(c) and (c.text or "").strip()]
            if not matches:
                return ((c, group) for c in d.iterchildren(f"{{*}}{name}"))
            probes.append(_probe(matches, snode.children.get(str(f.tag)) if snode is not None else None))
        found: dict[Element, list[Element]] = {}
        for f, probe in zip(group, probes, strict=True):
            for c in index.lookup(d, name, _local(str(probe.tag))[1], (probe.text or "").strip()):
                found.setdefault(c, []).append(f)
        return found.items()

    def visit(self, c: Element, group: list[Element], csnode: SNode | None) -> bool:
        """Apply the filters of ``group`` that match data child ``c``; True when ``c`` is selected."""
        matching = [f for f in group if _name_matches(f, c) and _attrs_match(f, c)]
        if not matching:
            return False
        if any(not self.kids(f) and not (f.text or "").strip() for f in matching):  # a selection node
            self.full.add(c)
            return True
        ctext = (c.text or "").strip()
        if any(not self.kids(f) and (f.text or "").strip() == ctext for f in matching):  # content match
            self.full.add(c)
            return True
        selected = False
        for f in matching:
            fchildren = self.kids(f)
            if fchildren and self.apply(c, fchildren, csnode):
                self.keep.add(c)
                selected = True
        if selected and csnode is not None and csnode.keys:
            self.full.update(k for k in c if k.tag in csnode.keys)
        return selected


def _probe(matches: list[Element], list_snode: SNode | None) -> Element:
    """The content-match node to look entries up by: a key leaf when known (the most selective)."""
    if list_snode is not None and list_snode.keys:
        keys = {_local(k)[1] for k in list_snode.keys}
        for m in matches:
            if _local(str(m.tag))[1] in keys:
                return m
    return matches[0]


def _build(src: Element, dst: Element, run: _Run) -> None:
    """Copy the marked nodes below ``src`` into ``dst`` in document order, visiting only marked nodes
    (and their parents' children when many are marked), so output costs what it holds."""
    marked: dict[Element, list[Element]] = {}
    for node in (*run.full, *run.keep):
        parent = node.getparent()
        if parent is not None:
            marked.setdefault(parent, []).append(node)
    _copy_marked(src, dst, marked, run)


def _copy_marked(src: Element, dst: Element, marked: dict[Element, list[Element]], run: _Run) -> None:
    kids = marked.get(src)
    if not kids:
        return
    if len(kids) > 8:
        wanted = set(kids)
        ordered = [c for c in src if c in wanted]
    else:
        ordered = sorted(set(kids), key=src.index)
    full, whole = run.full, run.whole
    for c in ordered:
        if c in full:
            dst.append(copy.copy(c))  # lxml copies deep, tail included
        elif c in whole and next(c.iterchildren(etree.Comment, etree.ProcessingInstruction), None) is None:
            new = copy.copy(c)
            new.tail = None
            dst.append(new)
        else:
            new = etree.SubElement(dst, c.tag, attrib=dict(c.attrib), nsmap=c.nsmap)
            new.text = c.text
            if c in whole:
                for child in c:
                    if isinstance(child.tag, str):
                        new.append(copy.copy(child))
            else:
                _copy_marked(c, new, marked, run)

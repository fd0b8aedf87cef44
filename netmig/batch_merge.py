"""Group commit's XML: many VMs' edits for one device merged into one, and a group's checks.

Pure functions over ``<config>``/``<data>`` trees, no I/O. :class:`Merger` merges edits (containers by
name, list entries by their leaves); :func:`group_changes` gives one :class:`~netmig.change.DeviceChange`
per destination device holding every member VM's edit; :func:`missing_from` checks that running holds
what a group sent (the group's verify, and recovery's check of a journaled group) and
:func:`still_present` that it holds none of what a group's undo removes (recovery's compensation check).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from copy import deepcopy

from lxml import etree

from netmig.change import DeviceChange
from netmig.modes.centralized import PreparedMigration
from netmig.xmlkit import Element, element

__all__ = ["Merger", "copy", "group_changes", "missing_from", "still_present", "union"]

_NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def _ident(el: Element) -> tuple[str, str | None]:
    """How Merger tells siblings apart: a list entry by its leaves (keys first; two VMs never send the
    same entry: they would have conflicted), a container by its name alone."""
    leaves = [f"{c.tag!s}={c.text}" for c in el if isinstance(c.tag, str) and len(c) == 0]
    return (str(el.tag), "|".join(leaves) if leaves else None)


class Merger:
    """Merge ``<config>`` trees into one: containers by name, list entries by their leaves.

    Each target element's children are indexed once and the index kept up to date as children are
    added, so merging N VMs' edits costs the size of the edits, not N times the merged tree.
    """

    def __init__(self) -> None:
        self._indexes: dict[Element, dict[tuple[str, str | None], Element]] = {}

    def merge(self, into: Element, other: Element) -> None:
        index = self._indexes.get(into)
        if index is None:
            index = self._indexes[into] = {_ident(c): c for c in into if isinstance(c.tag, str)}
        for child in list(other):
            if not isinstance(child.tag, str):
                continue
            ident = _ident(child)
            same = index.get(ident)
            if same is None or len(child) == 0:
                into.append(child)
                index[ident] = child
            else:
                for name, value in child.attrib.items():
                    same.set(name, value)
                self.merge(same, child)


_IDENTITY = re.compile(r"^[A-Za-z_][\w.-]*:[\w.-]+$")  # prefix:name (identityref); not IPs or MACs
_NC_OPERATION = f"{{{_NC_NS}}}operation"


def _norm(text: str | None) -> str:
    value = (text or "").strip()
    return value.partition(":")[2] if _IDENTITY.match(value) else value


def _leaves(el: Element) -> list[tuple[str, str]]:
    return [(str(c.tag), _norm(c.text)) for c in el if isinstance(c.tag, str) and len(c) == 0]


def missing_from(running: Element, edit: Element, path: str = "") -> list[str]:
    """What of ``edit`` (a ``<config>``) ``running`` (a ``<data>``) does not hold, in linear time.

    A group's verify: one VM's verifier decodes the device's whole running config, so checking N VMs
    that way costs N times the device. Here every list entry and leaf sent must be in running (running
    may hold more: other VMs, defaults); entries are found through an index of running's entries by
    each of their leaves, using the most selective leaf of the entry sought. Removals are not checked.
    """
    problems: list[str] = []
    index = _index(running)
    for e in edit:
        if not isinstance(e.tag, str) or e.get(_NC_OPERATION) in ("delete", "remove"):
            continue
        here = f"{path}/{etree.QName(e).localname}"
        leaves = _leaves(e)
        if len(e) == 0:  # a leaf
            if not any(_norm(r.text) == _norm(e.text) for r in index.get((str(e.tag), "", ""), ())):
                problems.append(f"{here}: running lacks {e.text!r}")
            continue
        keys = [(str(e.tag), tag, text) for tag, text in leaves] or [(str(e.tag), "", "")]
        candidates = min((index.get(k, []) for k in keys), key=len)
        want = set(leaves)
        match = next((r for r in candidates if want <= set(_leaves(r))), None)
        if match is None:
            problems.append(f"{here}[{', '.join(f'{etree.QName(t).localname}={v}' for t, v in leaves[:3])}]: "
                            "not in running")
            continue
        branches = [c for c in e if isinstance(c.tag, str) and len(c)]
        if branches:
            holder = element(_NC_NS, "config")
            holder.extend(copy(c) for c in branches)
            problems += missing_from(match, holder, here)
    return problems


def group_changes(members: Sequence[PreparedMigration]) -> list[DeviceChange]:
    """One DeviceChange per destination device holding every member VM's edit, verified as a whole."""
    edits: dict[str, Element] = {}
    first: dict[str, DeviceChange] = {}
    filters: dict[str, Element | None] = {}
    merger = Merger()
    for prepared in members:
        for change in prepared.changes:
            name = change.endpoint.name
            first.setdefault(name, change)
            root = edits.setdefault(name, element(_NC_NS, "config"))
            merger.merge(root, copy(change.edit))
            filters[name] = union(filters.get(name, element(_NC_NS, "filter", attrib={"type": "subtree"})),
                                   change.verify_filter)
    changes = []
    for name, root in sorted(edits.items()):
        sent = copy(root)

        def verify(running: Element, sent: Element = sent) -> list[str]:
            return missing_from(running, sent)
        base = first[name]
        changes.append(DeviceChange(base.endpoint, root, verify, filters.get(name), base.modules,
                                    base.features))
    return changes


def union(into: Element | None, flt: Element | None) -> Element | None:
    """The union of subtree filters: every top-level node of each, side by side (RFC 6241: sibling
    containment nodes select independently); None (read everything) once one VM has no filter.

    The group's verify then reads what its VMs' own verifies would, not the device's whole running
    config (which grows with every group committed before: quadratic over a batch's groups)."""
    if into is None or flt is None:
        return None
    into.extend(copy(node) for node in flt if isinstance(node.tag, str))
    return into


def copy(el: Element) -> Element:
    return deepcopy(el)


def _index(running: Element) -> dict[tuple[str, str, str], list[Element]]:
    """``running``'s children by (tag, leaf tag, leaf value) for each of their leaves."""
    index: dict[tuple[str, str, str], list[Element]] = {}
    for r in running:
        if isinstance(r.tag, str):
            for tag, text in _leaves(r) or [("", "")]:
                index.setdefault((str(r.tag), tag, text), []).append(r)
    return index


def still_present(running: Element, undo: Element, path: str = "") -> list[str]:
    """What ``undo`` (a ``<config>`` removing entries with ``nc:operation`` remove/delete) removes that
    ``running`` still holds; empty when running holds none of it.

    An element marked remove/delete is looked up as :func:`missing_from` looks up an entry (by its
    leaves: its keys); an unmarked container is followed down when running has it (gone: whatever it
    held is gone too); an unmarked leaf is part of its entry's identity, not checked on its own."""
    problems: list[str] = []
    index = _index(running)
    for u in undo:
        if not isinstance(u.tag, str):
            continue
        removing = u.get(_NC_OPERATION) in ("delete", "remove")
        if len(u) == 0 and not removing:
            continue
        leaves = [(str(c.tag), _norm(c.text)) for c in u if isinstance(c.tag, str) and len(c) == 0
                  and c.get(_NC_OPERATION) not in ("delete", "remove")]  # a leaf it removes is no key
        keys = [(str(u.tag), tag, text) for tag, text in leaves] or [(str(u.tag), "", "")]
        want = set(leaves)
        if leaves:
            matches = [r for r in min((index.get(k, []) for k in keys), key=len) if want <= set(_leaves(r))]
        else:  # a container by its name alone, whatever leaves running's has
            matches = [r for r in running if r.tag == u.tag]
        here = f"{path}/{etree.QName(u).localname}"
        if removing:
            if matches:
                named = ", ".join(f"{etree.QName(t).localname}={v}" for t, v in leaves[:3])
                problems.append(f"{here}[{named}]: still in running")
            continue
        for match in matches:
            problems += still_present(match, u, here)
    return problems

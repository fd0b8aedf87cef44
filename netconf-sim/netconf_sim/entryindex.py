"""Keyed list entries of one datastore tree, kept across edits so an edit's lookups cost its own entries.

An :class:`EntryIndex` maps, per (parent element, list tag), the stripped text of an entry's key leaves
(in YANG key order) to the entry. A table is built from the parent's children on first use and then
follows the edits ``editconfig`` makes through it: an entry inserted, removed or replaced in an indexed
list updates the table; a key leaf of an indexed entry changed drops that list's table. Anything else
that may change the tree must not use the index again: the owner drops it (``DeviceEngine`` keeps one per
tree object and makes a new tree on copy-config, discard-changes and restore; an edit's rollback clears
it). Lookups also check what they find: an entry no longer under its parent, or whose keys no longer
match, makes the table be rebuilt. A list holding two entries with the same key is never cached, so a
lookup answers what a scan from the first sibling would.
"""

from __future__ import annotations

from .xml import Element

__all__ = ["EntryIndex", "entry_key"]

Key = tuple[str, ...]


def entry_key(entry: Element, keys: tuple[str, ...]) -> Key:
    """The stripped text of ``entry``'s key leaves (Clark tags, in key order); '' for a missing leaf."""
    return tuple((entry.findtext(k) or "").strip() for k in keys)


class _Table:
    __slots__ = ("by_key", "keys")

    def __init__(self, keys: tuple[str, ...], by_key: dict[Key, Element]) -> None:
        self.keys = keys
        self.by_key = by_key


class EntryIndex:
    """List entries by key per (parent, list tag), built lazily and updated by the edits told to it."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[tuple[Element, str], _Table] = {}

    def __len__(self) -> int:
        return len(self._tables)

    def clear(self) -> None:
        """Forget every table (the tree changed in a way the index was not told about)."""
        self._tables.clear()

    def find(self, parent: Element, tag: str, keys: tuple[str, ...], wanted: Key) -> Element | None:
        """The first child of ``parent`` named ``tag`` whose key leaves ``keys`` read ``wanted``."""
        table = self._table(parent, tag, keys)
        if table is None:
            return _scan(parent, tag, keys, wanted)
        hit = table.by_key.get(wanted)
        if hit is None:
            return None
        if hit.getparent() is parent and entry_key(hit, keys) == wanted:
            return hit
        del self._tables[(parent, tag)]  # changed behind the index's back: rebuild from the tree
        return self.find(parent, tag, keys, wanted)

    def added(self, parent: Element, tag: str, entry: Element) -> None:
        """``entry`` (a list entry named ``tag``) was inserted under ``parent``."""
        table = self._tables.get((parent, tag))
        if table is None:
            return
        key = entry_key(entry, table.keys)
        if key in table.by_key:  # a second entry with that key: this list is scanned from now on
            del self._tables[(parent, tag)]
        else:
            table.by_key[key] = entry

    def removed(self, parent: Element, tag: str, entry: Element) -> None:
        """``entry`` (a list entry named ``tag``) was removed from ``parent``."""
        table = self._tables.get((parent, tag))
        if table is None:
            return
        key = entry_key(entry, table.keys)
        if table.by_key.get(key) is entry:
            del table.by_key[key]
        else:
            del self._tables[(parent, tag)]

    def replaced(self, parent: Element, tag: str, old: Element, new: Element) -> None:
        """List entry ``old`` under ``parent`` was replaced by ``new``."""
        self.removed(parent, tag, old)
        self.added(parent, tag, new)

    def child_changed(self, entry: Element, child_tag: str) -> None:
        """A child ``child_tag`` of ``entry`` was inserted, removed or replaced: if ``entry`` is in an
        indexed list and the child is one of its key leaves, that list's table is dropped."""
        parent = entry.getparent()
        if parent is None:
            return
        table = self._tables.get((parent, str(entry.tag)))
        if table is not None and child_tag in table.keys:
            del self._tables[(parent, str(entry.tag))]

    def _table(self, parent: Element, tag: str, keys: tuple[str, ...]) -> _Table | None:
        table = self._tables.get((parent, tag))
        if table is not None and table.keys == keys:
            return table
        by_key: dict[Key, Element] = {}
        for entry in parent.iterchildren(tag):
            key = entry_key(entry, keys)
            if key in by_key:
                return None  # duplicate keys (invalid data): answer by scanning, like the scan would
            by_key[key] = entry
        table = self._tables[(parent, tag)] = _Table(keys, by_key)
        return table


def _scan(parent: Element, tag: str, keys: tuple[str, ...], wanted: Key) -> Element | None:
    for entry in parent.iterchildren(tag):
        if entry_key(entry, keys) == wanted:
            return entry
    return None

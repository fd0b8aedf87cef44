"""Lookup tables for subtree filtering: the entries of a list found by the text of one of their leaves.

A table covers the children of one parent element that share a local name (the entries of one list, in
any namespace) and maps the stripped text of their child leaves of another local name to those entries.
Tables are built on first use. An index is only valid while its tree does not change: whoever owns the
tree drops the index on every change (``DeviceEngine`` does, per datastore) or uses one per request.
"""

from __future__ import annotations

from .xml import Element

__all__ = ["ListIndex"]


class ListIndex:
    """Entries by leaf text, per (parent, entry local name, leaf local name), built lazily."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[tuple[Element, str, str], dict[str, list[Element]]] = {}

    def lookup(self, parent: Element, entry_name: str, leaf_name: str, text: str) -> list[Element]:
        """The children of ``parent`` named ``entry_name`` having a child ``leaf_name`` whose stripped
        text is ``text`` (names are local: any namespace), in document order."""
        key = (parent, entry_name, leaf_name)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = _build(parent, entry_name, leaf_name)
        return table.get(text, _EMPTY)

    def __len__(self) -> int:
        return len(self._tables)


_EMPTY: list[Element] = []


def _build(parent: Element, entry_name: str, leaf_name: str) -> dict[str, list[Element]]:
    table: dict[str, list[Element]] = {}
    leaf_tag = f"{{*}}{leaf_name}"
    for entry in parent.iterchildren(f"{{*}}{entry_name}"):
        for leaf in entry.iterchildren(leaf_tag):
            text = leaf.text
            bucket = table.setdefault(text.strip() if text else "", [])
            if not bucket or bucket[-1] is not entry:
                bucket.append(entry)
    return table

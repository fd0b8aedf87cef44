"""Which learned entries a subtree filter may select, so a ``<get>`` renders only those.

The answer is a superset of the filter's matches per DI kind (the exact filter still runs on what is
rendered): a list filter with a content-match node on a field (or the owner) selects the entries the
table index has for that value; a selection node, a list filter without content match or a match on
a field the index does not keep (time, origin) selects the whole kind; a filter not reaching the
learned container selects nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from .learned import KIND_FIELDS, KIND_KEYS, OWNER, Key, LearnedTables
from .xml import NC_NS, Element

__all__ = ["learned_selection"]

Selection = dict[str, set[Key] | None]


def learned_selection(filter: Element, namespace: str, path: Sequence[str],
                      tables: LearnedTables) -> Selection:
    """Per kind (absent: none, None: all) the keys of the entries that ``filter`` (a subtree
    ``<filter>``) may select below ``path`` (the learned container's names from the data root)."""
    level = [filter]
    for name in path:
        below: list[Element] = []
        for node in level:
            for child in _elements(node):
                if not _named(child, name, namespace):
                    continue
                if not _elements(child):  # a selection (or an odd content match): everything
                    return {kind: None for kind in tables.kinds}
                below.append(child)
        level = below
    out: Selection = {}
    for node in level:
        for item in _elements(node):
            for kind in tables.kinds:
                shape = tables.shapes.get(kind)
                if shape is not None and _named(item, shape.list_name, namespace):
                    _add(out, kind, _item_keys(item, kind, tables, namespace))
    return out


def _item_keys(item: Element, kind: str, tables: LearnedTables, namespace: str) -> set[Key] | None:
    """The keys one list filter may select: by its first content-match node on an indexed field."""
    shape = tables.shapes[kind]
    fields = {shape.native(name): name for name in (*KIND_KEYS[kind], *KIND_FIELDS[kind])}
    fields[shape.owner_field] = OWNER
    for leaf in _elements(item):
        text = (leaf.text or "").strip()
        if not text or _elements(leaf):
            continue
        local = _local(leaf)
        if local in fields and _named(leaf, local, namespace):
            return tables.keys_where(kind, fields[local], text)
    return None


def _add(out: Selection, kind: str, keys: set[Key] | None) -> None:
    if kind in out:
        have = out[kind]
        if have is None or keys is None:
            out[kind] = None
        else:
            have |= keys
    else:
        out[kind] = None if keys is None else set(keys)


def _elements(node: Element) -> list[Element]:
    return [c for c in node if isinstance(c.tag, str)]


def _namespace(node: Element) -> str | None:
    tag = str(node.tag)
    return tag[1:].partition("}")[0] if tag.startswith("{") else None


def _local(node: Element) -> str:
    return str(node.tag).rpartition("}")[2]


def _named(node: Element, name: str, namespace: str | None) -> bool:
    """Whether filter node ``node`` selects data nodes called ``name`` in ``namespace``."""
    if _local(node) != name:
        return False
    ns = _namespace(node)
    return ns is None or ns in (NC_NS, namespace)

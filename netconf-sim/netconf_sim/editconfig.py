"""RFC 6241 section 7.2 edit-config applied to an lxml datastore tree, with an undo journal.

``apply_edit`` changes ``target`` in place (no whole-tree copy) and returns an ``EditJournal``: call
``rollback()`` to undo every change, e.g. on error or for test-only. List entries are matched by their
key leaves (through an :class:`~netconf_sim.entryindex.EntryIndex`, the caller's when it keeps one per
tree across edits, so an edit costs its own entries, not the size of the lists it touches) and
leaf-list entries by value; errors carry an error-path with module prefixes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

from lxml import etree

from .entryindex import EntryIndex
from .rpcerror import SimRpcError
from .schema import Schema, SNode
from .xml import NC_OP_ATTR, Element

__all__ = ["OPERATIONS", "EditJournal", "apply_edit", "clean_copy", "xpath_of"]

OPERATIONS = ("merge", "replace", "create", "delete", "remove")
_CREATING = frozenset(("merge", "replace", "create"))
_NCNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


class EditJournal:
    """Inverse operations of an edit, replayed backwards by ``rollback``; ``changed`` lists paths."""

    def __init__(self, index: EntryIndex | None = None) -> None:
        self.index = index if index is not None else EntryIndex()
        self._undo: list[Callable[[], None]] = []
        self.changed: list[str] = []
        self.touched_tops: set[str] = set()
        self.errors: list[SimRpcError] = []
        self.new_nodes: list[Element] = []
        self.parents: list[Element] = []

    def __bool__(self) -> bool:
        return bool(self._undo)

    def record(self, undo: Callable[[], None], path: str, top: str) -> None:
        self._undo.append(undo)
        self.changed.append(path)
        self.touched_tops.add(top)

    def rollback(self) -> None:
        self.index.clear()  # the undo steps do not tell the index what they restore
        while self._undo:
            self._undo.pop()()
        self.changed.clear()
        self.touched_tops.clear()
        self.new_nodes.clear()
        self.parents.clear()


class _Ctx:
    def __init__(self, schema: Schema, journal: EditJournal, continue_on_error: bool) -> None:
        self.schema = schema
        self.journal = journal
        self.continue_on_error = continue_on_error
        self.nsmap: dict[str, str] = {}
        self.index = journal.index  # list entries by key, per (parent, list)

    def fail(self, err: SimRpcError) -> None:
        err.path_nsmap = {**self.nsmap, **err.path_nsmap}
        if not self.continue_on_error:
            raise err
        self.journal.errors.append(err)


def apply_edit(target: Element, config: Element, schema: Schema, *, default_operation: str = "merge",
               error_option: str = "stop-on-error", index: EntryIndex | None = None) -> EditJournal:
    """Apply the children of ``config`` to ``target`` (a ``<data>`` root) in place.

    Raises the first SimRpcError (after undoing the partial edit) unless ``error_option`` is
    continue-on-error, which applies what it can and returns the errors in ``journal.errors``.
    ``index``: ``target``'s keyed list entries, kept by the caller across edits of the same tree (the
    edit keeps it up to date; a rollback clears it); without one, a fresh index for this edit.
    """
    if default_operation not in ("merge", "replace", "none"):
        raise SimRpcError.invalid_parameter(f"bad default-operation {default_operation!r}")
    if error_option not in ("stop-on-error", "continue-on-error", "rollback-on-error"):
        raise SimRpcError.invalid_parameter(f"bad error-option {error_option!r}")
    journal = EditJournal(index)
    ctx = _Ctx(schema, journal, error_option == "continue-on-error")
    try:
        _edit_children(ctx, target, config, schema.root, default_operation, "", "")
    except SimRpcError:
        journal.rollback()
        raise
    except BaseException:
        journal.index.clear()  # not undone (a bug, not a NETCONF error): at least nothing stale stays
        raise
    return journal


def xpath_of(schema: Schema, node: SNode, parent_path: str, entry: Element | None,
             nsmap: dict[str, str] | None = None) -> str:
    """Extend ``parent_path`` with ``node`` (and the key predicates of list ``entry``)."""
    step = _prefixed(schema, node.tag, nsmap)
    if entry is not None and node.kind == "list":
        for key in node.keys:
            kel = entry.find(key)
            value = (kel.text or "").strip() if kel is not None else ""
            step += f"[{_prefixed(schema, key, nsmap)}={_literal(value)}]"
    elif entry is not None and node.kind == "leaf-list":
        step += f"[.={_literal((entry.text or '').strip())}]"
    return f"{parent_path}/{step}"


def _prefixed(schema: Schema, tag: str, nsmap: dict[str, str] | None) -> str:
    ns, _, name = tag[1:].partition("}")
    prefix = schema.prefix_for_namespace(ns) or "ns"
    if nsmap is not None:
        nsmap[prefix] = ns
    return f"{prefix}:{name}"


def _literal(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    parts = value.split("'")
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in parts) + ")"


def clean_copy(el: Element) -> Element:
    """Deep copy without NETCONF operation attributes; prefixed values keep their namespace declared."""
    dup = copy.deepcopy(el)
    for node in dup.iter():
        if isinstance(node.tag, str) and NC_OP_ATTR in node.attrib:
            del node.attrib[NC_OP_ATTR]
    # a device stores data, not the request's spelling: the declaration of the prefix the operation
    # attributes used (xmlns:nc on a list entry) must not end up in running
    etree.cleanup_namespaces(dup)
    return _fix_prefixed_values(dup, el)


def _fix_prefixed_values(dup: Element, orig: Element) -> Element:
    """Re-create leaves whose text is ``prefix:value`` so the prefix stays declared where they go."""
    for node, source in list(zip(dup.iter(), orig.iter(), strict=True)):
        if not isinstance(node.tag, str) or len(node) or not node.text or ":" not in node.text:
            continue
        prefix = node.text.strip().partition(":")[0]
        if not _NCNAME.match(prefix) or prefix not in source.nsmap:
            continue
        parent = node.getparent()
        fresh = etree.Element(node.tag, attrib=dict(node.attrib),
                              nsmap={**_own_nsmap(node), prefix: source.nsmap[prefix]})
        fresh.text = node.text.strip()
        fresh.tail = node.tail
        if parent is None:
            dup = fresh
        else:
            parent.replace(node, fresh)
    return dup


def _own_nsmap(node: Element) -> dict[str | None, str]:
    ns = etree.QName(node).namespace
    return {None: ns} if ns else {}


def _entry_keys(ctx: _Ctx, c: Element, node: SNode, path: str) -> list[str] | None:
    values = []
    for key in node.keys:
        kel = c.find(key)
        if kel is None:
            kname = key.rpartition("}")[2]
            where = xpath_of(ctx.schema, node, path, None, ctx.nsmap)
            ctx.fail(SimRpcError.missing_element(kname, path=where,
                                                 message=f"list entry without its key {kname}"))
            return None
        values.append((kel.text or "").strip())
    return values


def _find_existing(ctx: _Ctx, t_parent: Element, c: Element, node: SNode,
                   keys: list[str] | None) -> Element | None:
    if node.kind == "list":
        assert keys is not None
        return ctx.index.find(t_parent, node.tag, node.keys, tuple(keys))
    if node.kind == "leaf-list":
        want = (c.text or "").strip()
        for cand in t_parent.iterchildren(node.tag):
            if (cand.text or "").strip() == want:
                return cand
        return None
    return t_parent.find(node.tag)


def _has_creating_op(c: Element) -> bool:
    return any(d.get(NC_OP_ATTR) in _CREATING for d in c.iter() if isinstance(d.tag, str))


def _insert(ctx: _Ctx, t_parent: Element, new: Element, node: SNode, path: str, top: str) -> None:
    """Append ``new``, after the last sibling of the same name when there is one."""
    last = next(t_parent.iterchildren(node.tag, reversed=True), None)  # not a list of every sibling
    if last is not None:
        last.addnext(new)
    else:
        t_parent.append(new)
    if node.kind == "list":
        for key in reversed(node.keys):  # keys first, in key order
            kel = new.find(key)
            if kel is not None:
                new.insert(0, kel)
        ctx.index.added(t_parent, node.tag, new)
    else:
        ctx.index.child_changed(t_parent, node.tag)
    ctx.journal.record(lambda: t_parent.remove(new), path, top)
    ctx.journal.new_nodes.append(new)
    ctx.journal.parents.append(t_parent)


def _delete(ctx: _Ctx, t_parent: Element, old: Element, path: str, top: str) -> None:
    index = t_parent.index(old)
    t_parent.remove(old)
    _removed(ctx, t_parent, old)
    ctx.journal.record(lambda: t_parent.insert(index, old), path, top)
    ctx.journal.parents.append(t_parent)


def _replace(ctx: _Ctx, t_parent: Element, old: Element, new: Element, path: str, top: str) -> None:
    t_parent.replace(old, new)
    _removed(ctx, t_parent, old)
    ctx.index.added(t_parent, str(new.tag), new)
    ctx.journal.record(lambda: t_parent.replace(new, old), path, top)
    ctx.journal.new_nodes.append(new)
    ctx.journal.parents.append(t_parent)


def _removed(ctx: _Ctx, t_parent: Element, old: Element) -> None:
    """Tell the index ``old`` left ``t_parent`` (a list entry, or a key leaf of an indexed entry)."""
    tag = str(old.tag)
    ctx.index.removed(t_parent, tag, old)
    ctx.index.child_changed(t_parent, tag)


def _shell(c: Element, node: SNode) -> Element:
    """An empty copy of container/list entry ``c`` holding only its key leaves."""
    shell = etree.Element(c.tag, nsmap=_own_nsmap(c))
    for key in node.keys:
        kel = c.find(key)
        if kel is not None:
            shell.append(clean_copy(kel))
    return shell


def _edit_children(ctx: _Ctx, t_parent: Element, c_parent: Element, s_parent: SNode, inherited: str,
                   path: str, top: str) -> None:
    for c in c_parent:
        if not isinstance(c.tag, str):
            continue
        try:
            _edit_one(ctx, t_parent, c, s_parent, inherited, path, top)
        except SimRpcError as err:
            if not ctx.continue_on_error:
                raise
            ctx.journal.errors.append(err)


def _edit_one(ctx: _Ctx, t_parent: Element, c: Element, s_parent: SNode, inherited: str, path: str,
              top: str) -> None:
    ctag = str(c.tag)
    node = s_parent.children.get(ctag)
    if node is None:
        name = ctag.rpartition("}")[2]
        ns = ctag[1:].partition("}")[0] if ctag.startswith("{") else ""
        if s_parent.kind == "root" and ns and ctx.schema.module_for_namespace(ns) is None:
            ctx.fail(SimRpcError.unknown_namespace(name, ns, path=path or "/"))
        else:
            ctx.fail(SimRpcError.unknown_element(name, path=path or "/"))
        return
    if not node.config:
        ctx.fail(SimRpcError.invalid_value(f"{node.name} is not configuration data (config false)",
                                           path=xpath_of(ctx.schema, node, path, None, ctx.nsmap)))
        return
    op = c.get(NC_OP_ATTR, inherited)
    if op not in OPERATIONS and op != "none":
        ctx.fail(SimRpcError.bad_attribute("operation", node.name, message=f"bad operation {op!r}",
                                           path=xpath_of(ctx.schema, node, path, None, ctx.nsmap)))
        return
    if inherited in ("delete", "remove") and op != inherited:
        ctx.fail(SimRpcError.bad_attribute("operation", node.name,
                                           message=f"{op} inside {inherited} is not allowed"))
        return
    keys = _entry_keys(ctx, c, node, path) if node.kind == "list" else None
    if node.kind == "list" and keys is None:
        return
    existing = _find_existing(ctx, t_parent, c, node, keys)
    here = xpath_of(ctx.schema, node, path, c if node.kind in ("list", "leaf-list") else None, ctx.nsmap)
    top = top or here
    inner = node.kind in ("container", "list")
    if op == "delete" or op == "remove":
        if existing is None:
            if op == "delete":
                ctx.fail(SimRpcError.data_missing(path=here))
            return
        _delete(ctx, t_parent, existing, here, top)
    elif op == "create":
        if existing is not None:
            ctx.fail(SimRpcError.data_exists(path=here))
            return
        _create(ctx, t_parent, c, node, here, top)
    elif op == "replace":
        if inner and _has_nested_ops(c):
            if existing is not None:
                _delete(ctx, t_parent, existing, here, top)
            _create(ctx, t_parent, c, node, here, top, child_op="replace")
        elif existing is None:
            _insert(ctx, t_parent, clean_copy(c), node, here, top)
        elif not _same(existing, c):
            _replace(ctx, t_parent, existing, clean_copy(c), here, top)
    elif op == "merge":
        if existing is None:
            _create(ctx, t_parent, c, node, here, top, child_op="merge")
        elif inner:
            _edit_children(ctx, existing, c, node, "merge", here, top)
        elif node.kind == "leaf" and not _same(existing, c):
            _replace(ctx, t_parent, existing, clean_copy(c), here, top)
    else:  # none
        if existing is None:
            if not inner or not _has_creating_op(c):
                if not (inner and _only_removes(c)):
                    ctx.fail(SimRpcError.data_missing(path=here))
                return
            existing = _shell(c, node)
            _insert(ctx, t_parent, existing, node, here, top)
        if inner:
            _edit_children(ctx, existing, c, node, "none", here, top)


def _create(ctx: _Ctx, t_parent: Element, c: Element, node: SNode, here: str, top: str,
            child_op: str = "merge") -> None:
    """Create ``c`` where nothing exists yet; nested operation attributes still apply."""
    if node.kind in ("container", "list") and _has_nested_ops(c):
        shell = _shell(c, node)
        _insert(ctx, t_parent, shell, node, here, top)
        rest = copy.copy(c)
        for key in node.keys:
            kel = rest.find(key)
            if kel is not None:
                rest.remove(kel)
        _edit_children(ctx, shell, rest, node, child_op, here, top)
    else:
        _insert(ctx, t_parent, clean_copy(c), node, here, top)


def _has_nested_ops(c: Element) -> bool:
    return any(NC_OP_ATTR in d.attrib for d in c.iterdescendants() if isinstance(d.tag, str))


def _only_removes(c: Element) -> bool:
    ops = [d.get(NC_OP_ATTR) for d in c.iterdescendants()
           if isinstance(d.tag, str) and NC_OP_ATTR in d.attrib]
    return bool(ops) and all(op == "remove" for op in ops)


def _same(a: Element, b: Element) -> bool:
    if len(a) or len(b):
        return False
    return (a.text or "").strip() == (b.text or "").strip() and ":" not in (b.text or "")

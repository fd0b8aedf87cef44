"""Validation of a datastore tree against a device schema, with RFC 6241 Appendix A error tags.

A single walk over the lxml tree checks structure (unknown elements, config false data, duplicate
leaves, list keys and their uniqueness), leaf values (yangson's types: ranges, lengths, patterns, enums,
identities, unions) and, unless ``syntax_only``, mandatory nodes, min/max-elements, leafref targets
(require-instance), ``must`` and ``when``. XPath constraints are yangson's parsed expressions printed
with module-name prefixes and evaluated by lxml, which is much faster than yangson's own evaluator.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from lxml import etree
from yangson import schemanode as sn
from yangson.datatype import (
    EmptyType,
    IdentityrefType,
    InstanceIdentifierType,
    LeafrefType,
    UnionType,
)

from .editconfig import xpath_of
from .rpcerror import SimRpcError
from .schema import Schema, SNode
from .xml import Element
from .yangxpath import CompiledXPath, identity_of, truth

__all__ = ["validate_changes", "validate_datastore"]

log = logging.getLogger(__name__)

_MAX_ERRORS = 50


def validate_datastore(schema: Schema, data: Element, *, syntax_only: bool = False,
                       config_only: bool = True) -> list[SimRpcError]:
    """Every problem found in ``data`` (a ``<data>`` root), first ones first; empty when valid."""
    run = _Run(schema, data, syntax_only, config_only)
    with contextlib.suppress(_TooMany):
        run.walk(data, schema.root)
    return run.errors


def validate_changes(schema: Schema, data: Element, new_nodes: list[Element], parents: list[Element], *,
                     syntax_only: bool = False) -> list[SimRpcError]:
    """Validate ``data`` knowing it was valid before ``new_nodes`` were added under ``parents``.

    New subtrees get the full local walk, changed parents their mandatory/min/max checks, and every
    XPath-constrained node of the tree (leafref, must, when) is checked again, found by path in C.
    """
    run = _Run(schema, data, syntax_only, True)
    new_set = set(new_nodes)
    try:
        for el in dict.fromkeys(new_nodes):
            chain = _attached_chain(el, data)
            if chain is None or any(a in new_set for a in chain[1:]):
                continue  # detached again, or inside another new subtree walked anyway
            snode = schema.node([a.tag for a in reversed(chain)])  # type: ignore[misc]
            if snode is None:
                run.add(SimRpcError.unknown_element(etree.QName(el).localname))
                continue
            run.visit(el, snode, 1, {}, xpath=False)
        if not syntax_only:
            for parent in dict.fromkeys(parents):
                chain = _attached_chain(parent, data) if parent is not data else []
                if chain is None:
                    continue
                sparent = schema.node([a.tag for a in reversed(chain)])  # type: ignore[misc]
                if sparent is None:
                    continue
                seen: dict[str, int] = {}
                for c in parent:
                    if isinstance(c.tag, str):
                        seen[c.tag] = seen.get(c.tag, 0) + 1
                run.check_mandatory(parent, sparent, seen)
            for snode, finder in _constraint_finders(schema):
                for el in finder(data):
                    run.check_xpath(el, snode)
                    if snode.kind in ("leaf", "leaf-list"):
                        ytype = snode.ynode.type
                        if isinstance(ytype, LeafrefType) and ytype.require_instance:
                            run.check_leafref(el, snode, ytype, (el.text or "").strip())
    except _TooMany:
        pass
    return run.errors


def _attached_chain(el: Element, data: Element) -> list[Element] | None:
    """``el`` and its ancestors below ``data`` (innermost first), or None when not under ``data``."""
    chain = []
    cur: Element | None = el
    while cur is not None and cur is not data:
        chain.append(cur)
        cur = cur.getparent()
    return chain if cur is data else None


def _constraint_finders(schema: Schema) -> list[tuple[SNode, etree.XPath]]:
    """Per schema node with a leafref, must or when: an XPath finding its instances in a datastore."""
    cached = schema.xpath_cache.get(0)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    out: list[tuple[SNode, etree.XPath]] = []
    stack: list[tuple[SNode, list[str]]] = [(c, [c.tag]) for c in schema.root.children.values()]
    while stack:
        node, tags = stack.pop()
        if not node.config:
            continue
        y = node.ynode
        constrained = bool(getattr(y, "must", None)) or y.when is not None or (
            node.kind in ("leaf", "leaf-list") and isinstance(y.type, LeafrefType)
            and y.type.require_instance)
        if constrained:
            nsmap: dict[str, str] = {}
            steps = []
            for tag in tags:
                ns, _, name = tag[1:].partition("}")
                prefix = nsmap.setdefault(ns, f"n{len(nsmap)}")
                steps.append(f"{prefix}:{name}")
            finder = etree.XPath("/*/" + "/".join(steps), namespaces={v: k for k, v in nsmap.items()})
            out.append((node, finder))
        stack.extend((c, [*tags, c.tag]) for c in node.children.values())
    schema.xpath_cache[0] = out
    return out


class _TooMany(Exception):
    pass


class _Run:
    _cache_lock = threading.Lock()

    def __init__(self, schema: Schema, data: Element, syntax_only: bool, config_only: bool) -> None:
        self.schema = schema
        self.data = data
        self.syntax_only = syntax_only
        self.config_only = config_only
        self.errors: list[SimRpcError] = []
        self.value_ok: dict[tuple[int, str], bool] = {}
        self.abs_values: dict[int, set[str]] = {}
        self.memo: dict[int, bool] = {}
        self.compiled: dict[int, CompiledXPath] = schema.xpath_cache

    def add(self, err: SimRpcError) -> None:
        self.errors.append(err)
        if len(self.errors) >= _MAX_ERRORS:
            raise _TooMany

    def path(self, el: Element) -> tuple[str, dict[str, str]]:
        chain = []
        cur: Element | None = el
        while cur is not None and cur is not self.data:
            chain.append(cur)
            cur = cur.getparent()
        nsmap: dict[str, str] = {}
        path = ""
        snode: SNode | None = self.schema.root
        for node in reversed(chain):
            child = snode.children.get(str(node.tag)) if snode is not None else None
            if child is None:
                return path + "/" + etree.QName(node).localname, nsmap
            path = xpath_of(self.schema, child, path, node if child.kind in ("list", "leaf-list") else None,
                            nsmap)
            snode = child
        return path or "/", nsmap

    def compile(self, expr: Any) -> CompiledXPath | None:
        key = id(expr)
        comp = self.compiled.get(key)
        if comp is None:
            try:
                comp = CompiledXPath(self.schema, expr)
            except (etree.XPathSyntaxError, ValueError, KeyError) as exc:
                log.warning("cannot evaluate YANG XPath %s with lxml: %s", expr, exc)
                return None
            with self._cache_lock:
                self.compiled[key] = comp
        return comp

    # -- the walk -------------------------------------------------------------------------------
    def walk(self, parent: Element, sparent: SNode) -> None:
        seen: dict[str, int] = {}
        entries: dict[str, set[tuple[str, ...]]] = {}
        for el in parent:
            if not isinstance(el.tag, str):
                continue
            snode = sparent.children.get(str(el.tag))
            if snode is None:
                p, nsmap = self.path(parent)
                name = etree.QName(el).localname
                self.add(SimRpcError.unknown_element(name, path=p, path_nsmap=nsmap))
                continue
            count = seen.get(el.tag, 0) + 1
            seen[el.tag] = count
            self.visit(el, snode, count, entries)
        if not self.syntax_only:
            self.check_mandatory(parent, sparent, seen)

    def visit(self, el: Element, snode: SNode, count: int, entries: dict[str, set[tuple[str, ...]]], *,
              xpath: bool = True) -> None:
        """Check one instance ``el`` of ``snode`` (the ``count``-th of its name) and its subtree."""
        if self.config_only and not snode.config:
            p, nsmap = self.path(el)
            self.add(SimRpcError.invalid_value(f"{snode.name} is config false data", path=p,
                                               path_nsmap=nsmap))
            return
        kind = snode.kind
        tag = snode.tag
        if kind == "leaf" or kind == "leaf-list":
            if count > 1 and kind == "leaf":
                self._fail(el, "invalid-value", f"{snode.name} appears more than once", "too-many-elements")
            self.check_leaf(el, snode, xpath)
            if kind == "leaf-list" and snode.config:
                vals = entries.setdefault(tag, set())
                value = ((el.text or "").strip(),)
                if value in vals:
                    self._fail(el, "operation-failed", f"duplicate {snode.name} value {value[0]!r}",
                               "data-not-unique")
                vals.add(value)
        elif kind == "container":
            if count > 1:
                self._fail(el, "invalid-value", f"{snode.name} appears more than once", "too-many-elements")
            self._walk_inner(el, snode, xpath)
        elif kind == "list":
            self.check_entry(el, snode, entries.setdefault(tag, set()))
            self._walk_inner(el, snode, xpath)
        if xpath and not self.syntax_only:
            self.check_xpath(el, snode)

    def _walk_inner(self, el: Element, snode: SNode, xpath: bool) -> None:
        if xpath:
            self.walk(el, snode)
            return
        seen: dict[str, int] = {}
        entries: dict[str, set[tuple[str, ...]]] = {}
        for c in el:
            if not isinstance(c.tag, str):
                continue
            csnode = snode.children.get(c.tag)
            if csnode is None:
                p, nsmap = self.path(el)
                self.add(SimRpcError.unknown_element(etree.QName(c).localname, path=p, path_nsmap=nsmap))
                continue
            count = seen.get(c.tag, 0) + 1
            seen[c.tag] = count
            self.visit(c, csnode, count, entries, xpath=False)
        if not self.syntax_only:
            self.check_mandatory(el, snode, seen)

    def _fail(self, el: Element, tag: str, message: str, app_tag: str | None = None) -> None:
        p, nsmap = self.path(el)
        self.add(SimRpcError("application", tag, message=message, path=p, app_tag=app_tag, path_nsmap=nsmap))

    def check_entry(self, el: Element, snode: SNode, keys_seen: set[tuple[str, ...]]) -> None:
        values = []
        for key in snode.keys:
            kel = el.find(key)
            if kel is None:
                kname = key.rpartition("}")[2]
                parent = el.getparent()
                p, nsmap = self.path(parent if parent is not None else el)
                self.add(SimRpcError.missing_element(kname, path=p, path_nsmap=nsmap,
                                                     message=f"{snode.name} entry without its key {kname}"))
                return
            values.append((kel.text or "").strip())
        tup = tuple(values)
        if tup in keys_seen and snode.keys:
            self._fail(el, "data-exists", f"duplicate {snode.name} entry {', '.join(tup)}")
        keys_seen.add(tup)

    def check_leaf(self, el: Element, snode: SNode, leafref: bool = True) -> None:
        ytype = snode.ynode.type
        text = (el.text or "").strip()
        if isinstance(ytype, IdentityrefType) or _has_identity(ytype):
            ok = self._type_ok(ytype, el, text)
        else:
            key = (id(ytype), text)
            cached = self.value_ok.get(key)
            if cached is None:
                cached = self._type_ok(ytype, el, text)
                self.value_ok[key] = cached
            ok = cached
        if not ok:
            p, nsmap = self.path(el)
            msg = getattr(ytype, "error_message", None) or f"invalid value {text!r} for {snode.name}"
            app = getattr(ytype, "error_tag", None)
            app_tag = app if app and app not in ("invalid-type",) else None
            self.add(SimRpcError.invalid_value(msg, path=p, path_nsmap=nsmap, app_tag=app_tag))
            return
        if leafref and not self.syntax_only and isinstance(ytype, LeafrefType) and ytype.require_instance:
            self.check_leafref(el, snode, ytype, text)

    def _type_ok(self, ytype: Any, el: Element, text: str) -> bool:
        if isinstance(ytype, UnionType):
            return any(self._type_ok(t, el, text) for t in ytype.types)
        if isinstance(ytype, LeafrefType):
            return self._type_ok(ytype.ref_type, el, text)
        if isinstance(ytype, IdentityrefType):
            qn = identity_of(self.schema, el)
            return qn is not None and qn in ytype
        if isinstance(ytype, InstanceIdentifierType):
            return bool(text.startswith("/"))
        if isinstance(ytype, EmptyType):
            return not text
        try:
            value = ytype.parse_value(text)
        except (ValueError, TypeError, ArithmeticError):
            return False
        return value is not None and value in ytype

    def check_leafref(self, el: Element, snode: SNode, ytype: Any, text: str) -> None:
        comp = self.compile(ytype.path)
        if comp is None:
            return
        if comp.absolute:
            values = self.abs_values.get(id(comp))
            if values is None:
                values = {(n.text or "").strip() for n in comp.eval(el) if isinstance(n, etree._Element)}
                self.abs_values[id(comp)] = values
            found = text in values
        else:
            found = any(isinstance(n, etree._Element) and (n.text or "").strip() == text
                        for n in comp.eval(el))
        if not found:
            p, nsmap = self.path(el)
            self.add(SimRpcError.data_missing(path=p, path_nsmap=nsmap, app_tag="instance-required",
                                              message=f"{snode.name} {text!r} refers to a missing instance"))

    def holds(self, comp: CompiledXPath, el: Element) -> bool:
        """Truth of ``comp`` at ``el``; context-free expressions are evaluated once per run."""
        if not comp.context_free:
            return truth(comp.eval(el))
        key = id(comp)
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = truth(comp.eval(el))
        return got

    def check_xpath(self, el: Element, snode: SNode) -> None:
        y = snode.ynode
        if y.when is not None:
            comp = self.compile(y.when)
            if comp is not None and not self.holds(comp, el):
                p, nsmap = self.path(el)
                self.add(SimRpcError.unknown_element(snode.name, path=p, path_nsmap=nsmap))
                return
        for must in getattr(y, "must", None) or []:
            comp = self.compile(must.expression)
            if comp is not None and not self.holds(comp, el):
                p, nsmap = self.path(el)
                msg = must.error_message or f"must condition failed: {comp.text}"
                app = must.error_tag or "must-violation"
                self.add(SimRpcError.operation_failed(msg, path=p, app_tag=app, path_nsmap=nsmap))

    def check_mandatory(self, parent: Element, sparent: SNode, seen: dict[str, int]) -> None:
        active: set[int] = set()
        if sparent.choices:
            active = {id(sparent.children[t].case) for t in seen if t in sparent.children}
        for choice in sparent.choices:
            if getattr(choice, "mandatory", False) and not _choice_present(choice, active):
                p, nsmap = self.path(parent)
                self.add(SimRpcError("application", "data-missing", app_tag="missing-choice", path=p,
                                     path_nsmap=nsmap, info={"missing-choice": choice.name},
                                     message=f"no case of mandatory choice {choice.name} is present"))
        for child in _mandatory_children(sparent):
            if child.case is not None and id(child.case) not in active:
                continue  # inside a case that is not the chosen one
            count = seen.get(child.tag, 0)
            y = child.ynode
            min_el = getattr(y, "min_elements", 0) or 0
            max_el = getattr(y, "max_elements", None)
            if child.kind in ("list", "leaf-list"):
                if count < min_el and self._applies(parent, child):
                    self._fail(parent, "operation-failed",
                               f"too few {child.name} entries ({count} < {min_el})", "too-few-elements")
                if max_el is not None and count > max_el:
                    self._fail(parent, "operation-failed",
                               f"too many {child.name} entries ({count} > {max_el})",
                               "too-many-elements")
            elif count == 0 and self._applies(parent, child):
                p, nsmap = self.path(parent)
                self.add(SimRpcError.missing_element(child.name, path=p, path_nsmap=nsmap,
                                                     message=f"mandatory {child.name} is missing"))

    def _applies(self, parent: Element, child: SNode) -> bool:
        """A missing mandatory node under a false ``when`` is not required."""
        when = child.ynode.when
        if when is None:
            return True
        dummy = etree.SubElement(parent, child.tag)
        try:
            comp = self.compile(when)
            return comp is None or self.holds(comp, dummy)
        finally:
            parent.remove(dummy)


def _has_identity(ytype: Any) -> bool:
    if isinstance(ytype, UnionType):
        return any(_has_identity(t) for t in ytype.types)
    return isinstance(ytype, IdentityrefType)


def _choice_present(choice: Any, active: set[int]) -> bool:
    stack = list(choice.children)
    while stack:
        node = stack.pop()
        if id(node) in active:
            return True
        stack.extend(c for c in getattr(node, "children", []) if isinstance(c, sn.CaseNode | sn.ChoiceNode))
    return False


def _mandatory_children(snode: SNode) -> list[SNode]:
    if snode.mandatory is not None:
        return snode.mandatory
    out = []
    for child in snode.children.values():
        if not child.config or child.tag in snode.keys:  # keys are checked with their entry
            continue
        y = child.ynode
        if child.kind in ("list", "leaf-list"):
            if (getattr(y, "min_elements", 0) or 0) > 0 or getattr(y, "max_elements", None) is not None:
                out.append(child)
        elif getattr(y, "mandatory", False) and (child.kind != "container" or not child.presence):
            out.append(child)
    snode.mandatory = out
    return out

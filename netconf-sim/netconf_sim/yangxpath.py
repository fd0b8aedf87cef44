"""YANG XPath (when, must, leafref paths) evaluated by lxml instead of yangson's evaluator.

yangson parses the expressions; printed back they carry module-name prefixes, which become the
namespace map. ``current()`` becomes the variable ``$current``, absolute paths start below ``<data>``,
and derived-from(-or-self) and re-match are extension functions. Context-free expressions (no
``current()``, no relative path) are detected so callers can evaluate them once per validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lxml import etree
from yangson.xpathast import FilterExpr, FuncCurrent, FuncDerivedFrom, LocationPath, PathExpr, Root, Step

from .schema import Schema
from .xml import Element
from .xpathfilter import reroot

__all__ = ["CompiledXPath", "identity_of", "truth"]

_CURRENT = re.compile(r"current\(\)")


class CompiledXPath:
    """One YANG XPath expression compiled for lxml, with ``current()`` as the variable ``$current``."""

    def __init__(self, schema: Schema, expr: Any) -> None:
        text = _CURRENT.sub("$current", reroot(_xpath_text(expr)))
        self.absolute = "$current" not in text and text.lstrip().startswith("/")
        self.context_free = _context_free(expr, top=True)
        nsmap = {name: m.namespace for name, m in schema.modules.items() if m.namespace}
        self.text = text
        ctx_mod = _derived_from_module(expr)
        fns = {(None, "derived-from"): self._derived(schema, ctx_mod, False),
               (None, "derived-from-or-self"): self._derived(schema, ctx_mod, True),
               (None, "re-match"): _re_match}
        self.xpath = etree.XPath(text, namespaces=nsmap, extensions=fns, smart_strings=False)

    @staticmethod
    def _derived(schema: Schema, ctx: Any, or_self: bool) -> Callable[..., bool]:
        def fn(_context: Any, nodes: Any, identity: str) -> bool:
            if ctx is None:
                return False
            base = ctx.schema_data.translate_pname(identity, ctx.text_mid)
            for node in nodes if isinstance(nodes, list) else []:
                qn = identity_of(schema, node)
                if qn is None:
                    continue
                if (or_self and qn == base) or schema.datamodel.schema_data.is_derived_from(qn, base):
                    return True
            return False
        return fn

    def eval(self, node: Element) -> Any:
        return self.xpath(node, current=node)


_SUBEXPRS = ("left", "right", "expr", "primary", "string", "start", "length", "s1", "s2", "s3")


def _starts_absolute(e: Any) -> bool:
    if isinstance(e, Root):
        return True
    if isinstance(e, LocationPath | PathExpr):
        return _starts_absolute(e.left)
    if isinstance(e, FilterExpr):
        return _starts_absolute(e.primary)
    return False


def _context_free(e: Any, top: bool) -> bool:
    """True when ``e`` gives the same result whatever its context node (no current(), no relative path)."""
    if isinstance(e, FuncCurrent):
        return False
    if isinstance(e, Step):
        return not top and all(_context_free(p, False) for p in e.predicates)
    if isinstance(e, Root):
        return True
    if isinstance(e, LocationPath | PathExpr):
        return _context_free(e.left, top) and _context_free(e.right, False)
    if isinstance(e, FilterExpr):
        return _context_free(e.primary, top) and all(_context_free(p, False) for p in e.predicates)
    subs = [getattr(e, attr, None) for attr in _SUBEXPRS] + list(getattr(e, "parts", None) or [])
    return all(_context_free(sub, top) for sub in subs
               if sub is not None and not isinstance(sub, str | int | float | bool | tuple))


def _xpath_text(expr: Any) -> str:
    return str(expr)


def _derived_from_module(expr: Any) -> Any:
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, FuncDerivedFrom):
            return e.sctx
        for attr in _SUBEXPRS:
            sub = getattr(e, attr, None)
            if sub is not None and not isinstance(sub, str | int | float | bool):
                stack.append(sub)
        for attr in ("predicates", "parts"):
            stack.extend(getattr(e, attr, None) or [])
    return None


def _re_match(_context: Any, value: Any, pattern: str) -> bool:
    text = value if isinstance(value, str) else "".join(
        (v.text or "") if isinstance(v, etree._Element) else str(v) for v in (value or [])[:1])
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return False


def identity_of(schema: Schema, el: Any) -> tuple[str, str] | None:
    if not isinstance(el, etree._Element):
        return None
    text = (el.text or "").strip()
    prefix, sep, name = text.partition(":")
    if not sep:
        ns = etree.QName(el).namespace
        module = schema.module_for_namespace(ns) if ns else None
        return (text, module) if module else None
    ns = el.nsmap.get(prefix)
    module = schema.module_for_namespace(ns) if ns else None
    return (name, module) if module else None


def truth(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value)
    return bool(value)

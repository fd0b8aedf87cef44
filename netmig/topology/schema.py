"""The compiled YANG module netmig-topology (yangson) and the checks that need whole instance data.

Leafref targets and the module's ``must`` constraints are evaluated leaf by leaf so that every
violation is reported, not only yangson's first; rules YANG cannot state (overlapping partner
rules) follow; a syntax-scope yangson validation closes as a safety net. Problems come back as
``(path, message)``; a leaf-list entry's path ends in ``#index`` for the caller's line lookup.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import sysconfig
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yangson import DataModel
from yangson.datatype import LeafrefType, LinkType, UnionType
from yangson.enumerations import ContentType, ValidationScope
from yangson.exceptions import SemanticError, ValidationError, YangsonException
from yangson.instance import ArrayEntry
from yangson.instvalue import ArrayValue
from yangson.nodeset import NodeSet
from yangson.schemanode import LeafListNode, LeafNode, ListNode

from netmig.errors import Problem, TopologyError

__all__ = [
    "MODULE",
    "TOP",
    "data_model",
    "join",
    "keyname",
    "partner_overlaps",
    "semantic_problems",
    "yang_dir",
]

MODULE = "netmig-topology"
TOP = f"{MODULE}:topology"
_IMPORTS = ("ietf-inet-types", "ietf-yang-types")


def yang_dir() -> Path:
    """The project's ``yang/`` directory (source checkout), else the installed ``share/netmig/yang``."""
    source = Path(__file__).resolve().parents[2] / "yang"
    if (source / "netmig-topology.yang").is_file():
        return source
    return Path(sysconfig.get_path("data")) / "share" / "netmig" / "yang"


def _ietf_dir() -> Path:
    """Directory holding ietf-inet-types.yang among pyang's installed modules."""
    import pyang

    roots = [Path(sysconfig.get_path("data")), Path(sys.prefix), *Path(pyang.__file__).resolve().parents]
    for root in roots:
        candidate = root / "share" / "yang" / "modules" / "ietf"
        if (candidate / "ietf-inet-types.yang").is_file():
            return candidate
    raise TopologyError([Problem(MODULE, None, "", "ietf-inet-types.yang not found (is pyang installed?)")])


def _revision(path: Path) -> str:
    found = re.search(
        r"^\s*revision\s+\"?(\d{4}-\d{2}-\d{2})", path.read_text(encoding="utf-8"), re.MULTILINE
    )
    return found.group(1) if found else ""


@functools.cache
def data_model() -> Any:
    """yangson's compiled netmig-topology (compiled once per process; pure function of the files)."""
    ietf = _ietf_dir()
    modules = [(MODULE, yang_dir() / f"{MODULE}.yang", "implement")]
    modules += [(name, ietf / f"{name}.yang", "import") for name in _IMPORTS]
    library = {
        "ietf-yang-library:modules-state": {
            "module-set-id": MODULE,
            "module": [
                {
                    "name": name,
                    "revision": _revision(path),
                    "namespace": _namespace(path),
                    "conformance-type": conformance,
                }
                for name, path, conformance in modules
            ],
        }
    }
    return DataModel(json.dumps(library), [str(yang_dir()), str(ietf)])


def _namespace(path: Path) -> str:
    found = re.search(r'^\s*namespace\s+"([^"]+)"', path.read_text(encoding="utf-8"), re.MULTILINE)
    return found.group(1) if found else ""


def semantic_problems(raw: dict[str, Any], *, broken: set[str] | None = None) -> list[tuple[str, str]]:
    """References, then the module's must constraints, leaf by leaf; partner overlaps; a syntax validation.

    ``broken`` names the top-level lists that already had structural problems (None: there were none).
    After structural problems only references into sound lists are checked, and no must constraints:
    they would mostly repeat a problem already reported; nor the final validation.

    Linear in the document: leafref targets are collected once per target path and checked by set
    membership, and a ``must`` result is cached per distinct context (the leaf's value and the values
    of the relative paths the expression reads). yangson's own semantic validation evaluates every
    reference and ``must`` from the leaf with a walk to the root that copies each big list on the way
    (quadratic), so the closing safety net validates syntax only; the semantic rules it would check
    (leafrefs, ``must`` on leaves; the module has none on containers or lists) are the pass above.
    """
    structural = broken is not None
    broken = broken or set()
    found: list[tuple[str, str]] = []
    try:
        root = data_model().from_raw(raw)
        index = _Index(root[TOP])
        for instance, path in _terminals(root[TOP], ""):
            message = _reference_problem(instance, broken, index)
            if message is None and not structural:
                message = _must_problem(instance, index)
            if message is not None:
                found.append((path, message))
        found += partner_overlaps(raw[TOP])
        if not found and not structural:
            root.validate(scope=ValidationScope.syntax, ctype=ContentType.config)
    except ValidationError as exc:
        found.append((_route(exc.instance), f"{exc.tag}{': ' + exc.message if exc.message else ''}"))
    except YangsonException as exc:
        if not found and not structural:  # otherwise a consequence of a problem already reported
            found.append(("", f"invalid topology: {exc}"))
    return found


_CLIMB = re.compile(r"^(current\(\)/)?(\.\./)*\.\.(/[\w.:-]+)*$")
_POSITIONAL = ("..", "ancestor", "sibling", "preceding", "following", "position(", "last(", "parent::")


def _dependencies(expr: Any) -> list[Any] | None:
    """The relative paths a leaf's ``must`` expression reads (``../x``, ``current()/../x``), or None
    when its value may depend on more than them and the leaf's own value (then it is not cached)."""
    deps: list[Any] = []

    def visit(node: Any, in_predicate: bool) -> None:
        if _CLIMB.match(str(node)) and (not in_predicate or str(node).startswith("current()")):
            deps.append(node)
            return
        for name, value in vars(node).items():
            for item in value if isinstance(value, list) else [value]:
                if hasattr(item, "_eval"):
                    visit(item, in_predicate or name == "predicates")

    visit(expr, False)
    rest = str(expr)
    for dep in deps:
        rest = rest.replace(str(dep), "")
    return None if any(word in rest for word in _POSITIONAL) else deps


_DEPENDENCIES: dict[int, tuple[Any, list[Any] | None]] = {}
_PORT_RULE = "the port is not one of the bridge's ports"  # netmig-topology hosts/port must


class _Index:
    """Per-document lookups: leafref target values per target path, must results per context."""

    def __init__(self, top: Any) -> None:
        self.top = top
        self.targets: dict[int, set[str] | None] = {}
        self.musts: dict[tuple[Any, ...], bool] = {}
        self.ports: dict[str, set[str]] | None = None  # bridge -> its listed ports (hosts/port rule)

    def exists(self, instance: Any, dtype: Any) -> bool:
        """Whether the leafref ``instance`` (of type ``dtype``) has a target, as yangson's ``_deref``."""
        path = str(dtype.path) if isinstance(dtype, LeafrefType) else ""
        if not path.startswith("/") or "current()" in path or ".." in path:
            try:
                return bool(instance._deref(dtype))
            except YangsonException:
                return False
        if id(dtype) not in self.targets:
            try:
                nodes = dtype.path.evaluate(self.top)
                self.targets[id(dtype)] = {str(n) for n in nodes} if isinstance(nodes, NodeSet) else None
            except YangsonException:
                self.targets[id(dtype)] = None
        targets = self.targets[id(dtype)]
        return targets is not None and str(instance) in targets

    def _port_rule(self, instance: Any) -> bool:
        """hosts/port: the port is one of its bridge's ports, when the bridge lists ports. The XPath
        reads the devices list and the bridge's ports for every host (hosts x ports); one set per
        bridge instead."""
        if self.ports is None:
            self.ports = {}
            for device in self.top["devices"].value if "devices" in self.top.value else ():
                listed = device.get("ports")
                if listed:
                    self.ports.setdefault(str(device["name"]), set()).update(str(p) for p in listed)
                else:
                    self.ports.setdefault(str(device["name"]), set())
        bridge = instance.up()["bridge"].value if "bridge" in instance.up().value else None
        listed = self.ports.get(str(bridge), set())
        return not listed or str(instance.value) in listed

    def holds(self, must: Any, instance: Any) -> bool:
        """Whether ``instance`` satisfies ``must`` (evaluated by yangson once per distinct context)."""
        if must.error_message == _PORT_RULE:
            return self._port_rule(instance)
        entry = _DEPENDENCIES.get(id(must))
        if entry is None or entry[0] is not must:
            entry = _DEPENDENCIES[id(must)] = (must, _dependencies(must.expression))
        deps = entry[1]
        if deps is None:
            return bool(must.expression.evaluate(instance))
        values = [dep.evaluate(instance) for dep in deps]
        # the expression reads only absolute paths (the same for every leaf), the leaf's value and deps:
        # leaves of one schema node with equal values and deps share the result
        key = (id(must), repr(instance.value), *(
            tuple(str(n) for n in v) if isinstance(v, NodeSet) else (type(v).__name__, str(v)) for v in values
        ))
        if key not in self.musts:
            self.musts[key] = bool(must.expression.evaluate(instance))
        return self.musts[key]


def _reference_problem(instance: Any, broken: set[str], index: _Index) -> str | None:
    """A leafref whose target does not exist (unless the target list itself had problems)."""
    dtype = instance.schema_node.type
    if not isinstance(dtype, LeafrefType) or not dtype.require_instance:
        return None
    steps = [step.split(":")[-1] for step in str(dtype.path).split("/")]
    target = steps[-2] if len(steps) >= 2 else "targets"
    if target in broken:
        return None
    found = index.exists(instance, dtype)
    return None if found else f"{_text(instance.value, instance.schema_node)!r} is not one of the {target}"


def _must_problem(instance: Any, index: _Index) -> str | None:
    """The first of the leaf's must constraints (and type rules) it violates, with its error-message.

    In yangson's order (``DataNode._validate`` then ``TerminalNode._validate``): the must expressions,
    the value's type, then a leafref's target."""
    schema = instance.schema_node
    dtype = schema.type
    try:
        if isinstance(dtype, UnionType):  # yangson tries each member type: no shortcut
            schema._validate(instance, ValidationScope.semantics, ContentType.config)
            return None
        for must in schema.must:
            if not index.holds(must, instance):
                raise SemanticError(instance, must.error_tag, must.error_message)
        schema._validate(instance, ValidationScope.syntax, ContentType.config)
        if isinstance(dtype, LinkType) and dtype.require_instance and not index.exists(instance, dtype):
            raise SemanticError(instance, "instance-required")
    except ValidationError as exc:
        return f"{exc.message or exc.tag} (got {_text(instance.value, schema)!r})"
    return None


def _terminals(instance: Any, path: str) -> Iterator[tuple[Any, str]]:
    """Every leaf and leaf-list entry below ``instance`` with its display path (leaf-list: ``path#i``)."""
    schema = instance.schema_node
    if isinstance(schema, LeafNode):
        yield instance, path
    elif isinstance(schema, LeafListNode):
        for index, entry in enumerate(instance):
            yield entry, f"{path}#{index}"
    elif isinstance(schema, ListNode) and isinstance(instance.value, ArrayValue):
        key = keyname(schema)
        for entry in _entries(instance):
            yield from _terminals(entry, f"{path}[{_text(entry.value[key], entry[key].schema_node)}]")
    else:
        for name in instance.value:
            yield from _terminals(instance[name], join(path, name))


def _entries(instance: Any) -> Iterator[Any]:
    """The entries of a list instance in order, in linear time.

    yangson's own iteration (``ArrayEntry.next``) copies the entries before and after each one: quadratic
    over a list of 10,000 hosts. Here one pair of deques is shifted along, so an entry is valid (its
    ``up()``, XPath from it) only until the next one is produced: ``_terminals`` consumers finish with an
    entry's leaves first.
    """
    values = instance.value
    before: deque[Any] = deque()
    after: deque[Any] = deque(values[1:])
    for index, value in enumerate(values):
        if index:
            before.appendleft(values[index - 1])
            after.popleft()
        yield ArrayEntry(index, before, after, value, instance, instance.schema_node, values.timestamp)


def join(path: str, name: str) -> str:
    """``path/name``, or ``name`` at the top."""
    return f"{path}/{name}" if path else name


def keyname(schema: Any) -> str:
    """Name of a list's (first) key leaf."""
    return str(schema.keys[0][0])


def _text(value: Any, schema: Any) -> str:
    return str(schema.type.canonical_string(value))


def _route(instance: Any) -> str:
    """Display path of a yangson instance node, e.g. ``hosts[host-a1]/bridge``."""
    segments: list[tuple[bool, str]] = []
    node = instance
    while node is not None and node.parinst is not None:
        if not isinstance(node.key, int):
            segments.append((False, str(node.key).split(":")[-1]))
        elif isinstance(node.schema_node, ListNode):
            key = keyname(node.schema_node)
            segments.append((True, _text(node.value[key], node[key].schema_node)))
        node = node.parinst
    out = ""
    for is_key, text in reversed(segments):
        out = f"{out}[{text}]" if is_key else join(out, text)
    return out.removeprefix("topology").lstrip("/")


def partner_overlaps(topology: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) for each (source device or role, kind) a second partner rule covers again."""
    found: list[tuple[str, str]] = []
    for source in topology.get("mapping", {}).get("from", []):
        for destination in source.get("to", []):
            base = f"mapping/from[{source['site']}]/to[{destination['site']}]/partners"
            owner: dict[tuple[str, str, str], str] = {}
            for rule in destination.get("partners", []):
                for leaf in ("from-devices", "from-roles"):
                    for index, name in enumerate(rule.get(leaf, [])):
                        for kind in rule.get("kinds", []):
                            first = owner.setdefault((leaf, name, kind), rule["name"])
                            if first != rule["name"]:
                                path = f"{base}[{rule['name']}]/{leaf}#{index}"
                                found.append((path, f"{name!r} already moves {kind} by rule {first!r}"))
    return found

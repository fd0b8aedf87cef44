"""Read a topology file, validate it against the YANG module netmig-topology, build a Topology.

The YAML document is instance data of the module's ``topology`` container: keys are node names, a
list is a mapping keyed by its key leaf, and an entry with a single non-key node may be written as
``key: value``. Validation is driven by the module as yangson compiles it:

1. structure and types: a walk of the YAML nodes along the schema (unknown or duplicate keys,
   missing mandatory nodes, choices, value types, ranges, patterns, enumerations);
2. references and ``must`` constraints: every leaf is checked by yangson (leafref targets, the
   module's ``must`` expressions with their error messages);
3. rules YANG cannot state (overlapping partner rules);
4. a final full yangson validation as a safety net.

Every problem carries ``FILE:LINE`` and a path such as ``hosts[host-a1]/bridge``; all are collected,
then :class:`~netmig.errors.TopologyError` is raised once.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yangson import DataModel
from yangson.datatype import BooleanType, EnumerationType, LeafrefType, NumericType, StringType
from yangson.enumerations import ContentType, ValidationScope
from yangson.exceptions import ValidationError, YangsonException
from yangson.instvalue import ArrayValue
from yangson.schemanode import ChoiceNode, InternalNode, LeafListNode, LeafNode, ListNode

from netmig.errors import Problem, TopologyError
from netmig.topology.model import Topology, build_topology

__all__ = ["MODULE", "load_topology", "parse_topology", "partner_overlaps", "yang_dir"]

log = logging.getLogger(__name__)

MODULE = "netmig-topology"
_TOP = f"{MODULE}:topology"
_IMPORTS = ("ietf-inet-types", "ietf-yang-types")
_MAX_PROBLEMS = 200
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_TRUE = {"yes", "true", "on", "y"}
_INVALID = object()
_REJECTED = {"password"}  # reported on their own; no second problem about the missing credentials


def yang_dir() -> Path:
    """The project's ``yang/`` directory holding netmig-topology.yang."""
    return Path(__file__).resolve().parents[2] / "yang"


def _ietf_dir() -> Path:
    """Directory holding ietf-inet-types.yang: pyang's installed modules, else libyang's."""
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
def _data_model() -> Any:
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


def load_topology(path: str | Path) -> Topology:
    """Read, validate and build the topology in ``path``.

    Raises:
        TopologyError: every problem found, each with file:line and path.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError([Problem(file, None, "", f"cannot read the topology: {exc}")]) from exc
    return parse_topology(text, file=file, base_dir=Path(path).resolve().parent)


def parse_topology(text: str, *, file: str = "<topology>", base_dir: Path | None = None) -> Topology:
    """Validate and build a topology from YAML ``text``; relative paths are taken from ``base_dir``."""
    root = _compose(text, file)
    walker = _Walker(file)
    schema = _data_model().get_schema_node(f"/{_TOP}")
    body = walker.container(schema, root, "")
    if body is not _INVALID:
        _semantics({_TOP: body}, walker)
    if walker.problems:
        raise TopologyError(walker.problems[:_MAX_PROBLEMS])
    try:
        instance = _data_model().from_raw({_TOP: body}).add_defaults()
        raw = instance.raw_value()[_TOP]
    except YangsonException as exc:  # not expected after the checks above: report, never a traceback
        raise TopologyError([Problem(file, None, "", f"invalid topology: {exc}")]) from exc
    log.debug(
        "topology %s: %d devices, %d hosts", file, len(raw.get("devices", ())), len(raw.get("hosts", ()))
    )
    return build_topology(raw, source=file, base_dir=base_dir or Path.cwd())


def _compose(text: str, file: str) -> yaml.Node:
    """YAML text to one node tree with line numbers; malformed YAML becomes one Problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise TopologyError(
            [Problem(file, line, "", f"malformed YAML: {exc.problem or exc.context}")]
        ) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise TopologyError([Problem(file, line, "", f"malformed YAML: {exc.reason}")]) from exc
    except RecursionError as exc:
        raise TopologyError([Problem(file, None, "", "malformed YAML: nested too deeply")]) from exc
    except (yaml.YAMLError, ValueError) as exc:
        raise TopologyError([Problem(file, None, "", f"malformed YAML: {type(exc).__name__}")]) from exc
    if node is None:
        raise TopologyError([Problem(file, 1, "", "the topology file is empty")])
    return node


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "null" if node.tag == _NULL else f"the value {node.value!r}"


class _Walker:
    """Walks YAML nodes along the schema: collects problems, builds raw JSON and a path -> line map."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def problem(self, line: int | None, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, path, message))

    def container(self, schema: Any, node: yaml.Node, path: str, key: tuple[Any, str] | None = None) -> Any:
        """A container or list entry body: a mapping (or null for an empty one)."""
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            pairs: list[tuple[yaml.Node, yaml.Node]] = []
        elif isinstance(node, yaml.MappingNode):
            pairs = node.value
        else:
            self.problem(_line(node), path, f"expected a mapping of {_names(schema)}, got {_kind(node)}")
            return _INVALID
        children = {child.name: child for child in schema.data_children()}
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in pairs:
            name = self._key(key_node, path, seen, children, schema)
            if name is None:
                continue
            child, child_path = children[name], _join(path, name)
            if key is not None and name == key[1]:
                value = self.leaf(child, value_node, child_path)
                if value is not _INVALID and value != key[0]:
                    self.problem(
                        _line(value_node), child_path, f"{value_node.value!r} differs from the entry's key"
                    )
                continue
            if isinstance(child, ListNode):
                value = self.list(child, value_node, child_path)
            elif isinstance(child, LeafListNode):
                value = self.leaf_list(child, value_node, child_path)
            elif isinstance(child, LeafNode):
                value = self.leaf(child, value_node, child_path)
            else:
                value = self.container(child, value_node, child_path)
            if value is not _INVALID and value != []:
                out[name] = value
        if key is not None:
            out[key[1]] = key[0]
        self._choices(schema, out, seen, path)
        for child in schema.data_children():
            missing = (isinstance(child, LeafNode) and child.mandatory) or (
                isinstance(child, LeafListNode) and child.min_elements > 0
            )
            if missing and child.name not in out and child.name not in seen:
                self.problem(_line(node), path or "topology", f"missing mandatory {child.name!r}")
        return out

    def _key(
        self, key_node: yaml.Node, path: str, seen: dict[str, int], children: dict[str, Any], schema: Any
    ) -> str | None:
        if not isinstance(key_node, yaml.ScalarNode):
            self.problem(_line(key_node), path, f"a key must be a plain name, got {_kind(key_node)}")
            return None
        name = str(key_node.value)
        if name in seen:
            self.problem(_line(key_node), _join(path, name), f"duplicate key (first at line {seen[name]})")
            return None
        seen[name] = _line(key_node)
        if name in children:
            return name
        if name == "password" and "password-env" in children:
            message = "inline passwords are not allowed: put the password in an environment variable and "
            message += "name it with 'password-env: VAR'"
        else:
            message = f"unknown key {name!r}; expected one of {_names(schema)}"
        self.problem(_line(key_node), _join(path, name), message)
        return None

    def _choices(self, schema: Any, out: dict[str, Any], seen: dict[str, int], path: str) -> None:
        for choice in _choice_nodes(schema):
            cases = {case.name: {n.name for n in case.data_children()} for case in choice.children}
            present = [case for case, names in cases.items() if names & out.keys()]
            options = ", ".join(sorted(n for names in cases.values() for n in names))
            if len(present) > 1:
                given = ", ".join(sorted(n for c in present for n in cases[c] if n in out))
                self.problem(
                    self.lines.get(path), path or "topology", f"give only one of {options} (got {given})"
                )
            elif not present and choice.mandatory and not (seen.keys() & _REJECTED):
                self.problem(self.lines.get(path), path or "topology", f"one of {options} is required")

    def list(self, schema: Any, node: yaml.Node, path: str) -> Any:
        """A list written as a mapping from key to entry body (or to the single non-key value)."""
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, yaml.MappingNode):
            self.problem(
                _line(node), path, f"expected a mapping keyed by {_keyname(schema)}, got {_kind(node)}"
            )
            return _INVALID
        key_name = _keyname(schema)
        key_schema = schema.get_child(key_name, schema.ns)
        others = [c for c in schema.data_children() if c.name != key_name]
        entries: list[Any] = []
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                self.problem(
                    _line(key_node), path, f"a {key_name} must be a single value, got {_kind(key_node)}"
                )
                continue
            text = str(key_node.value)
            entry_path = f"{path}[{text}]"
            if text in seen:
                self.problem(
                    _line(key_node), entry_path, f"duplicate {key_name} (first at line {seen[text]})"
                )
                continue
            seen[text] = _line(key_node)
            self.lines[entry_path] = _line(key_node)
            key_value = self.leaf(key_schema, key_node, _join(entry_path, key_name))
            shorthand = len(others) == 1 and not isinstance(others[0], InternalNode)
            if shorthand and not isinstance(value_node, yaml.MappingNode) and value_node.tag != _NULL:
                wrapped = yaml.MappingNode(
                    "tag:yaml.org,2002:map",
                    [
                        (
                            yaml.ScalarNode("tag:yaml.org,2002:str", others[0].name, value_node.start_mark),
                            value_node,
                        )
                    ],
                    value_node.start_mark,
                )
                value_node = wrapped
            body = self.container(schema, value_node, entry_path, key=(key_value, key_name))
            if body is not _INVALID and key_value is not _INVALID:
                entries.append(body)
        return entries

    def leaf_list(self, schema: Any, node: yaml.Node, path: str) -> Any:
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(_line(node), path, f"expected a list, got {_kind(node)}")
            return _INVALID
        values: list[Any] = []
        first: dict[Any, int] = {}
        for index, item in enumerate(node.value):
            value = self.leaf(schema, item, path)
            self.lines[f"{path}#{index}"] = _line(item)
            if value is _INVALID:
                continue
            if value in first:
                self.problem(_line(item), path, f"{item.value!r} is repeated (first at line {first[value]})")
                continue
            first[value] = _line(item)
            values.append(value)
        return values

    def leaf(self, schema: Any, node: yaml.Node, path: str) -> Any:
        """One scalar checked against the leaf's YANG type; returns its RFC 7951 JSON value."""
        self.lines.setdefault(path, _line(node))
        if not isinstance(node, yaml.ScalarNode):
            self.problem(_line(node), path, f"expected a single value, got {_kind(node)}")
            return _INVALID
        if node.tag == _NULL:
            self.problem(_line(node), path, "a value is required")
            return _INVALID
        dtype = schema.type
        text = str(node.value)
        if isinstance(dtype, BooleanType) and node.tag == _BOOL:
            text = "true" if text.lower() in _TRUE else "false"
        try:
            value = dtype.parse_value(text)
            ok = value is not None and value in dtype
        except (TypeError, ValueError, ArithmeticError):
            value, ok = None, False
        if not ok:
            self.problem(_line(node), path, _type_problem(dtype, text, value))
            return _INVALID
        return dtype.to_raw(value)


def _type_problem(dtype: Any, text: str, value: Any) -> str:
    base = dtype.ref_type if isinstance(dtype, LeafrefType) else dtype
    if isinstance(base, EnumerationType):
        return f"{text!r} is not one of {', '.join(base.enum)}"
    if isinstance(base, BooleanType):
        return f"{text!r} is not true or false"
    if isinstance(base, NumericType):
        if value is None:
            return f"{text!r} is not a number"
        return f"{text} is out of range {base.range or 'of ' + base.yang_type()}"
    name = dtype.name or base.name
    if name:
        return f"{text!r} is not a valid {name}"
    if isinstance(base, StringType) and base.length is not None and len(text) not in base.length:
        return f"{text!r} must be {base.length} characters long"
    patterns = " and ".join(repr(p.pattern) for p in getattr(base, "patterns", ()))
    return (
        f"{text!r} does not match {patterns}" if patterns else f"{text!r} is not a valid {base.yang_type()}"
    )


def _names(schema: Any) -> str:
    return ", ".join(child.name for child in schema.data_children())


def _keyname(schema: Any) -> str:
    return str(schema.keys[0][0])


def _choice_nodes(schema: Any) -> Iterator[Any]:
    for child in schema.children:
        if isinstance(child, ChoiceNode):
            yield child


def _semantics(raw: dict[str, Any], walker: _Walker) -> None:
    """References, then the module's must constraints, leaf by leaf; partner overlaps; a full validation.

    After structural problems, only references into lists that had none are checked, and no must
    constraints: they would mostly repeat a problem already reported.
    """
    structural = bool(walker.problems)
    broken = {problem.path.split("[")[0].split("/")[0] for problem in walker.problems}
    try:
        root = _data_model().from_raw(raw)
        for instance, path in _terminals(root[_TOP], ""):
            message = _reference_problem(instance, broken)
            if message is None and not structural:
                message = _must_problem(instance)
            if message is not None:
                walker.problem(walker.lines.get(path), path.split("#")[0], message)
        for path, message in partner_overlaps(raw[_TOP]):
            walker.problem(walker.lines.get(path), path.split("#")[0], message)
        if not walker.problems:
            root.validate(ctype=ContentType.config)
    except ValidationError as exc:
        path = _route(exc.instance)
        walker.problem(walker.lines.get(path), path, f"{exc.tag}{': ' + exc.message if exc.message else ''}")
    except YangsonException as exc:
        if not walker.problems:  # otherwise a consequence of a problem already reported
            walker.problem(None, "", f"invalid topology: {exc}")


def _reference_problem(instance: Any, broken: set[str]) -> str | None:
    """A leafref whose target does not exist (unless the target list itself had problems)."""
    dtype = instance.schema_node.type
    if not isinstance(dtype, LeafrefType) or not dtype.require_instance:
        return None
    steps = [step.split(":")[-1] for step in str(dtype.path).split("/")]
    target = steps[-2] if len(steps) >= 2 else "targets"
    if target in broken:
        return None
    try:
        found = instance._deref(dtype)
    except YangsonException:
        found = []
    return None if found else f"{_text(instance.value, instance.schema_node)!r} is not one of the {target}"


def _must_problem(instance: Any) -> str | None:
    """The first of the leaf's must constraints (and type rules) it violates, with its error-message."""
    schema = instance.schema_node
    try:
        schema._validate(instance, ValidationScope.semantics, ContentType.config)
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
        key = _keyname(schema)
        for entry in instance:
            yield from _terminals(entry, f"{path}[{_text(entry.value[key], entry[key].schema_node)}]")
    else:
        for name in instance.value:
            yield from _terminals(instance[name], _join(path, name))


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
            key = _keyname(node.schema_node)
            segments.append((True, _text(node.value[key], node[key].schema_node)))
        node = node.parinst
    out = ""
    for is_key, text in reversed(segments):
        out = f"{out}[{text}]" if is_key else _join(out, text)
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

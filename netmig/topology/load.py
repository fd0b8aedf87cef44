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

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yangson.datatype import BooleanType, EnumerationType, LeafrefType, NumericType, StringType
from yangson.exceptions import YangsonException
from yangson.schemanode import ChoiceNode, InternalNode, LeafListNode, LeafNode, ListNode

from netmig.errors import Problem, TopologyError
from netmig.topology.model import Topology, build_topology
from netmig.topology.schema import TOP, data_model, join, keyname, semantic_problems

__all__ = ["load_topology", "parse_topology"]

log = logging.getLogger(__name__)

_MAX_PROBLEMS = 200
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_TRUE = {"yes", "true", "on", "y"}
_INVALID = object()
_REJECTED = {"password"}  # reported on their own; no second problem about the missing credentials


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
    schema = data_model().get_schema_node(f"/{TOP}")
    body = walker.container(schema, root, "")
    if body is not _INVALID:
        broken = {problem.path.split("[")[0].split("/")[0] for problem in walker.problems}
        for path, message in semantic_problems({TOP: body}, broken=broken if walker.problems else None):
            walker.problem(walker.lines.get(path), path.split("#")[0], message)
    if walker.problems:
        raise TopologyError(walker.problems[:_MAX_PROBLEMS])
    try:
        instance = data_model().from_raw({TOP: body}).add_defaults()
        raw = instance.raw_value()[TOP]
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
            child, child_path = children[name], join(path, name)
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
            self.problem(_line(key_node), join(path, name), f"duplicate key (first at line {seen[name]})")
            return None
        seen[name] = _line(key_node)
        if name in children:
            return name
        if name == "password" and "password-env" in children:
            message = "inline passwords are not allowed: put the password in an environment variable and "
            message += "name it with 'password-env: VAR'"
        else:
            message = f"unknown key {name!r}; expected one of {_names(schema)}"
        self.problem(_line(key_node), join(path, name), message)
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
                _line(node), path, f"expected a mapping keyed by {keyname(schema)}, got {_kind(node)}"
            )
            return _INVALID
        key_name = keyname(schema)
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
            key_value = self.leaf(key_schema, key_node, join(entry_path, key_name))
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


def _choice_nodes(schema: Any) -> Iterator[Any]:
    for child in schema.children:
        if isinstance(child, ChoiceNode):
            yield child

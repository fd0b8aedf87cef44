"""The compiled YANG module netmig-topology (yangson) and the checks that need whole instance data.

Leafref targets and the module's ``must`` constraints are evaluated leaf by leaf so that every
violation is reported, not only yangson's first; rules YANG cannot state (overlapping partner
rules) follow; a full yangson validation closes as a safety net. Problems come back as
``(path, message)``; a leaf-list entry's path ends in ``#index`` for the caller's line lookup.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yangson import DataModel
from yangson.datatype import LeafrefType
from yangson.enumerations import ContentType, ValidationScope
from yangson.exceptions import ValidationError, YangsonException
from yangson.instvalue import ArrayValue
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
    """References, then the module's must constraints, leaf by leaf; partner overlaps; a full validation.

    ``broken`` names the top-level lists that already had structural problems (None: there were none).
    After structural problems only references into sound lists are checked, and no must constraints:
    they would mostly repeat a problem already reported; nor the final validation.
    """
    structural = broken is not None
    broken = broken or set()
    found: list[tuple[str, str]] = []
    try:
        root = data_model().from_raw(raw)
        for instance, path in _terminals(root[TOP], ""):
            message = _reference_problem(instance, broken)
            if message is None and not structural:
                message = _must_problem(instance)
            if message is not None:
                found.append((path, message))
        found += partner_overlaps(raw[TOP])
        if not found and not structural:
            root.validate(ctype=ContentType.config)
    except ValidationError as exc:
        found.append((_route(exc.instance), f"{exc.tag}{': ' + exc.message if exc.message else ''}"))
    except YangsonException as exc:
        if not found and not structural:  # otherwise a consequence of a problem already reported
            found.append(("", f"invalid topology: {exc}"))
    return found


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
        key = keyname(schema)
        for entry in instance:
            yield from _terminals(entry, f"{path}[{_text(entry.value[key], entry[key].schema_node)}]")
    else:
        for name in instance.value:
            yield from _terminals(instance[name], join(path, name))


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

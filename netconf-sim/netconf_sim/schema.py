"""A device's YANG schema: modules and features loaded through yangson, indexed for XML datastores.

``Schema.load`` resolves the import closure of the requested modules on a search path (our ``yang/``
directory, then the IETF and IANA modules pyang installs), builds the RFC 7895 library yangson wants,
and indexes the schema tree by Clark-notation tags. Build each distinct profile once and share it
between devices: ``SchemaCache`` does that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from yangson import DataModel
from yangson import schemanode as sn
from yangson.exceptions import ModuleRevisionMismatch
from yangson.statement import ModuleParser

from .xml import Element, qname

__all__ = ["ModuleInfo", "SNode", "Schema", "SchemaCache", "SchemaLoadError", "default_search_path"]

log = logging.getLogger(__name__)

YANGLIB_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
MODULE_CAP_BASE = "urn:ietf:params:netconf:capability"


class SchemaLoadError(RuntimeError):
    """A module is missing, unparsable or rejected by yangson."""


def _pyang_module_roots() -> list[Path]:
    roots = [Path(sys.prefix), Path(sys.base_prefix)]
    try:
        import pyang

        roots.append(Path(pyang.__file__).resolve().parents[4])  # <prefix>/lib/pythonX.Y/site-packages/pyang
        roots.append(Path(pyang.__file__).resolve().parents[3])
    except (ImportError, IndexError):  # pragma: no cover - pyang is a dependency
        pass
    roots += [Path("/usr/local"), Path("/usr")]
    return [r / "share" / "yang" / "modules" for r in roots]


def default_search_path(yang_dir: Path | None = None) -> list[Path]:
    """Our ``yang/`` directory (or ``yang_dir``), then pyang's installed IETF and IANA module dirs."""
    ours = yang_dir if yang_dir is not None else Path(__file__).resolve().parents[2] / "yang"
    if yang_dir is None and not ours.is_dir():  # installed (not a source checkout): the data-files copy
        ours = Path(sys.prefix) / "share" / "netmig" / "yang"
    dirs: list[Path] = [ours] if ours.is_dir() else []
    for root in _pyang_module_roots():
        if (root / "ietf" / "ietf-interfaces.yang").is_file():
            dirs += [root / "ietf", root / "iana"]
            break
    return dirs


@dataclass(slots=True)
class ModuleInfo:
    """One module (or submodule) of the schema with its source text."""

    name: str
    revision: str
    namespace: str
    prefix: str
    path: Path
    text: str
    implemented: bool = False
    features: tuple[str, ...] = ()
    submodules: list[ModuleInfo] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class SNode:
    """A data node of the schema, addressed by Clark-notation tags."""

    kind: str  # root | container | list | leaf | leaf-list | anydata | anyxml
    tag: str
    module: str
    namespace: str
    config: bool
    keys: tuple[str, ...] = ()
    presence: bool = False
    ordered_by_user: bool = False
    children: dict[str, SNode] = field(default_factory=dict)
    parent: SNode | None = None
    ynode: Any = None
    mandatory: list[SNode] | None = None  # filled lazily by validate
    case: Any = None  # innermost yangson CaseNode this node belongs to, if any
    choices: list[Any] = field(default_factory=list)  # yangson ChoiceNodes among the children

    @property
    def name(self) -> str:
        return self.tag.rpartition("}")[2]

    def child(self, tag: str) -> SNode | None:
        return self.children.get(tag)


def _read_module(path: Path, name: str) -> tuple[Any, str]:
    text = path.read_text(encoding="utf-8")
    try:
        try:
            return ModuleParser(text, name).parse(), text
        except ModuleRevisionMismatch as mismatch:  # yangson wants the first revision statement's date
            return ModuleParser(text, name, str(mismatch.found)).parse(), text
    except Exception as exc:  # yangson raises several parser exception types
        raise SchemaLoadError(f"{path}: cannot parse module {name}: {exc}") from exc


class Schema:
    """A loaded schema: node lookup by tag, namespace->module, yang-library data, module sources."""

    def __init__(self, modules: Mapping[str, ModuleInfo], search_path: Sequence[Path]) -> None:
        self.modules = dict(modules)
        self.search_path = list(search_path)
        self.by_namespace = {m.namespace: m for m in self.modules.values() if m.namespace}
        self.library = self._modules_state_json()
        try:
            self.datamodel = DataModel(json.dumps(self.library), [str(p) for p in self.search_path])
        except Exception as exc:
            raise SchemaLoadError(f"yangson rejected the module set: {type(exc).__name__}: {exc}") from exc
        self.root = SNode("root", "", "", "", True)
        self._index(self.datamodel.schema, self.root)
        self.has_xpath_constraints = self._any_xpath_constraints(self.root)
        self.xpath_cache: dict[int, Any] = {}  # compiled XPath constraints, owned by validate
        digest = hashlib.sha1(json.dumps(self.library, sort_keys=True).encode()).hexdigest()[:16]
        self.content_id = digest

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, modules: Iterable[str | tuple[str, str | None]],
             features: Mapping[str, Iterable[str]] | None = None, *, yang_dir: Path | None = None,
             search_path: Sequence[Path] | None = None) -> Schema:
        """Load ``modules`` (names, or (name, revision)) plus their imports with ``features`` enabled."""
        path = list(search_path) if search_path is not None else default_search_path(yang_dir)
        feats = {k: tuple(v) for k, v in (features or {}).items()}
        found: dict[str, ModuleInfo] = {}
        stmts: dict[str, Any] = {}
        pending: list[tuple[str, str | None, bool]] = []
        for item in modules:
            name, rev = (item, None) if isinstance(item, str) else item
            pending.append((name, rev, True))
        while pending:
            name, rev, implemented = pending.pop(0)
            if name in found:
                found[name].implemented |= implemented
                continue
            info, stmt = cls._locate(name, rev, path)
            stmts[name] = stmt
            info.implemented = implemented
            info.features = feats.get(name, ())
            found[name] = info
            for imp in stmt.find_all("import"):
                pending.append((imp.argument, None, False))
            for inc in stmt.find_all("include"):
                sub, _ = cls._locate(inc.argument, None, path)
                info.submodules.append(sub)
        for dev_name, stmt in stmts.items():
            for dev in stmt.find_all("deviation"):
                prefix = dev.argument.lstrip("/").split(":", 1)[0]
                for imp in stmt.find_all("import"):
                    target = found[imp.argument]
                    if imp.find1("prefix").argument == prefix and dev_name not in target.deviations:
                        target.deviations.append(dev_name)
        return cls(found, path)

    @staticmethod
    def _locate(name: str, rev: str | None, path: Sequence[Path]) -> tuple[ModuleInfo, Any]:
        for d in path:
            cands = [d / f"{name}@{rev}.yang"] if rev else []
            cands.append(d / f"{name}.yang")
            cands += sorted(d.glob(f"{name}@*.yang"), reverse=True)
            for cand in cands:
                if not cand.is_file():
                    continue
                stmt, text = _read_module(cand, name)
                first = stmt.find1("revision")
                mrev = first.argument if first is not None else ""
                if rev and mrev != rev:
                    continue
                ns_st = stmt.find1("namespace")
                if ns_st is not None:
                    prefix = stmt.find1("prefix").argument
                else:
                    prefix = stmt.find1("belongs-to").find1("prefix").argument
                info = ModuleInfo(name, mrev, ns_st.argument if ns_st is not None else "", prefix, cand, text)
                return info, stmt
        where = ", ".join(str(p) for p in path)
        raise SchemaLoadError(f"module {name}{'@' + rev if rev else ''} not found in {where}")

    def _modules_state_json(self) -> dict[str, Any]:
        mods = []
        for m in sorted(self.modules.values(), key=lambda x: x.name):
            entry: dict[str, Any] = {"name": m.name, "revision": m.revision, "namespace": m.namespace,
                                     "conformance-type": "implement" if m.implemented else "import"}
            if m.features:
                entry["feature"] = list(m.features)
            if m.submodules:
                entry["submodule"] = [{"name": s.name, "revision": s.revision} for s in m.submodules]
            mods.append(entry)
        ident = hashlib.sha1(json.dumps(mods, sort_keys=True).encode()).hexdigest()
        return {"ietf-yang-library:modules-state": {"module-set-id": ident, "module": mods}}

    def _index(self, ynode: Any, snode: SNode, case: Any = None) -> None:
        for ych in ynode.children:
            if isinstance(ych, sn.RpcActionNode | sn.NotificationNode | sn.InputNode | sn.OutputNode):
                continue
            if isinstance(ych, sn.ChoiceNode):
                snode.choices.append(ych)
                self._index(ych, snode, case)
                continue
            if isinstance(ych, sn.CaseNode):
                self._index(ych, snode, ych)
                continue
            mod = self.modules.get(ych.ns)
            ns = mod.namespace if mod else ""
            kind = _kind(ych)
            if kind is None:
                continue
            keys: tuple[str, ...] = ()
            if isinstance(ych, sn.ListNode):
                keys = tuple(qname(self.modules[k[1]].namespace, k[0]) for k in ych.keys)
            child = SNode(kind, qname(ns, ych.name), ych.ns, ns, bool(ych.config), keys,
                          presence=bool(getattr(ych, "presence", False)),
                          ordered_by_user=bool(getattr(ych, "user_ordered", False)), parent=snode, ynode=ych,
                          case=case)
            snode.children[child.tag] = child
            if kind in ("container", "list"):
                self._index(ych, child)

    @staticmethod
    def _any_xpath_constraints(root: SNode) -> bool:
        stack = list(root.children.values())
        while stack:
            node = stack.pop()
            y = node.ynode
            if getattr(y, "must", None) or getattr(y, "when", None):
                return True
            if node.kind in ("leaf", "leaf-list") and _has_leafref(y.type):
                return True
            stack.extend(node.children.values())
        return False

    # -- queries --------------------------------------------------------------------------------
    def node(self, tags: Sequence[str]) -> SNode | None:
        """The schema node at the path of Clark tags from the datastore root, or None."""
        cur: SNode | None = self.root
        for tag in tags:
            if cur is None:
                return None
            cur = cur.children.get(tag)
        return cur

    def module_for_namespace(self, namespace: str) -> str | None:
        info = self.by_namespace.get(namespace)
        return info.name if info else None

    def prefix_for_namespace(self, namespace: str) -> str | None:
        info = self.by_namespace.get(namespace)
        return info.prefix if info else None

    def module_capabilities(self) -> list[str]:
        """``ns?module=X&revision=R[&features=..][&deviations=..]`` for every implemented module."""
        caps = []
        for m in sorted(self.modules.values(), key=lambda x: x.name):
            if not m.implemented or not m.namespace:
                continue
            cap = f"{m.namespace}?module={m.name}"
            if m.revision:
                cap += f"&revision={m.revision}"
            if m.features:
                cap += "&features=" + ",".join(m.features)
            if m.deviations:
                cap += "&deviations=" + ",".join(m.deviations)
            caps.append(cap)
        return caps

    def module_source(self, identifier: str, version: str | None = None) -> str | None:
        """YANG text of a module or submodule by name (and revision when given), or None."""
        for m in self.modules.values():
            for cand in (m, *m.submodules):
                if cand.name == identifier and (not version or cand.revision == version):
                    return cand.text
        return None

    def yang_library(self, *, content_id: str | None = None) -> Element:
        """RFC 8525 ``yang-library`` (one module-set, schema, datastores) as XML."""
        lib = etree.Element(qname(YANGLIB_NS, "yang-library"), nsmap={None: YANGLIB_NS})
        mset = etree.SubElement(lib, qname(YANGLIB_NS, "module-set"))
        etree.SubElement(mset, qname(YANGLIB_NS, "name")).text = "complete"
        for m in sorted(self.modules.values(), key=lambda x: x.name):
            tag = "module" if m.implemented else "import-only-module"
            me = etree.SubElement(mset, qname(YANGLIB_NS, tag))
            etree.SubElement(me, qname(YANGLIB_NS, "name")).text = m.name
            if m.revision or tag == "import-only-module":
                etree.SubElement(me, qname(YANGLIB_NS, "revision")).text = m.revision
            etree.SubElement(me, qname(YANGLIB_NS, "namespace")).text = m.namespace
            for s in m.submodules:
                se = etree.SubElement(me, qname(YANGLIB_NS, "submodule"))
                etree.SubElement(se, qname(YANGLIB_NS, "name")).text = s.name
                if s.revision:
                    etree.SubElement(se, qname(YANGLIB_NS, "revision")).text = s.revision
            if m.implemented:
                for f in m.features:
                    etree.SubElement(me, qname(YANGLIB_NS, "feature")).text = f
                for d in m.deviations:
                    etree.SubElement(me, qname(YANGLIB_NS, "deviation")).text = d
        sch = etree.SubElement(lib, qname(YANGLIB_NS, "schema"))
        etree.SubElement(sch, qname(YANGLIB_NS, "name")).text = "complete"
        etree.SubElement(sch, qname(YANGLIB_NS, "module-set")).text = "complete"
        ds_ns = "urn:ietf:params:xml:ns:yang:ietf-datastores"
        for ds in ("running", "candidate", "startup", "operational"):
            de = etree.SubElement(lib, qname(YANGLIB_NS, "datastore"), nsmap={"ds": ds_ns})
            etree.SubElement(de, qname(YANGLIB_NS, "name")).text = f"ds:{ds}"
            etree.SubElement(de, qname(YANGLIB_NS, "schema")).text = "complete"
        etree.SubElement(lib, qname(YANGLIB_NS, "content-id")).text = content_id or self.content_id
        return lib

    def modules_state(self) -> Element:
        """RFC 7895 ``modules-state`` for clients that predate RFC 8525."""
        ms = etree.Element(qname(YANGLIB_NS, "modules-state"), nsmap={None: YANGLIB_NS})
        etree.SubElement(ms, qname(YANGLIB_NS, "module-set-id")).text = \
            self.library["ietf-yang-library:modules-state"]["module-set-id"]
        for m in sorted(self.modules.values(), key=lambda x: x.name):
            me = etree.SubElement(ms, qname(YANGLIB_NS, "module"))
            etree.SubElement(me, qname(YANGLIB_NS, "name")).text = m.name
            etree.SubElement(me, qname(YANGLIB_NS, "revision")).text = m.revision
            etree.SubElement(me, qname(YANGLIB_NS, "namespace")).text = m.namespace
            for f in m.features:
                etree.SubElement(me, qname(YANGLIB_NS, "feature")).text = f
            for d in m.deviations:
                de = etree.SubElement(me, qname(YANGLIB_NS, "deviation"))
                etree.SubElement(de, qname(YANGLIB_NS, "name")).text = d
                etree.SubElement(de, qname(YANGLIB_NS, "revision")).text = self.modules[d].revision
            etree.SubElement(me, qname(YANGLIB_NS, "conformance-type")).text = \
                "implement" if m.implemented else "import"
            for s in m.submodules:
                se = etree.SubElement(me, qname(YANGLIB_NS, "submodule"))
                etree.SubElement(se, qname(YANGLIB_NS, "name")).text = s.name
                etree.SubElement(se, qname(YANGLIB_NS, "revision")).text = s.revision
        return ms


def _kind(ynode: Any) -> str | None:
    if isinstance(ynode, sn.ListNode):
        return "list"
    if isinstance(ynode, sn.ContainerNode):
        return "container"
    if isinstance(ynode, sn.LeafListNode):
        return "leaf-list"
    if isinstance(ynode, sn.LeafNode):
        return "leaf"
    if isinstance(ynode, sn.AnydataNode):
        return "anydata"
    if isinstance(ynode, sn.AnyxmlNode):
        return "anyxml"
    return None


def _has_leafref(ytype: Any) -> bool:
    from yangson.datatype import LinkType, UnionType

    if isinstance(ytype, LinkType):
        return True
    if isinstance(ytype, UnionType):
        return any(_has_leafref(t) for t in ytype.types)
    return False


class SchemaCache:
    """Builds each distinct (modules, features, search path) schema once; thread-safe."""

    def __init__(self, *, yang_dir: Path | None = None) -> None:
        self._yang_dir = yang_dir
        self._lock = threading.Lock()
        self._schemas: dict[str, Schema] = {}

    def get(self, modules: Iterable[str | tuple[str, str | None]],
            features: Mapping[str, Iterable[str]] | None = None, *,
            extra_dirs: Sequence[Path] = ()) -> Schema:
        """The schema of ``modules``; ``extra_dirs`` are searched first (a device's deviation modules)."""
        mods = sorted((m, None) if isinstance(m, str) else (m[0], m[1]) for m in modules)
        feats = {k: sorted(v) for k, v in (features or {}).items()}
        dirs = [Path(d) for d in dict.fromkeys(str(d) for d in extra_dirs)]
        key = json.dumps([mods, feats, str(self._yang_dir), [str(d) for d in dirs]], sort_keys=True)
        with self._lock:
            schema = self._schemas.get(key)
            if schema is None:
                search = [*dirs, *default_search_path(self._yang_dir)] if dirs else None
                schema = Schema.load(mods, feats, yang_dir=self._yang_dir, search_path=search)
                self._schemas[key] = schema
                log.debug("built schema %s for %s", schema.content_id, [m for m, _ in mods])
            return schema

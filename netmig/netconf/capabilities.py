"""What a device can do: its hello capabilities and, when read, its YANG library.

Protocol capabilities get short names as ncclient spells them: ``urn:ietf:params:netconf:capability:
candidate:1.0`` is ``:candidate:1.0`` and also answers to ``:candidate``; ``urn:ietf:params:netconf:
base:1.1`` is ``:base:1.1``. Module capabilities (``NS?module=M&revision=R&features=a,b``) and the
ietf-yang-library data (RFC 7895 ``modules-state`` or RFC 8525 ``yang-library/module-set``) become
:class:`ModuleInfo` entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from netmig.errors import CapabilityError
from netmig.xmlkit import Element, local_name

__all__ = ["BASE_PREFIX", "CAPABILITY_PREFIX", "YANG_LIBRARY_NS", "Capabilities", "ModuleInfo", "short_name"]

CAPABILITY_PREFIX = "urn:ietf:params:netconf:capability:"
BASE_PREFIX = "urn:ietf:params:netconf:base:"
YANG_LIBRARY_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """One YANG module a device implements."""

    name: str
    revision: str | None = None
    namespace: str | None = None
    features: frozenset[str] = frozenset()
    deviations: frozenset[str] = frozenset()


def short_name(uri: str) -> str | None:
    """``:candidate:1.0`` for a protocol capability URI, None for anything else (modules)."""
    bare = uri.split("?", 1)[0].strip()
    for prefix, head in ((CAPABILITY_PREFIX, ""), (BASE_PREFIX, "base:")):
        if bare.startswith(prefix):
            return ":" + head + bare[len(prefix):]
    return None


def _module_from_uri(uri: str) -> ModuleInfo | None:
    parts = urlsplit(uri.strip())
    if not parts.query:
        return None
    query = parse_qs(parts.query)
    names = query.get("module")
    if not names:
        return None
    revision = query.get("revision", [None])[0]

    def split(key: str) -> frozenset[str]:
        return frozenset(item for value in query.get(key, []) for item in value.split(",") if item)

    namespace = uri.split("?", 1)[0].strip() or None
    return ModuleInfo(names[0], revision or None, namespace, split("features"), split("deviations"))


def _yang_library_modules(data: Element) -> list[ModuleInfo]:
    """Modules from a ``<data>`` (or any ancestor) holding RFC 7895 or RFC 8525 yang-library content."""
    found: list[ModuleInfo] = []
    for module in data.iter(f"{{{YANG_LIBRARY_NS}}}module"):
        parent = module.getparent()
        if parent is None or local_name(parent) not in ("modules-state", "module-set"):
            continue
        fields: dict[str, str] = {}
        features: set[str] = set()
        deviations: set[str] = set()
        for node in module:
            if not isinstance(node.tag, str):
                continue
            name, text = local_name(node), (node.text or "").strip()
            if name == "feature":
                features.add(text)
            elif name == "deviation":
                dev = node.findtext(f"{{{YANG_LIBRARY_NS}}}name") or text
                deviations.add(dev.strip())
            elif name in ("name", "revision", "namespace", "conformance-type"):
                fields[name] = text
        if fields.get("conformance-type") == "import" or "name" not in fields:
            continue
        found.append(ModuleInfo(fields["name"], fields.get("revision") or None, fields.get("namespace"),
                                frozenset(features), frozenset(deviations)))
    return found


@dataclass(frozen=True, slots=True)
class Capabilities:
    """A device's capabilities as a value object; ``device`` names it in errors."""

    device: str
    uris: tuple[str, ...]
    short_names: frozenset[str] = field(default_factory=frozenset)
    modules: Mapping[str, ModuleInfo] = field(default_factory=dict)

    @classmethod
    def from_hello(cls, device: str, uris: Iterable[str],
                   yang_library: Element | None = None) -> Capabilities:
        """Build from the hello's capability URIs and, optionally, ietf-yang-library data."""
        uri_list = tuple(u.strip() for u in uris if u and u.strip())
        shorts: set[str] = set()
        modules: dict[str, ModuleInfo] = {}
        for uri in uri_list:
            short = short_name(uri)
            if short is not None:
                shorts.add(short)
                head, _, version = short.rpartition(":")
                if head and version[:1].isdigit():
                    shorts.add(head)
                continue
            module = _module_from_uri(uri)
            if module is not None:
                modules[module.name] = module
        if yang_library is not None:
            for module in _yang_library_modules(yang_library):
                modules[module.name] = module
        return cls(device, uri_list, frozenset(shorts), modules)

    def with_yang_library(self, data: Element) -> Capabilities:
        """A copy whose modules are completed (and overridden) by yang-library data."""
        return Capabilities.from_hello(self.device, self.uris, data)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.short_names or name in self.uris)

    def has(self, name: str) -> bool:
        """True when the short name (``:candidate``, ``:validate:1.1``) or full URI is advertised."""
        return name in self

    def has_module(self, name: str, revision: str | None = None) -> bool:
        """True when module ``name`` is implemented (at ``revision`` when given)."""
        module = self.modules.get(name)
        return module is not None and (revision is None or module.revision == revision)

    def has_feature(self, module: str, feature: str) -> bool:
        """True when ``module`` is implemented with ``feature`` enabled."""
        info = self.modules.get(module)
        return info is not None and feature in info.features

    def missing(self, *names: str, modules: Iterable[str] = (),
                features: Iterable[tuple[str, str]] = ()) -> list[str]:
        """Everything asked for that the device lacks, in the order asked."""
        lacking = [name for name in names if name not in self]
        lacking += [f"module {m}" for m in modules if not self.has_module(m)]
        lacking += [f"feature {m}:{f}" for m, f in features if not self.has_feature(m, f)]
        return lacking

    def require(self, *names: str, modules: Iterable[str] = (),
                features: Iterable[tuple[str, str]] = ()) -> None:
        """Raise :class:`CapabilityError` naming every missing capability, module and feature."""
        lacking = self.missing(*names, modules=modules, features=features)
        if lacking:
            raise CapabilityError(self.device, "missing " + ", ".join(lacking))

"""NETCONF Access Control Model (RFC 8341, ietf-netconf-acm) for one simulated device.

The NACM configuration lives in the fabric file (``devices.NAME.nacm``), not in the device datastore: it
is fixed for the life of the fabric and cannot be read or changed over NETCONF. Its shape follows the
``/nacm:nacm`` container::

    nacm:
      enable-nacm: true            # default true
      read-default: permit         # permit | deny, default permit
      write-default: deny          # default deny
      exec-default: permit         # default permit
      groups:                      # group -> user names (RFC: /nacm/groups/group/user-name)
        - {name: netmig, user-name: [netmig]}
      rule-list:                   # processed in order; the first matching rule decides
        - name: netmig
          group: [netmig]          # "*" = every user
          rule:
            - {name: no-kill, module-name: ietf-netconf, rpc-name: kill-session, access-operations: exec,
               action: deny}
            - {name: acls, path: /ietf-access-control-list:acls, access-operations: "create update delete",
               action: permit}
            - {name: acme, module-name: acme-fabric, access-operations: "*", action: permit}

A user's groups are the NACM groups naming it plus the ``groups`` of its fabric-file account (like groups
from the transport layer). ``path`` supports simple absolute paths without predicates: steps
``/module:name`` (module *names* as prefixes, as in RFC 7951; a step without a prefix takes the previous
step's module); ``/`` matches every data node. ``notification-name`` rules are accepted but never match
(the simulator sends only netconf-config-change). Not implemented: the recovery session (RFC 8341 3.1.1),
``nacm:default-deny-write`` / ``default-deny-all`` on data nodes, the NACM counters, and data access
checks inside the netmig-migration RPCs (only their execution is checked).

Enforcement (called by session.py): :meth:`Nacm.check_rpc` before every operation except close-session
(``access-denied``, error-type protocol; kill-session and delete-config are default-deny-all);
:meth:`Nacm.check_edit` / :meth:`Nacm.check_copy` compute the nodes an edit would create, update or delete
on a scratch copy of the target and refuse the whole edit (``access-denied``, error-type application,
error-path of the first denied node) before anything changes; :meth:`Nacm.filter_read` silently removes
the nodes a user may not read from get / get-config output.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .editconfig import apply_edit, xpath_of
from .rpcerror import SimRpcError
from .schema import Schema, SNode
from .xml import MONITORING_NS, NC_NS, YANGLIB_NS, Element

__all__ = ["Nacm", "NacmConfig", "NacmRule", "NacmRuleList", "changes", "nacm_from_mapping"]

OPERATIONS = ("create", "read", "update", "delete", "exec")
_DEFAULT_DENY_ALL_RPCS = frozenset({("ietf-netconf", "kill-session"), ("ietf-netconf", "delete-config")})
_RPC_MODULES = {
    NC_NS: "ietf-netconf",
    MONITORING_NS: "ietf-netconf-monitoring",
    "urn:ietf:params:xml:ns:netconf:notification:1.0": "notifications",
    "urn:netmig:yang:netmig-migration": "netmig-migration",
}
# data the engine and sessions serve outside the device's schema (yang-library, modules-state)
_DATA_MODULES = {YANGLIB_NS: "ietf-yang-library", MONITORING_NS: "ietf-netconf-monitoring"}
_ACTIONS = ("permit", "deny")


@dataclass(frozen=True, slots=True)
class NacmRule:
    """One rule of a rule-list (RFC 8341 /nacm/rule-list/rule)."""

    name: str
    module_name: str = "*"
    rpc_name: str | None = None
    notification_name: str | None = None
    path: tuple[tuple[str | None, str], ...] | None = None  # (module or None, name) per step
    path_text: str | None = None
    access_operations: frozenset[str] = frozenset(OPERATIONS)
    action: str = "deny"


@dataclass(frozen=True, slots=True)
class NacmRuleList:
    name: str
    groups: tuple[str, ...]
    rules: tuple[NacmRule, ...]


@dataclass(frozen=True, slots=True)
class NacmConfig:
    """The /nacm container of one device."""

    enable_nacm: bool = True
    read_default: str = "permit"
    write_default: str = "deny"
    exec_default: str = "permit"
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> user names
    rule_lists: tuple[NacmRuleList, ...] = ()


# -- fabric-file form ------------------------------------------------------------------------------
def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} must be a name or a list of names")
    return tuple(value)


def _keys(raw: Any, what: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be a mapping")
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown key {unknown[0]!r}")
    return raw


def parse_path(text: str) -> tuple[tuple[str | None, str], ...]:
    """``/mod:a/b/mod2:c`` -> steps; ``/`` -> (); raises ValueError on predicates or relative paths."""
    if not text.startswith("/"):
        raise ValueError(f"path {text!r} must be absolute")
    if text == "/":
        return ()
    steps: list[tuple[str | None, str]] = []
    for step in text[1:].split("/"):
        module, _, name = step.rpartition(":")
        if not name or any(c in step for c in "[]*=' \"") or step.count(":") > 1:
            raise ValueError(f"path {text!r}: only simple steps /module:name, no predicates, are supported")
        steps.append((module or None, name))
    if steps[0][0] is None:
        raise ValueError(f"path {text!r}: the first step needs a module-name prefix")
    return tuple(steps)


def _rule(raw: Any, where: str) -> NacmRule:
    r = _keys(raw, where, {"name", "module-name", "rpc-name", "notification-name", "path",
                           "access-operations", "action", "comment"})
    name = r.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: name is missing")
    kinds = [k for k in ("rpc-name", "notification-name", "path") if k in r]
    if len(kinds) > 1:
        raise ValueError(f"{where}: give at most one of rpc-name, notification-name, path")
    for key in ("module-name", *kinds):
        if not isinstance(r.get(key, "*"), str):
            raise ValueError(f"{where}: {key} must be a string")
    action = r.get("action")
    if action not in _ACTIONS:
        raise ValueError(f"{where}: action must be permit or deny")
    ops_text = r.get("access-operations", "*")
    if not isinstance(ops_text, str):
        raise ValueError(f"{where}: access-operations must be a string like 'create update' or '*'")
    ops = frozenset(OPERATIONS) if ops_text.strip() == "*" else frozenset(ops_text.split())
    if not ops or ops - set(OPERATIONS):
        raise ValueError(f"{where}: access-operations {ops_text!r}: use '*' or of {', '.join(OPERATIONS)}")
    path_text = r.get("path")
    return NacmRule(name=name, module_name=r.get("module-name", "*"), rpc_name=r.get("rpc-name"),
                    notification_name=r.get("notification-name"),
                    path=parse_path(path_text) if path_text is not None else None, path_text=path_text,
                    access_operations=ops, action=action)


def nacm_from_mapping(raw: Any) -> NacmConfig:
    """A NacmConfig from the fabric file's ``nacm:`` mapping; raises ValueError naming the problem."""
    top = _keys(raw, "nacm", {"enable-nacm", "read-default", "write-default", "exec-default", "groups",
                              "rule-list"})
    enable = top.get("enable-nacm", True)
    if not isinstance(enable, bool):
        raise ValueError("enable-nacm must be true or false")
    defaults = {}
    for key, default in (("read-default", "permit"), ("write-default", "deny"), ("exec-default", "permit")):
        defaults[key] = top.get(key, default)
        if defaults[key] not in _ACTIONS:
            raise ValueError(f"{key} must be permit or deny")
    groups: dict[str, tuple[str, ...]] = {}
    graw = top.get("groups", [])
    if not isinstance(graw, list):
        raise ValueError("groups must be a list of {name, user-name}")
    for i, g in enumerate(graw):
        gm = _keys(g, f"groups[{i}]", {"name", "user-name"})
        gname = gm.get("name")
        if not isinstance(gname, str) or not gname:
            raise ValueError(f"groups[{i}]: name is missing")
        groups[gname] = _names(gm.get("user-name", []), f"groups[{i}].user-name")
    lists: list[NacmRuleList] = []
    lraw = top.get("rule-list", [])
    if not isinstance(lraw, list):
        raise ValueError("rule-list must be a list")
    for i, rl in enumerate(lraw):
        where = f"rule-list[{i}]"
        m = _keys(rl, where, {"name", "group", "rule"})
        lname = m.get("name")
        if not isinstance(lname, str) or not lname:
            raise ValueError(f"{where}: name is missing")
        rules = m.get("rule", [])
        if not isinstance(rules, list):
            raise ValueError(f"{where}.rule must be a list")
        lists.append(NacmRuleList(lname, _names(m.get("group", []), f"{where}.group"),
                                  tuple(_rule(r, f"{where}.rule[{j}]") for j, r in enumerate(rules))))
    return NacmConfig(enable_nacm=enable, read_default=defaults["read-default"],
                      write_default=defaults["write-default"], exec_default=defaults["exec-default"],
                      groups=groups, rule_lists=tuple(lists))


# -- enforcement -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Resolved:
    rule: NacmRule
    tags: tuple[str, ...] | None  # path as Clark tags; None: no path; () with rule.path set: "/"
    dead: bool = False             # a path naming a module this device does not have: never matches


def _denied(message: str, *, error_type: str, path: str | None = None,
            nsmap: Mapping[str, str] | None = None) -> SimRpcError:
    return SimRpcError(error_type, "access-denied", message=message, path=path, path_nsmap=nsmap)


class Nacm:
    """RFC 8341 access control of one device; ``user_groups`` are groups from the accounts."""

    def __init__(self, config: NacmConfig, schema: Schema,
                 user_groups: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.config = config
        self.schema = schema
        self._user_groups = dict(user_groups or {})
        self._cache: dict[str, tuple[_Resolved, ...]] = {}

    @property
    def enabled(self) -> bool:
        return self.config.enable_nacm

    def groups_of(self, user: str) -> set[str]:
        groups = {g for g, users in self.config.groups.items() if user in users}
        return groups | set(self._user_groups.get(user, ()))

    def _rules(self, user: str) -> tuple[_Resolved, ...]:
        """The rules of every rule-list that applies to ``user``, in order."""
        found = self._cache.get(user)
        if found is None:
            groups = self.groups_of(user)
            found = tuple(self._resolve(rule) for rl in self.config.rule_lists
                          if "*" in rl.groups or groups & set(rl.groups) for rule in rl.rules)
            self._cache[user] = found
        return found

    def _resolve(self, rule: NacmRule) -> _Resolved:
        if rule.path is None:
            return _Resolved(rule, None)
        tags: list[str] = []
        module: str | None = None
        by_name = {m.name: m for m in self.schema.modules.values()}
        for mod, name in rule.path:
            module = mod or module
            info = by_name.get(module or "")
            if info is None:
                return _Resolved(rule, (), dead=True)
            tags.append(f"{{{info.namespace}}}{name}")
        return _Resolved(rule, tuple(tags))

    # -- protocol operations ---------------------------------------------------------------------
    def check_rpc(self, user: str, namespace: str | None, name: str) -> None:
        """Raise access-denied unless ``user`` may execute the operation (close-session always may)."""
        module = _RPC_MODULES.get(namespace or "") or self.schema.module_for_namespace(namespace or "") or ""
        if (module, name) == ("ietf-netconf", "close-session"):
            return
        for res in self._rules(user):
            rule = res.rule
            if rule.notification_name is not None or rule.path is not None:
                continue
            if rule.module_name not in ("*", module) or "exec" not in rule.access_operations:
                continue
            if rule.rpc_name not in (None, "*", name):
                continue
            if rule.action == "permit":
                return
            raise _denied(f"access denied: {user} may not execute {module}:{name} (rule {rule.name})",
                          error_type="protocol", path=f"/nc:rpc/nc:{name}" if module == "ietf-netconf"
                          else None, nsmap={"nc": NC_NS})
        if (module, name) in _DEFAULT_DENY_ALL_RPCS or self.config.exec_default == "deny":
            raise _denied(f"access denied: {user} may not execute {module}:{name} (default)",
                          error_type="protocol", path=f"/nc:rpc/nc:{name}" if module == "ietf-netconf"
                          else None, nsmap={"nc": NC_NS})

    # -- data nodes ------------------------------------------------------------------------------
    def permits(self, user: str, tags: tuple[str, ...], operation: str) -> bool:
        """May ``user`` do ``operation`` (create, read, update, delete) on the data node at ``tags``?"""
        namespace = tags[-1][1:].partition("}")[0] if tags else ""
        module = self.schema.module_for_namespace(namespace) or _DATA_MODULES.get(namespace)
        for res in self._rules(user):
            rule = res.rule
            if rule.rpc_name is not None or rule.notification_name is not None or res.dead:
                continue
            if rule.module_name not in ("*", module) or operation not in rule.access_operations:
                continue
            if res.tags is not None and tags[:len(res.tags)] != res.tags:
                continue
            return rule.action == "permit"
        default = self.config.read_default if operation == "read" else self.config.write_default
        return default == "permit"

    def _permit_below(self, user: str, tags: tuple[str, ...]) -> bool:
        """Does a permit rule name a path strictly below ``tags`` (keep ``tags`` as a skeleton)?"""
        return any(r.rule.action == "permit" and r.tags is not None and len(r.tags) > len(tags)
                   and r.tags[:len(tags)] == tags and "read" in r.rule.access_operations
                   for r in self._rules(user))

    def filter_read(self, user: str, data: Element) -> Element:
        """Remove from ``data`` (in place) every node ``user`` may not read; returns ``data``."""
        self._prune(user, data, (), self.schema.root)
        return data

    def _prune(self, user: str, parent: Element, tags: tuple[str, ...], snode: SNode | None) -> None:
        keys = snode.keys if snode is not None and snode.kind == "list" else ()
        for child in list(parent):
            if not isinstance(child.tag, str):
                continue
            if child.tag in keys:
                continue  # the entry is visible, so are its keys
            here = (*tags, child.tag)
            sub = snode.child(child.tag) if snode is not None else None
            if self.permits(user, here, "read"):
                self._prune(user, child, here, sub)
            elif self._permit_below(user, here) and len(child):
                self._prune(user, child, here, sub)
                skeleton_keys = sub.keys if sub is not None and sub.kind == "list" else ()
                if not any(isinstance(c.tag, str) and c.tag not in skeleton_keys for c in child):
                    parent.remove(child)
                else:
                    child.text = None
            else:
                parent.remove(child)

    def check_edit(self, user: str, before: Element, config: Element, *, default_operation: str,
                   error_option: str) -> None:
        """Refuse an edit-config (before it changes anything) that writes a node ``user`` may not."""
        scratch = copy.deepcopy(before)
        try:
            apply_edit(scratch, config, self.schema, default_operation=default_operation,
                       error_option=error_option)
        except SimRpcError:
            return  # the edit fails the same way on the real datastore, having changed nothing
        self.check_write(user, before, scratch)

    def check_write(self, user: str, before: Element, after: Element) -> None:
        """Raise access-denied for the first created, updated or deleted node ``user`` may not write."""
        for operation, tags, path, nsmap in changes(self.schema, before, after):
            if not self.permits(user, tags, operation):
                raise _denied(f"access denied: {user} may not {operation} {path}", error_type="application",
                              path=path, nsmap=nsmap)


# -- datastore diff --------------------------------------------------------------------------------
_Change = tuple[str, tuple[str, ...], str, dict[str, str]]


def _identity(el: Element, snode: SNode | None, index: int) -> tuple[str, ...]:
    tag = str(el.tag)
    if snode is None:
        return (tag, str(index))
    if snode.kind == "list":
        found = [el.find(key) for key in snode.keys]
        return (tag, *[(k.text or "").strip() if k is not None else "" for k in found])
    if snode.kind == "leaf-list":
        return (tag, (el.text or "").strip())
    return (tag,)


def _index(parent: Element, snode: SNode | None) -> dict[tuple[str, ...], tuple[Element, SNode | None]]:
    out: dict[tuple[str, ...], tuple[Element, SNode | None]] = {}
    for i, child in enumerate(c for c in parent if isinstance(c.tag, str)):
        sub = snode.child(str(child.tag)) if snode is not None else None
        out[_identity(child, sub, i)] = (child, sub)
    return out


def _all(schema: Schema, operation: str, el: Element, snode: SNode | None, tags: tuple[str, ...],
         path: str, nsmap: dict[str, str]) -> Iterator[_Change]:
    """``el`` and every descendant, each as one created (or deleted) node."""
    yield operation, tags, path, nsmap
    for child, sub in _index(el, snode).values():
        here = xpath_of(schema, sub, path, child, nsmap) if sub is not None else f"{path}/{child.tag!s}"
        yield from _all(schema, operation, child, sub, (*tags, str(child.tag)), here, nsmap)


def changes(schema: Schema, before: Element, after: Element, snode: SNode | None = None,
            tags: tuple[str, ...] = (), path: str = "", nsmap: dict[str, str] | None = None
            ) -> Iterator[_Change]:
    """Every node created, updated (leaf value) or deleted from ``before`` to ``after`` (``<data>`` roots):
    ``(operation, Clark tags, XPath with key predicates, its prefix map)``; list entries by key."""
    snode = schema.root if snode is None and not tags else snode
    nsmap = {} if nsmap is None else nsmap
    old, new = _index(before, snode), _index(after, snode)
    for key, (el, sub) in new.items():
        here_tags = (*tags, str(el.tag))
        here = xpath_of(schema, sub, path, el, nsmap) if sub is not None else f"{path}/{el.tag!s}"
        if key not in old:
            yield from _all(schema, "create", el, sub, here_tags, here, nsmap)
            continue
        prev = old[key][0]
        kind = sub.kind if sub is not None else None
        if kind in ("leaf", "leaf-list") or (kind is None and not len(el) and not len(prev)):
            if (el.text or "").strip() != (prev.text or "").strip():
                yield "update", here_tags, here, nsmap
        elif kind in ("anydata", "anyxml"):
            if etree.tostring(el, method="c14n") != etree.tostring(prev, method="c14n"):
                yield "update", here_tags, here, nsmap
        else:
            yield from changes(schema, prev, el, sub, here_tags, here, nsmap)
    for key, (el, sub) in old.items():
        if key not in new:
            here = xpath_of(schema, sub, path, el, nsmap) if sub is not None else f"{path}/{el.tag!s}"
            yield from _all(schema, "delete", el, sub, (*tags, str(el.tag)), here, nsmap)

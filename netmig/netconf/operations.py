"""NETCONF request builders and reply parsing: pure functions (no I/O; golden-XML testable) that
:class:`netmig.netconf.session.DeviceSession` sends and reads (RFC 6241, 5277, 6022)."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from netmig.errors import RpcErrorInfo
from netmig.xmlkit import NC_NS, Element, element, local_name, qualify, sub

__all__ = [
    "NOTIFICATION_NS",
    "build_cancel_commit",
    "build_commit",
    "build_create_subscription",
    "build_edit_config",
    "build_get",
    "build_get_config",
    "build_kill_session",
    "build_simple",
    "build_validate",
    "build_with_target",
    "parse_rpc_errors",
    "subtree_filter",
    "xpath_filter",
    "yang_library_filter",
]

# ---------------------------------------------------------------------- request builders (pure)
NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
_YANG_LIBRARY_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
_DATASTORES = ("running", "candidate", "startup")
_DEFAULT_OPERATIONS = ("merge", "replace", "none")
_TEST_OPTIONS = ("test-then-set", "set", "test-only")
_ERROR_OPTIONS = ("stop-on-error", "continue-on-error", "rollback-on-error")


def _choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def build_simple(name: str) -> Element:
    return element(NC_NS, name)


def build_with_target(name: str, target: str, wrapper: str = "target") -> Element:
    op = build_simple(name)
    sub(sub(op, NC_NS, wrapper), NC_NS, _choice("datastore", target, _DATASTORES))
    return op


def subtree_filter(*content: Element) -> Element:
    """``<filter type="subtree">`` holding copies of ``content``."""
    flt = element(NC_NS, "filter", attrib={"type": "subtree"})
    for node in content:
        flt.append(copy.deepcopy(node))
    return flt


def xpath_filter(select: str, namespaces: Mapping[str, str]) -> Element:
    """``<filter type="xpath" select=...>`` with the prefixes ``select`` uses declared (needs :xpath)."""
    return element(NC_NS, "filter", attrib={"type": "xpath", "select": select},
                   nsmap={None: NC_NS, **{prefix: ns for prefix, ns in namespaces.items()}})


def _filter_of(flt: Element | None) -> Element | None:
    if flt is None:
        return None
    return copy.deepcopy(flt) if flt.tag == qualify(NC_NS, "filter") else subtree_filter(flt)


def _config_of(config: Element) -> Element:
    if config.tag == qualify(NC_NS, "config"):
        return copy.deepcopy(config)
    wrapper = element(NC_NS, "config")
    wrapper.append(copy.deepcopy(config))
    return wrapper


def build_get(flt: Element | None = None) -> Element:
    op = build_simple("get")
    if (f := _filter_of(flt)) is not None:
        op.append(f)
    return op


def build_get_config(source: str, flt: Element | None = None) -> Element:
    op = build_with_target("get-config", source, "source")
    if (f := _filter_of(flt)) is not None:
        op.append(f)
    return op


def build_edit_config(target: str, config: Element, *, default_operation: str | None = None,
                      test_option: str | None = None, error_option: str | None = None) -> Element:
    op = build_with_target("edit-config", target)
    if default_operation is not None:
        sub(op, NC_NS, "default-operation",
            _choice("default_operation", default_operation, _DEFAULT_OPERATIONS))
    if test_option is not None:
        sub(op, NC_NS, "test-option", _choice("test_option", test_option, _TEST_OPTIONS))
    if error_option is not None:
        sub(op, NC_NS, "error-option", _choice("error_option", error_option, _ERROR_OPTIONS))
    op.append(_config_of(config))
    return op


def build_validate(source: str | Element) -> Element:
    if isinstance(source, str):
        return build_with_target("validate", source, "source")
    op = build_simple("validate")
    sub(op, NC_NS, "source").append(_config_of(source))
    return op


def build_commit(*, confirmed: bool = False, timeout_s: int | None = None, persist: str | None = None,
                 persist_id: str | None = None) -> Element:
    """RFC 6241 8.4.5: confirmed commit (timeout, persist) or confirming commit (persist-id)."""
    if not confirmed and (timeout_s is not None or persist is not None):
        raise ValueError("confirm timeout and persist need confirmed=True")
    if timeout_s is not None and timeout_s < 1:
        raise ValueError("confirm timeout must be at least 1 second")
    op = build_simple("commit")
    if confirmed:
        sub(op, NC_NS, "confirmed")
        if timeout_s is not None:
            sub(op, NC_NS, "confirm-timeout", int(timeout_s))
        if persist is not None:
            sub(op, NC_NS, "persist", persist)
    if persist_id is not None:
        sub(op, NC_NS, "persist-id", persist_id)
    return op


def build_cancel_commit(persist_id: str | None) -> Element:
    op = build_simple("cancel-commit")
    if persist_id is not None:
        sub(op, NC_NS, "persist-id", persist_id)
    return op


def build_kill_session(session_id: int | str) -> Element:
    op = build_simple("kill-session")
    sub(op, NC_NS, "session-id", str(int(session_id)))
    return op


def build_create_subscription(*, stream: str | None, filter: Element | None) -> Element:
    op = element(NOTIFICATION_NS, "create-subscription")
    if stream is not None:
        sub(op, NOTIFICATION_NS, "stream", stream)
    if (f := _filter_of(filter)) is not None:
        op.append(f)
    return op


def yang_library_filter() -> Element:
    return subtree_filter(element(_YANG_LIBRARY_NS, "yang-library"),
                          element(_YANG_LIBRARY_NS, "modules-state"))


_RPC_ERROR = qualify(NC_NS, "rpc-error")


def parse_rpc_errors(reply: Element) -> list[RpcErrorInfo]:
    """Every ``<rpc-error>`` of an ``<rpc-reply>``, with all RFC 6241 fields."""
    found: list[RpcErrorInfo] = []
    for err in reply.iterfind(_RPC_ERROR):  # children of rpc-reply only (RFC 6241 section 4.3)
        fields: dict[str, str] = {}
        info: dict[str, str] = {}
        for node in err:
            if not isinstance(node.tag, str):
                continue
            name = local_name(node)
            if name == "error-info":
                for item in node:
                    if isinstance(item.tag, str):
                        info[local_name(item)] = (item.text or "").strip()
            else:
                fields[name] = (node.text or "").strip()
        found.append(RpcErrorInfo(
            type=fields.get("error-type", "rpc"), tag=fields.get("error-tag", "operation-failed"),
            severity=fields.get("error-severity", "error"), app_tag=fields.get("error-app-tag") or None,
            path=fields.get("error-path") or None, message=fields.get("error-message") or None, info=info))
    return found

"""acme-fabric ports: the VM's port profile, QoS in kbit/s and its flat per-port filter lines.

A canonical ACL ``A`` becomes the filter lines of ``list-name A`` on the VM's port; line ``seq`` is
``slot * SLOT + rule sequence`` (lists numbered by name from 1), so order and sequences survive a round
trip. Rates and bursts that are not whole kilo-units are refused, never rounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from netmig import xmlkit
from netmig.codecs.base import Element, VmContext
from netmig.errors import BundleError, UnsupportedPolicyError
from netmig.model import Acl, AclRule, Action, PortProfile, Protocol, QosProfile, VmBundle
from netmig.model.policy import to_enum

__all__ = [
    "ACME_NS",
    "SLOT",
    "add_leaves",
    "check_port",
    "decode_lines",
    "encode_port",
    "flat_leaves",
    "format_dport",
    "int_or_none",
    "parse_dport",
    "parse_proto",
]

ACME_NS = "urn:acme:yang:acme-fabric"
SLOT = 1_000_000
_PORT_RE = re.compile(r"ethernet-[0-9]{1,3}/[0-9]{1,3}\Z")


def int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise BundleError(f"acme-fabric: {text!r} is not an integer") from exc


def flat_leaves(el: Element) -> dict[str, str]:
    return {
        xmlkit.local_name(c): (c.text or "").strip() for c in el if isinstance(c.tag, str) and len(c) == 0
    }


def add_leaves(parent: Element, items: Iterable[tuple[str, Any]]) -> None:
    for name, value in items:
        if value is not None:
            xmlkit.sub(parent, ACME_NS, name, str(value))


def check_port(port: str, kind: str) -> None:
    if not _PORT_RE.match(port):
        raise UnsupportedPolicyError("acme", kind, f"port {port!r} is not an ACME port name (ethernet-N/M)")


def _thousands(value: int | None, what: str, kind: str) -> int | None:
    if value is None:
        return None
    if value % 1000:
        raise UnsupportedPolicyError(
            "acme", kind, f"{what} {value} is not a multiple of 1000 (no silent rounding)"
        )
    if value // 1000 > 0xFFFFFFFF:
        raise UnsupportedPolicyError("acme", kind, f"{what} {value} exceeds the device's range")
    return value // 1000


def parse_proto(text: str, path: str) -> Protocol:
    return Protocol.ANY if text == "ip" else to_enum(Protocol, text, f"{path}/proto")


def format_dport(low: int | None, high: int | None) -> str | None:
    if low is None:
        return None
    return str(low) if high is None else f"{low}-{high}"


def parse_dport(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    low, sep, high = text.partition("-")
    return int(low), (int(high) if sep else None)


def encode_port(root: Element, bundle: VmBundle, ctx: VmContext) -> None:
    check_port(ctx.port, "port-profile")
    st = bundle.static
    pp, qos = st.port_profile or PortProfile(), st.qos or QosProfile()
    port = xmlkit.sub(root, ACME_NS, "port")
    add_leaves(
        port,
        (
            ("name", ctx.port),
            ("owner", bundle.vm_id),
            ("tenant", bundle.identity.tenant or ctx.tenant),
            ("vlan", pp.vlan),
            ("segment-id", bundle.identity.vni),
            ("mtu-bytes", pp.mtu),
            ("police-kbps", _thousands(qos.rate_bps, "rate-bps", "qos")),
            ("burst-kb", _thousands(qos.burst_bytes, "burst-bytes", "qos")),
            ("mark-dscp", qos.dscp),
            ("mac-limit", pp.max_macs),
        ),
    )
    for slot, acl in enumerate(st.acl, start=1):
        if not acl.rule:
            raise UnsupportedPolicyError(
                "acme", "acl", f"acl {acl.name} has no rules: a flat filter cannot hold it"
            )
        for rule in acl.rule:
            seq = slot * SLOT + rule.sequence
            if rule.sequence >= SLOT or seq > 0xFFFFFFFF:
                raise UnsupportedPolicyError(
                    "acme",
                    "acl",
                    f"acl {acl.name} rule {rule.sequence} does not fit a "
                    f"filter-line seq (sequences below {SLOT}, at most 4293 lists)",
                )
            add_leaves(
                xmlkit.sub(port, ACME_NS, "filter-line"),
                (
                    ("seq", seq),
                    ("list-name", acl.name),
                    ("direction", "in" if acl.direction == "ingress" else "out"),
                    ("verdict", "allow" if rule.action == "permit" else "block"),
                    ("proto", "ip" if rule.protocol == "any" else rule.protocol.value),
                    ("src", rule.source_prefix),
                    ("dst", rule.destination_prefix),
                    ("dport", format_dport(rule.destination_port_min, rule.destination_port_max)),
                ),
            )


def decode_lines(lines: Iterable[Element]) -> tuple[Acl, ...]:
    lists: dict[str, tuple[str, list[AclRule]]] = {}
    for line in lines:
        f = flat_leaves(line)
        name, seq = f.get("list-name", ""), int_or_none(f.get("seq")) or 0
        direction = {"in": "ingress", "out": "egress"}.get(f.get("direction", ""), "")
        low, high = parse_dport(f.get("dport"))
        proto = f.get("proto", "ip")
        rule = AclRule(
            seq % SLOT,
            Action.PERMIT if f.get("verdict") == "allow" else Action.DENY,
            parse_proto(proto, f"filter-line[{seq}]"),
            f.get("src"),
            f.get("dst"),
            low,
            high,
        )
        known = lists.setdefault(name, (direction, []))
        if known[0] != direction:
            raise BundleError(
                f"filter list {name!r} has lines in both directions: cannot be expressed canonically"
            )
        known[1].append(rule)
    return tuple(Acl(name, d, tuple(rules)) for name, (d, rules) in lists.items())  # type: ignore[arg-type]

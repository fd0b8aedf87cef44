"""ietf-access-control-list (RFC 8519) for the IETF flavour: the VM's ACLs and their interface attachment.

ACL ``A`` of VM ``V`` is named ``V.A`` and attached to the VM's port; aces are named ``r<sequence>``.
Matches netmig cannot express canonically (other IP protocols, source ports, ICMP types, reject) are
refused with BundleError instead of being approximated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any

from netmig import xmlkit
from netmig.codecs.base import Element, VmContext, int_of, section, subtree_filter, top
from netmig.errors import BundleError
from netmig.model import Acl, AclRule, Direction

__all__ = ["ACL_NS", "decode_acls", "encode_acls", "narrow_acl_filter"]

ACL_NS = "urn:ietf:params:xml:ns:yang:ietf-access-control-list"
_PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1}
_NUM_PROTO = {v: k for k, v in _PROTO_NUM.items()}
_ACE_NAME = re.compile(r"r(\d+)\Z")


def decode_acls(config: Element, ctx: VmContext) -> Iterable[Acl]:
    acls = top(config, ACL_NS, "acls")
    if acls is None:
        return
    by_name = {xmlkit.text_of(a, ACL_NS, "name"): a for a in xmlkit.children(acls, ACL_NS, "acl")}
    prefix = f"{ctx.vm_id}."
    for point in acls.iterfind(f"{{{ACL_NS}}}attachment-points/{{{ACL_NS}}}interface"):
        if xmlkit.text_of(point, ACL_NS, "interface-id") != ctx.port:
            continue
        for direction in ("ingress", "egress"):
            for name_el in point.iterfind(
                f"{{{ACL_NS}}}{direction}/{{{ACL_NS}}}acl-sets/{{{ACL_NS}}}acl-set/{{{ACL_NS}}}name"
            ):
                name = (name_el.text or "").strip()
                if not name.startswith(prefix):
                    raise BundleError(
                        f"acl {name!r} attached to {ctx.port} is not named {prefix}NAME: refusing it"
                    )
                acl = by_name.get(name)
                if acl is None:
                    raise BundleError(f"acl {name!r} attached to {ctx.port} does not exist")
                yield Acl(name[len(prefix) :], Direction(direction), tuple(_decode_aces(acl, name)))


def narrow_acl_filter(flt: Element, port: str, answer: Callable[[Element], Element]) -> Element:
    """``flt`` with its whole-``acls`` selection replaced by what :func:`decode_acls` reads for ``port``:
    the port's attachment point and the ACLs it names, by name (``answer`` reads the attachment point
    first). Without a port nothing is attached for the VM, so no ACL is selected. ``flt`` itself when it
    does not select the whole container."""
    tag = xmlkit.qualify(ACL_NS, "acls")
    whole = [f for f in flt if f.tag == tag]
    if len(whole) != 1 or len(whole[0]) or whole[0].attrib or (whole[0].text or "").strip():
        return flt
    out = deepcopy(flt)  # the filter, not data: a few elements
    acls = next(f for f in out if f.tag == tag)
    if not port:  # decode keeps the attachment point whose interface-id is the port: none
        out.remove(acls)
        return out
    point = xmlkit.sub(xmlkit.sub(acls, ACL_NS, "attachment-points"), ACL_NS, "interface")
    xmlkit.sub(point, ACL_NS, "interface-id", port)
    probe = subtree_filter()
    probe.append(deepcopy(acls))
    names: dict[str, None] = {}
    for found in answer(probe).iterfind(f"{tag}/{{{ACL_NS}}}attachment-points/{{{ACL_NS}}}interface"):
        if xmlkit.text_of(found, ACL_NS, "interface-id") != port:
            continue
        for direction in ("ingress", "egress"):
            for name_el in found.iterfind(
                f"{{{ACL_NS}}}{direction}/{{{ACL_NS}}}acl-sets/{{{ACL_NS}}}acl-set/{{{ACL_NS}}}name"
            ):
                name = (name_el.text or "").strip()
                if name:  # an empty name would select every acl; decode refuses it unlooked-up anyway
                    names[name] = None
    for name in names:
        xmlkit.sub(xmlkit.sub(acls, ACL_NS, "acl"), ACL_NS, "name", name)
    return out


def _decode_aces(acl: Element, name: str) -> list[AclRule]:
    aces = list(acl.iterfind(f"{{{ACL_NS}}}aces/{{{ACL_NS}}}ace"))
    numbers = [_ACE_NAME.match(xmlkit.text_of(a, ACL_NS, "name") or "") for a in aces]
    seqs = [int(m.group(1)) for m in numbers if m]
    if len(seqs) != len(aces) or seqs != sorted(set(seqs)):
        seqs = [10 * (i + 1) for i in range(len(aces))]  # not r<seq> in order: keep the device's order
    return [
        _decode_ace(ace, seq, f"acl[{name}]/ace[{xmlkit.text_of(ace, ACL_NS, 'name')}]")
        for ace, seq in zip(aces, seqs, strict=True)
    ]


def _decode_ace(ace: Element, seq: int, path: str) -> AclRule:
    fields: dict[str, Any] = {}
    matches = xmlkit.child(ace, ACL_NS, "matches")
    protocol = "any"
    for node in matches if matches is not None else ():
        kind = xmlkit.local_name(node)
        if kind == "ipv4":
            for leaf in node:
                leaf_name, text = xmlkit.local_name(leaf), (leaf.text or "").strip()
                if leaf_name == "protocol":
                    if int(text) not in _NUM_PROTO:
                        raise BundleError(f"{path}: IP protocol {text} cannot be expressed canonically")
                    protocol = _NUM_PROTO[int(text)]
                elif leaf_name in ("source-ipv4-network", "destination-ipv4-network"):
                    fields[leaf_name.replace("-ipv4-network", "_prefix")] = text
                else:
                    raise BundleError(f"{path}: ipv4 match on {leaf_name} cannot be expressed canonically")
        elif kind in ("tcp", "udp"):
            protocol = kind
            for port in node:
                if xmlkit.local_name(port) != "destination-port":
                    raise BundleError(
                        f"{path}: {kind} match on {xmlkit.local_name(port)} cannot be expressed"
                    )
                fields.update(_decode_port(port, path))
        else:
            raise BundleError(f"{path}: {kind} match cannot be expressed canonically")
    forwarding = ace.findtext(f"{{{ACL_NS}}}actions/{{{ACL_NS}}}forwarding") or ""
    action = {"accept": "permit", "drop": "deny"}.get(forwarding.strip().rpartition(":")[2])
    if action is None:
        raise BundleError(f"{path}: forwarding action {forwarding!r} cannot be expressed canonically")
    return AclRule(seq, action, protocol, **fields)  # type: ignore[arg-type]


def _decode_port(port: Element, path: str) -> dict[str, int]:
    def num(name: str) -> int | None:
        return int_of(port, ACL_NS, name, path)

    op = (xmlkit.text_of(port, ACL_NS, "operator") or "eq").rpartition(":")[2]
    if num("lower-port") is not None:
        return {
            "destination_port_min": num("lower-port") or 0,
            "destination_port_max": num("upper-port") or 0,
        }
    value = num("port")
    if value is None or op not in ("eq", "gte", "lte"):
        raise BundleError(f"{path}: destination-port operator {op} cannot be expressed canonically")
    if op == "eq":
        return {"destination_port_min": value}
    return (
        {"destination_port_min": value, "destination_port_max": 65535}
        if op == "gte"
        else {"destination_port_min": 0, "destination_port_max": value}
    )


def encode_acls(cfg: Element, vm: str, port: str, acls: Iterable[Acl]) -> None:
    root = section(cfg, ACL_NS, "acls")
    point = xmlkit.element(ACL_NS, "interface")
    xmlkit.sub(point, ACL_NS, "interface-id", port)
    sets: dict[str, Element] = {}
    for acl in acls:
        el = xmlkit.sub(root, ACL_NS, "acl")
        xmlkit.sub(el, ACL_NS, "name", f"{vm}.{acl.name}")
        xmlkit.sub(el, ACL_NS, "type", "ipv4-acl-type")
        aces = xmlkit.sub(el, ACL_NS, "aces")
        for rule in acl.rule:
            _encode_ace(xmlkit.sub(aces, ACL_NS, "ace"), rule)
        direction = acl.direction.value
        if direction not in sets:
            sets[direction] = xmlkit.sub(xmlkit.sub(point, ACL_NS, direction), ACL_NS, "acl-sets")
        xmlkit.sub(xmlkit.sub(sets[direction], ACL_NS, "acl-set"), ACL_NS, "name", f"{vm}.{acl.name}")
    xmlkit.sub(root, ACL_NS, "attachment-points").append(point)


def _encode_ace(ace: Element, rule: AclRule) -> None:
    xmlkit.sub(ace, ACL_NS, "name", f"r{rule.sequence}")
    matches = xmlkit.sub(ace, ACL_NS, "matches")
    proto = rule.protocol.value
    if proto != "any" or rule.source_prefix or rule.destination_prefix:
        ipv4 = xmlkit.sub(matches, ACL_NS, "ipv4")
        if proto != "any":
            xmlkit.sub(ipv4, ACL_NS, "protocol", _PROTO_NUM[proto])
        if rule.destination_prefix:
            xmlkit.sub(ipv4, ACL_NS, "destination-ipv4-network", rule.destination_prefix)
        if rule.source_prefix:
            xmlkit.sub(ipv4, ACL_NS, "source-ipv4-network", rule.source_prefix)
    if rule.destination_port_min is not None:
        port = xmlkit.sub(xmlkit.sub(matches, ACL_NS, proto), ACL_NS, "destination-port")
        if rule.destination_port_max is None:
            xmlkit.sub(port, ACL_NS, "operator", "eq")
            xmlkit.sub(port, ACL_NS, "port", rule.destination_port_min)
        else:
            xmlkit.sub(port, ACL_NS, "lower-port", rule.destination_port_min)
            xmlkit.sub(port, ACL_NS, "upper-port", rule.destination_port_max)
    forwarding = xmlkit.sub(xmlkit.sub(ace, ACL_NS, "actions"), ACL_NS, "forwarding")
    forwarding.text = "accept" if rule.action.value == "permit" else "drop"

"""The vendor flavour: the ``acme-fabric`` model (docs/models.md section 3), deliberately unlike IETF's.

Differences handled here: one flat ``filter-line`` list per port (line ``seq`` = list slot * 1,000,000 +
rule sequence, lists numbered in name order from 1, so lines of one direction keep the canonical order and
the rule sequence comes back exactly), rates in kbit/s and bursts in kB (values not a multiple of 1000
raise UnsupportedPolicyError rather than being rounded), zones written ``from>to``, port ranges as
strings, ``owner`` on every entry, DI in ``tables`` (learned) and ``preload`` (seeded, no IPv6 ND).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

from netmig import xmlkit
from netmig.codecs.acme_port import (
    ACME_NS,
    SLOT,
    add_leaves,
    check_port,
    decode_lines,
    encode_port,
    flat_leaves,
    int_or_none,
    parse_dport,
    parse_proto,
)
from netmig.codecs.base import (
    DI_CLASSES,
    Binding,
    DeviceInventory,
    Element,
    LbUse,
    NatMapping,
    PortUse,
    VmContext,
    add_matches,
    config_root,
    di_matches,
    expiry_of,
    operation,
    section,
    sorted_inventory,
    subtree_filter,
    top,
)
from netmig.errors import BundleError, UnsupportedPolicyError
from netmig.model import (
    Acl,
    Action,
    DynamicInfo,
    FirewallRule,
    LbMember,
    NatStatic,
    PolicyKind,
    PortProfile,
    QosProfile,
    StaticPolicies,
    VmBundle,
    VmIdentity,
    from_dict,
    to_dict,
)
from netmig.model.policy import to_enum

__all__ = ["ACME_NS", "SLOT", "AcmeCodec"]

_ZONE_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_PORT_KINDS = frozenset({PolicyKind.ACL, PolicyKind.QOS, PolicyKind.PORT_PROFILE})
# canonical DI kind -> (acme table, {canonical leaf: acme leaf})
_TABLES: dict[PolicyKind, tuple[str, dict[str, str]]] = {
    PolicyKind.MAC_ENTRY: ("l2-fdb", {"age-s": "ttl-s"}),
    PolicyKind.ARP_ENTRY: ("arp", {"expiry-s": "ttl-s"}),
    PolicyKind.ND_ENTRY: ("nd", {"expiry-s": "ttl-s"}),
    PolicyKind.DHCP_BINDING: ("snooping", {"lease-expiry-s": "ttl-s"}),
    PolicyKind.NAT_SESSION: (
        "nat-xlate",
        {
            "protocol": "proto",
            "internal-address": "inside",
            "internal-port": "inside-port",
            "external-address": "outside",
            "external-port": "outside-port",
            "remote-address": "peer",
            "remote-port": "peer-port",
            "expiry-s": "ttl-s",
        },
    ),
    PolicyKind.FIREWALL_SESSION: (
        "conn",
        {
            "protocol": "proto",
            "source-address": "src",
            "source-port": "sport",
            "destination-address": "dst",
            "destination-port": "dport",
            "expiry-s": "ttl-s",
        },
    ),
}
_KEYS = {
    PolicyKind.MAC_ENTRY: ("mac", "vlan"),
    PolicyKind.ARP_ENTRY: ("ip",),
    PolicyKind.ND_ENTRY: ("ip",),
    PolicyKind.DHCP_BINDING: ("mac",),
    PolicyKind.NAT_SESSION: ("proto", "inside", "inside-port"),
    PolicyKind.FIREWALL_SESSION: ("proto", "src", "sport", "dst", "dport"),
}


class AcmeCodec:
    """Codec of ACME fabric devices."""

    name = "acme"
    supported_kinds: frozenset[PolicyKind] = frozenset(PolicyKind) - {PolicyKind.ND_ENTRY}

    def required_modules(self, kinds: Collection[PolicyKind] | None = None) -> frozenset[str]:
        return frozenset({"acme-fabric"})

    def required_features(self, kinds: Collection[PolicyKind] | None = None) -> frozenset[tuple[str, str]]:
        return frozenset()

    def config_filter(self, ctx: VmContext) -> Element:
        flt = subtree_filter()
        root = section(flt, ACME_NS, "acme-fabric")
        xmlkit.sub(xmlkit.sub(root, ACME_NS, "port"), ACME_NS, "name", ctx.port)
        add_matches(
            xmlkit.sub(root, ACME_NS, "nat"),
            ACME_NS,
            "static",
            [("owner", ctx.vm_id), *(("inside", a) for a in ctx.ipv4s)],
        )
        add_matches(xmlkit.sub(root, ACME_NS, "security"), ACME_NS, "policy", [("owner", ctx.vm_id)])
        group = xmlkit.sub(xmlkit.sub(root, ACME_NS, "slb"), ACME_NS, "group")
        xmlkit.sub(group, ACME_NS, "name")
        add_matches(group, ACME_NS, "real", [("owner", ctx.vm_id), *(("ip", a) for a in ctx.ipv4s)])
        preload = xmlkit.sub(root, ACME_NS, "preload")
        for kind, (table, _) in _TABLES.items():
            if kind in self.supported_kinds:
                add_matches(preload, ACME_NS, table, [("owner", ctx.vm_id)])
        return flt

    def state_filter(self, ctx: VmContext) -> Element:
        flt = subtree_filter()
        tables = xmlkit.sub(section(flt, ACME_NS, "acme-fabric"), ACME_NS, "tables")
        macs = [("mac", m) for m in ctx.macs]
        v4 = [("ip", a) for a in ctx.ipv4s]
        matches = {
            "l2-fdb": [*macs, ("port", ctx.port)],
            "arp": [*v4, *macs],
            "nd": [*(("ip", a) for a in ctx.ipv6s), *macs],
            "snooping": [*macs, *v4],
            "nat-xlate": [("inside", a) for a in ctx.ipv4s],
            "conn": [*(("src", a) for a in ctx.ips), *(("dst", a) for a in ctx.ips)],
        }
        for table, leaves in matches.items():
            add_matches(tables, ACME_NS, table, [("owner", ctx.vm_id), *leaves])
        return flt

    # ------------------------------------------------------------------------------- decode

    def decode(self, config: Element, state: Element | None, ctx: VmContext) -> VmBundle:
        cfg = top(config, ACME_NS, "acme-fabric")
        port = _find(cfg, "port", "name", ctx.port)
        tenant, vni, qos, profile = ctx.tenant, None, None, None
        acls: tuple[Acl, ...] = ()
        if port is not None:
            leaf = flat_leaves(port)
            ctx.claims(leaf.get("owner"), True, f"port {ctx.port}")
            tenant = leaf.get("tenant") or tenant
            vni = int_or_none(leaf.get("segment-id"))
            profile = PortProfile(
                int_or_none(leaf.get("vlan")),
                int_or_none(leaf.get("mtu-bytes")),
                int_or_none(leaf.get("mac-limit")),
            )
            police, burst = int_or_none(leaf.get("police-kbps")), int_or_none(leaf.get("burst-kb"))
            qos = QosProfile(
                None if police is None else police * 1000,
                None if burst is None else burst * 1000,
                int_or_none(leaf.get("mark-dscp")),
            )
            acls = decode_lines(xmlkit.children(port, ACME_NS, "filter-line"))
        static = StaticPolicies(
            acl=acls,
            qos=qos,
            port_profile=profile,
            nat_static=tuple(_decode_nat(cfg, ctx)),
            firewall_rule=tuple(_decode_policies(cfg, ctx)),
            lb_member=tuple(_decode_slb(cfg, ctx)),
        )
        state_root = top(state, ACME_NS, "acme-fabric") if state is not None else None
        dynamic: dict[str, tuple[Any, ...]] = {}
        for kind, cls in DI_CLASSES.items():
            found: dict[Any, Any] = {}
            for tree, root in (("preload", cfg), ("tables", state_root)):
                for entry in _di_entries(root, tree, kind, cls, ctx):
                    found[entry.key] = entry
            dynamic[kind.attr] = tuple(found.values())
        identity = VmIdentity(tenant=tenant, segment=ctx.vlan, vni=vni, mac=ctx.macs, ip=ctx.ips)
        return VmBundle(ctx.vm_id, identity, static, DynamicInfo(**dynamic))

    # ------------------------------------------------------------------------------- encode

    def encode(self, bundle: VmBundle, ctx: VmContext) -> Element:
        unsupported = bundle.kinds() - self.supported_kinds
        if unsupported:
            kind = sorted(unsupported)[0]
            raise UnsupportedPolicyError(self.name, kind.value, "acme-fabric has no such table to preload")
        cfg = config_root()
        root = section(cfg, ACME_NS, "acme-fabric")
        vm, st = bundle.vm_id, bundle.static
        if bundle.kinds() & _PORT_KINDS:
            encode_port(root, bundle, ctx)
        if st.nat_static:
            nat = xmlkit.sub(root, ACME_NS, "nat")
            for n in st.nat_static:
                add_leaves(
                    xmlkit.sub(nat, ACME_NS, "static"),
                    (("inside", n.internal_address), ("outside", n.external_address), ("owner", vm)),
                )
        if st.firewall_rule:
            security = xmlkit.sub(root, ACME_NS, "security")
            for rule in st.firewall_rule:
                _encode_policy(xmlkit.sub(security, ACME_NS, "policy"), vm, rule)
        if st.lb_member:
            slb = xmlkit.sub(root, ACME_NS, "slb")
            for m in st.lb_member:
                group = xmlkit.sub(slb, ACME_NS, "group")
                xmlkit.sub(group, ACME_NS, "name", m.pool)
                add_leaves(
                    xmlkit.sub(group, ACME_NS, "real"),
                    (("ip", m.address), ("port", m.port), ("weight", m.weight), ("owner", vm)),
                )
        if bundle.kinds() & frozenset(_TABLES):
            preload = xmlkit.sub(root, ACME_NS, "preload")
            for kind, (table, names) in _TABLES.items():
                for entry in bundle.entries(kind):
                    data = {names.get(k, k): v for k, v in to_dict(entry).items()}
                    for leaf in ("port",):
                        if leaf in data:
                            check_port(str(data[leaf]), kind.value)
                    el = xmlkit.sub(preload, ACME_NS, table)
                    add_leaves(
                        el, [*data.items(), ("owner", vm), ("valid-until", ctx.expires_at(expiry_of(entry)))]
                    )
        return cfg

    def encode_removal(self, bundle: VmBundle, ctx: VmContext, *, current: Element | None = None) -> Element:
        """The VM's entries removed. With ``current`` (the device's data, holding every slb group with all
        its reals: the whole running config, or before the change this codec's ``config_filter`` selection,
        which names every group), an slb group that ``current`` lacks (the edit created it) or whose reals
        are all removed here is removed whole, so the removal leaves no empty group behind."""
        cfg = config_root()
        root = section(cfg, ACME_NS, "acme-fabric")
        st = bundle.static
        if bundle.kinds() & _PORT_KINDS:  # the port's whole configuration is the VM's: reset it to its name
            xmlkit.sub(operation(xmlkit.sub(root, ACME_NS, "port"), "replace"), ACME_NS, "name", ctx.port)
        if st.nat_static:
            nat = xmlkit.sub(root, ACME_NS, "nat")
            for n in st.nat_static:
                xmlkit.sub(
                    operation(xmlkit.sub(nat, ACME_NS, "static"), "remove"),
                    ACME_NS,
                    "inside",
                    n.internal_address,
                )
        if st.firewall_rule:
            security = xmlkit.sub(root, ACME_NS, "security")
            for rule in st.firewall_rule:
                xmlkit.sub(
                    operation(xmlkit.sub(security, ACME_NS, "policy"), "remove"),
                    ACME_NS,
                    "id",
                    f"{bundle.vm_id}.{rule.name}",
                )
        if st.lb_member:
            slb = xmlkit.sub(root, ACME_NS, "slb")
            removed: dict[str, set[tuple[str, int]]] = {}
            for m in st.lb_member:
                removed.setdefault(m.pool, set()).add((m.address, m.port))
            held = _group_reals(current) if current is not None else None
            for pool, reals in removed.items():
                group = xmlkit.sub(slb, ACME_NS, "group")
                if held is not None and (pool not in held or (held[pool] and held[pool] <= reals)):
                    # a group the edit created, or one this removal leaves empty: remove it whole
                    xmlkit.sub(operation(group, "remove"), ACME_NS, "name", pool)
                    continue
                xmlkit.sub(group, ACME_NS, "name", pool)
                for address, port in sorted(reals):
                    add_leaves(operation(xmlkit.sub(group, ACME_NS, "real"), "remove"),
                               (("ip", address), ("port", port)))
        kinds = bundle.kinds() & self.supported_kinds & frozenset(_TABLES)
        if kinds:
            preload = xmlkit.sub(root, ACME_NS, "preload")
            for kind in sorted(kinds):
                table, names = _TABLES[kind]
                for entry in bundle.entries(kind):
                    data = {names.get(k, k): v for k, v in to_dict(entry).items()}
                    el = operation(xmlkit.sub(preload, ACME_NS, table), "remove")
                    add_leaves(el, [(k, data[k]) for k in _KEYS[kind]])
        return cfg

    def inventory(self, config: Element, state: Element | None = None) -> DeviceInventory:
        cfg = top(config, ACME_NS, "acme-fabric")
        ports: list[PortUse] = []
        names: set[str] = set()
        bindings: list[Binding] = []
        nat: list[NatMapping] = []
        lb: list[LbUse] = []
        for port in _all(cfg, "port"):
            f = flat_leaves(port)
            ports.append(
                PortUse(
                    f.get("name", ""),
                    f.get("owner"),
                    f.get("tenant"),
                    int_or_none(f.get("vlan")),
                    int_or_none(f.get("segment-id")),
                )
            )
            names.update(
                f"{f.get('owner', '')}.{line.findtext(xmlkit.qualify(ACME_NS, 'list-name'))}"
                for line in xmlkit.children(port, ACME_NS, "filter-line")
            )
        names.update(flat_leaves(p).get("id", "") for p in _all(cfg, "security", "policy"))
        for s in _all(cfg, "nat", "static"):
            f = flat_leaves(s)
            nat.append(NatMapping(f.get("inside", ""), f.get("outside", ""), f.get("owner")))
        for group in _all(cfg, "slb", "group"):
            for real in xmlkit.children(group, ACME_NS, "real"):
                f = flat_leaves(real)
                lb.append(
                    LbUse(
                        flat_leaves(group).get("name", ""),
                        f.get("ip", ""),
                        int_or_none(f.get("port")) or 0,
                        f.get("owner"),
                    )
                )
        state_root = top(state, ACME_NS, "acme-fabric") if state is not None else None
        for tree, root in (("preload", cfg), ("tables", state_root)):
            for kind, (table, _) in _TABLES.items():
                for el in _all(root, tree, table):
                    f = flat_leaves(el)
                    for leaf in ("mac", "ip", "inside", "src"):
                        if f.get(leaf):
                            bindings.append(Binding(kind, f[leaf].lower(), f.get("owner"), f.get("port", "")))
        return sorted_inventory(ports, names, bindings, nat, lb)


# ------------------------------------------------------------------------------------ helpers


def _all(root: Element | None, *steps: str) -> list[Element]:
    if root is None:
        return []
    return list(root.iterfind("/".join(xmlkit.qualify(ACME_NS, s) for s in steps)))


def _group_reals(data: Element) -> dict[str, set[tuple[str, int]]]:
    """Every slb group in ``data`` (a ``<data>``/``<config>``) with the (ip, port) of its reals."""
    out: dict[str, set[tuple[str, int]]] = {}
    for group in _all(top(data, ACME_NS, "acme-fabric"), "slb", "group"):
        reals = out.setdefault(xmlkit.text_of(group, ACME_NS, "name") or "", set())
        for real in xmlkit.children(group, ACME_NS, "real"):
            f = flat_leaves(real)
            reals.add((f.get("ip", ""), int_or_none(f.get("port")) or 0))
    return out


def _find(root: Element | None, name: str, key: str, value: str) -> Element | None:
    return next((el for el in _all(root, name) if xmlkit.text_of(el, ACME_NS, key) == value), None)


def _encode_policy(el: Element, vm: str, rule: FirewallRule) -> None:
    zones = None
    if rule.from_zone is not None or rule.to_zone is not None:
        if not (
            rule.from_zone
            and rule.to_zone
            and _ZONE_RE.match(rule.from_zone)
            and _ZONE_RE.match(rule.to_zone)
        ):
            raise UnsupportedPolicyError(
                "acme", "firewall-rule", f"rule {rule.name}: zones must both be set and match [A-Za-z0-9_-]+"
            )
        zones = f"{rule.from_zone}>{rule.to_zone}"
    add_leaves(el, (("id", f"{vm}.{rule.name}"), ("order", rule.sequence), ("zones", zones)))
    match = xmlkit.sub(el, ACME_NS, "match")
    add_leaves(
        match,
        (
            ("proto", "ip" if rule.protocol == "any" else rule.protocol.value),
            ("src", rule.source_prefix),
            ("dst", rule.destination_prefix),
            ("dport", rule.destination_port),
        ),
    )
    add_leaves(el, (("then", rule.action.value), ("owner", vm)))


def _decode_policies(cfg: Element | None, ctx: VmContext) -> Iterable[FirewallRule]:
    prefix = f"{ctx.vm_id}."
    for el in _all(cfg, "security", "policy"):
        f = flat_leaves(el)
        pid = f.get("id", "")
        if not ctx.claims(f.get("owner"), pid.startswith(prefix), f"security policy {pid}"):
            continue
        match = xmlkit.child(el, ACME_NS, "match")
        m = flat_leaves(match) if match is not None else {}
        low, high = parse_dport(m.get("dport"))
        if high is not None:
            raise BundleError(
                f"security policy {pid}: port range {m.get('dport')} cannot be expressed canonically"
            )
        src_zone, _, dst_zone = (f.get("zones") or "").partition(">")
        proto = m.get("proto", "ip")
        yield FirewallRule(
            pid[len(prefix) :] if pid.startswith(prefix) else pid,
            to_enum(Action, f.get("then", ""), f"security policy {pid}/then"),
            int_or_none(f.get("order")),
            src_zone or None,
            dst_zone or None,
            parse_proto(proto, f"security policy {pid}"),
            m.get("src"),
            m.get("dst"),
            low,
        )


def _decode_nat(cfg: Element | None, ctx: VmContext) -> Iterable[NatStatic]:
    for el in _all(cfg, "nat", "static"):
        f = flat_leaves(el)
        if ctx.claims(f.get("owner"), f.get("inside") in ctx.ips, f"nat static {f.get('inside')}"):
            yield NatStatic(f.get("inside", ""), f.get("outside", ""))


def _decode_slb(cfg: Element | None, ctx: VmContext) -> Iterable[LbMember]:
    for group in _all(cfg, "slb", "group"):
        name = xmlkit.text_of(group, ACME_NS, "name") or ""
        for real in xmlkit.children(group, ACME_NS, "real"):
            f = flat_leaves(real)
            if ctx.claims(f.get("owner"), f.get("ip") in ctx.ips, f"slb group {name} real {f.get('ip')}"):
                port, weight = int_or_none(f.get("port")) or 0, int_or_none(f.get("weight")) or 1
                yield LbMember(name, f.get("ip", ""), port, weight)


def _di_entries(
    root: Element | None, tree: str, kind: PolicyKind, cls: type[Any], ctx: VmContext
) -> list[Any]:
    table, names = _TABLES[kind]
    back = {v: k for k, v in names.items()}
    out = []
    for el in _all(root, tree, table):
        f = flat_leaves(el)
        owner = f.pop("owner", None)
        f.pop("valid-until", None)
        entry = from_dict(cls, {back.get(k, k): v for k, v in f.items()}, f"acme-fabric/{tree}/{table}")
        if ctx.claims(owner, di_matches(entry, ctx), f"{tree} {table} {entry.key}"):
            out.append(entry)
    return out

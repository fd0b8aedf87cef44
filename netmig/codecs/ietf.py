"""The IETF device flavour: ietf-interfaces, ietf-access-control-list, ietf-nat and netmig-device.

Conventions (docs/models.md section 3): ACL ``A`` of VM ``V`` is ``V.A`` with aces ``r<sequence>``;
static NAT lives in instance 1 with mapping index = the internal IPv4 address as an integer; firewall
rules are ``V.RULE``; DI is read from ``dynamic-info/learned`` and ``seeded`` and written to ``seeded``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

from netmig import xmlkit
from netmig.codecs.base import (
    DI_CLASSES,
    KEY_LEAVES,
    Binding,
    DeviceInventory,
    Element,
    LbUse,
    NatMapping,
    PortUse,
    VmContext,
    add_matches,
    as_tuple,
    config_root,
    di_matches,
    expiry_of,
    int_of,
    operation,
    record_from_xml,
    record_to_xml,
    section,
    sorted_inventory,
    subtree_filter,
    top,
)
from netmig.codecs.ietf_acl import ACL_NS, decode_acls, encode_acls, narrow_acl_filter
from netmig.errors import BundleError
from netmig.model import (
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
)

__all__ = ["ACL_NS", "IF_NS", "NAT_NS", "NMD_NS", "IetfCodec"]

log = logging.getLogger(__name__)

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT_NS = "urn:ietf:params:xml:ns:yang:iana-if-type"
NAT_NS = "urn:ietf:params:xml:ns:yang:ietf-nat"
NMD_NS = "urn:netmig:yang:netmig-device"

_FEATURES: dict[PolicyKind, frozenset[tuple[str, str]]] = {
    PolicyKind.ACL: frozenset(
        {
            ("ietf-access-control-list", f)
            for f in ("match-on-ipv4", "match-on-tcp", "match-on-udp", "interface-attachment")
        }
    ),
    PolicyKind.NAT_STATIC: frozenset({("ietf-nat", "basic-nat44")}),
    PolicyKind.FIREWALL_RULE: frozenset({("netmig-device", "firewall")}),
    PolicyKind.FIREWALL_SESSION: frozenset({("netmig-device", "firewall")}),
    PolicyKind.LB_MEMBER: frozenset({("netmig-device", "load-balancer")}),
    PolicyKind.NAT_SESSION: frozenset({("netmig-device", "nat")}),
    PolicyKind.ND_ENTRY: frozenset({("netmig-device", "nd-seeding")}),
}
_PORT_LEAVES = ("vm-id", "tenant", "access-vlan", "vni", "mtu", "max-macs", "qos")
_SEED_META = ("vm-id", "expires-at", "origin")


def _nat_index(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


class IetfCodec:
    """Codec of the IETF flavour (devices ietf-leaf, ietf-spine, ietf-fw)."""

    name = "ietf"
    supported_kinds: frozenset[PolicyKind] = frozenset(PolicyKind)

    def required_modules(self, kinds: Collection[PolicyKind] | None = None) -> frozenset[str]:
        wanted = self.supported_kinds if kinds is None else frozenset(kinds)
        modules = {"ietf-interfaces", "iana-if-type", "netmig-device"}
        if PolicyKind.ACL in wanted:
            modules.add("ietf-access-control-list")
        if PolicyKind.NAT_STATIC in wanted:
            modules.add("ietf-nat")
        return frozenset(modules)

    def required_features(self, kinds: Collection[PolicyKind] | None = None) -> frozenset[tuple[str, str]]:
        wanted = self.supported_kinds if kinds is None else frozenset(kinds)
        return frozenset().union(*(_FEATURES.get(k, frozenset()) for k in wanted))

    # ------------------------------------------------------------------------------ filters

    def config_filter(self, ctx: VmContext) -> Element:
        flt = subtree_filter()
        iface = xmlkit.sub(section(flt, IF_NS, "interfaces"), IF_NS, "interface")
        xmlkit.sub(iface, IF_NS, "name", ctx.port)
        section(flt, ACL_NS, "acls")  # ACL names are known only from the attachment: take the list
        if ctx.ipv4s:
            inst = xmlkit.sub(
                xmlkit.sub(section(flt, NAT_NS, "nat"), NAT_NS, "instances"), NAT_NS, "instance"
            )
            xmlkit.sub(inst, NAT_NS, "id", 1)
            add_matches(
                xmlkit.sub(inst, NAT_NS, "mapping-table"),
                NAT_NS,
                "mapping-entry",
                (("internal-src-address", f"{ip}/32") for ip in ctx.ipv4s),
            )
        add_matches(section(flt, NMD_NS, "firewall"), NMD_NS, "rule", [("vm-id", ctx.vm_id)])
        pool = xmlkit.sub(section(flt, NMD_NS, "load-balancer"), NMD_NS, "pool")
        xmlkit.sub(pool, NMD_NS, "name")
        add_matches(pool, NMD_NS, "member", [("vm-id", ctx.vm_id), *(("address", a) for a in ctx.ipv4s)])
        seeded = xmlkit.sub(section(flt, NMD_NS, "dynamic-info"), NMD_NS, "seeded")
        for kind in DI_CLASSES:
            add_matches(seeded, NMD_NS, kind.value, [("vm-id", ctx.vm_id)])
        return flt

    def narrow_config_filter(self, flt: Element, answer: Callable[[Element], Element]) -> Element:
        """For local answers (netmig.bulkread): instead of every ACL, the port's attachment point and the
        ACLs it names (:func:`~netmig.codecs.ietf_acl.narrow_acl_filter`); the port is the filter's."""
        names = flt.findall(f"{{{IF_NS}}}interfaces/{{{IF_NS}}}interface/{{{IF_NS}}}name")
        if len(names) != 1:
            return flt
        return narrow_acl_filter(flt, (names[0].text or "").strip(), answer)

    def state_filter(self, ctx: VmContext) -> Element:
        flt = subtree_filter()
        learned = xmlkit.sub(section(flt, NMD_NS, "dynamic-info"), NMD_NS, "learned")
        for kind, leaves in _di_match_leaves(ctx).items():
            add_matches(learned, NMD_NS, kind.value, [("vm-id", ctx.vm_id), *leaves])
        return flt

    # ------------------------------------------------------------------------------- decode

    def decode(self, config: Element, state: Element | None, ctx: VmContext) -> VmBundle:
        iface = _interface(config, ctx.port)
        tenant, vni = ctx.tenant, None
        qos = profile = None
        if iface is not None:
            path = f"interface[{ctx.port}]"
            ctx.claims(xmlkit.text_of(iface, NMD_NS, "vm-id"), True, path)
            tenant = xmlkit.text_of(iface, NMD_NS, "tenant") or tenant
            vni = int_of(iface, NMD_NS, "vni", path)
            profile = PortProfile(
                int_of(iface, NMD_NS, "access-vlan", path),
                int_of(iface, NMD_NS, "mtu", path),
                int_of(iface, NMD_NS, "max-macs", path),
            )
            q = xmlkit.child(iface, NMD_NS, "qos")
            if q is not None:
                qos = record_from_xml(q, NMD_NS, QosProfile, f"{path}/qos")
        identity = VmIdentity(tenant=tenant, segment=ctx.vlan, vni=vni, mac=ctx.macs, ip=ctx.ips)
        static = StaticPolicies(
            acl=tuple(decode_acls(config, ctx)),
            qos=qos,
            port_profile=profile,
            nat_static=tuple(_decode_nat(config, ctx)),
            firewall_rule=tuple(_decode_rules(config, ctx)),
            lb_member=tuple(_decode_lb(config, ctx)),
        )
        dynamic: dict[str, tuple[Any, ...]] = {}
        for kind, cls in DI_CLASSES.items():
            found: dict[Any, Any] = {}
            for tree, root in (("seeded", config), ("learned", state)):
                for entry in _di_entries(root, tree, kind, cls, ctx):
                    found[entry.key] = entry  # learned state wins over the seed it came from
            dynamic[kind.attr] = tuple(found.values())
        return VmBundle(ctx.vm_id, identity, static, DynamicInfo(**dynamic))

    # ------------------------------------------------------------------------------- encode

    def encode(self, bundle: VmBundle, ctx: VmContext) -> Element:
        cfg = config_root()
        vm, st = bundle.vm_id, bundle.static
        if ctx.port:  # only the bridge has a port for the VM; elsewhere no interface is touched
            iface = _iface_el(cfg, ctx.port)
            xmlkit.sub(iface, NMD_NS, "vm-id", vm)
            tenant = bundle.identity.tenant or ctx.tenant
            if tenant is not None:
                xmlkit.sub(iface, NMD_NS, "tenant", tenant)
            pp = st.port_profile or PortProfile()
            for leaf, value in (
                ("access-vlan", pp.vlan),
                ("vni", bundle.identity.vni),
                ("mtu", pp.mtu),
                ("max-macs", pp.max_macs),
            ):
                if value is not None:
                    xmlkit.sub(iface, NMD_NS, leaf, value)
            if st.qos is not None:
                record_to_xml(iface, NMD_NS, "qos", st.qos)
        if st.acl:
            encode_acls(cfg, vm, ctx.port, st.acl)
        if st.nat_static:
            table = _nat_table(cfg)
            for nat in st.nat_static:
                entry = xmlkit.sub(table, NAT_NS, "mapping-entry")
                xmlkit.sub(entry, NAT_NS, "index", _nat_index(nat.internal_address))
                xmlkit.sub(entry, NAT_NS, "type", "static")
                xmlkit.sub(entry, NAT_NS, "internal-src-address", f"{nat.internal_address}/32")
                xmlkit.sub(entry, NAT_NS, "external-src-address", f"{nat.external_address}/32")
        if st.firewall_rule:
            fw = section(cfg, NMD_NS, "firewall")
            for rule in st.firewall_rule:
                el = xmlkit.sub(fw, NMD_NS, "rule")
                xmlkit.sub(el, NMD_NS, "name", f"{vm}.{rule.name}")
                xmlkit.sub(el, NMD_NS, "vm-id", vm)
                record_to_xml(el, NMD_NS, "x", rule, skip={"name"})
                _hoist(el)
        if st.lb_member:
            lb = section(cfg, NMD_NS, "load-balancer")
            for m in st.lb_member:
                pool = xmlkit.sub(lb, NMD_NS, "pool")
                xmlkit.sub(pool, NMD_NS, "name", m.pool)
                member = xmlkit.sub(pool, NMD_NS, "member")
                values: tuple[tuple[str, str | int], ...] = (
                    ("address", m.address),
                    ("port", m.port),
                    ("weight", m.weight),
                    ("vm-id", vm),
                )
                for leaf, leaf_value in values:
                    xmlkit.sub(member, NMD_NS, leaf, leaf_value)
        if bundle.kinds() & frozenset(DI_CLASSES):
            seeded = xmlkit.sub(section(cfg, NMD_NS, "dynamic-info"), NMD_NS, "seeded")
            for kind in DI_CLASSES:
                for entry in bundle.entries(kind):
                    el = record_to_xml(seeded, NMD_NS, kind.value, entry)
                    xmlkit.sub(el, NMD_NS, "vm-id", vm)
                    xmlkit.sub(el, NMD_NS, "expires-at", ctx.expires_at(expiry_of(entry)))
        return cfg

    def encode_removal(self, bundle: VmBundle, ctx: VmContext, *, current: Element | None = None) -> Element:
        cfg = config_root()
        vm, st = bundle.vm_id, bundle.static
        if ctx.port:
            iface = _iface_el(cfg, ctx.port, with_type=False)
            for leaf in _PORT_LEAVES:
                operation(xmlkit.sub(iface, NMD_NS, leaf), "remove")
        if st.acl:
            acls = section(cfg, ACL_NS, "acls")
            for acl in st.acl:
                gone = operation(xmlkit.sub(acls, ACL_NS, "acl"), "remove")
                xmlkit.sub(gone, ACL_NS, "name", f"{vm}.{acl.name}")
            point = xmlkit.sub(xmlkit.sub(acls, ACL_NS, "attachment-points"), ACL_NS, "interface")
            xmlkit.sub(point, ACL_NS, "interface-id", ctx.port)
            for acl in st.acl:
                sets = xmlkit.sub(xmlkit.sub(point, ACL_NS, acl.direction.value), ACL_NS, "acl-sets")
                operation(xmlkit.sub(sets, ACL_NS, "acl-set"), "remove")
                xmlkit.sub(sets[-1], ACL_NS, "name", f"{vm}.{acl.name}")
        if st.nat_static:
            real = _nat_indexes(current) if current is not None else {}
            table = _nat_table(cfg)
            for nat in st.nat_static:
                entry = operation(xmlkit.sub(table, NAT_NS, "mapping-entry"), "remove")
                index = real.get(nat.internal_address, _nat_index(nat.internal_address))
                xmlkit.sub(entry, NAT_NS, "index", index)
        if st.firewall_rule:
            fw = section(cfg, NMD_NS, "firewall")
            for rule in st.firewall_rule:
                xmlkit.sub(
                    operation(xmlkit.sub(fw, NMD_NS, "rule"), "remove"), NMD_NS, "name", f"{vm}.{rule.name}"
                )
        if st.lb_member:
            lb = section(cfg, NMD_NS, "load-balancer")
            for m in st.lb_member:
                pool = xmlkit.sub(lb, NMD_NS, "pool")
                xmlkit.sub(pool, NMD_NS, "name", m.pool)
                member = operation(xmlkit.sub(pool, NMD_NS, "member"), "remove")
                xmlkit.sub(member, NMD_NS, "address", m.address)
                xmlkit.sub(member, NMD_NS, "port", m.port)
        if bundle.kinds() & frozenset(DI_CLASSES):
            seeded = xmlkit.sub(section(cfg, NMD_NS, "dynamic-info"), NMD_NS, "seeded")
            for kind in DI_CLASSES:
                for entry in bundle.entries(kind):
                    el = operation(xmlkit.sub(seeded, NMD_NS, kind.value), "remove")
                    for leaf, value in zip(KEY_LEAVES[kind], as_tuple(entry.key), strict=True):
                        xmlkit.sub(el, NMD_NS, leaf, value)
        return cfg

    # ---------------------------------------------------------------------------- inventory

    def inventory(self, config: Element, state: Element | None = None) -> DeviceInventory:
        ports: list[PortUse] = []
        names: set[str] = set()
        bindings: list[Binding] = []
        nat: list[NatMapping] = []
        lb: list[LbUse] = []
        ifs = top(config, IF_NS, "interfaces")
        for iface in xmlkit.children(ifs, IF_NS, "interface") if ifs is not None else ():
            ports.append(
                PortUse(
                    xmlkit.text_of(iface, IF_NS, "name") or "",
                    xmlkit.text_of(iface, NMD_NS, "vm-id"),
                    xmlkit.text_of(iface, NMD_NS, "tenant"),
                    int_of(iface, NMD_NS, "access-vlan", "if"),
                    int_of(iface, NMD_NS, "vni", "if"),
                )
            )
        acls = top(config, ACL_NS, "acls")
        names.update(
            xmlkit.text_of(a, ACL_NS, "name") or ""
            for a in (xmlkit.children(acls, ACL_NS, "acl") if acls is not None else ())
        )
        fw = top(config, NMD_NS, "firewall")
        names.update(
            xmlkit.text_of(r, NMD_NS, "name") or ""
            for r in (xmlkit.children(fw, NMD_NS, "rule") if fw is not None else ())
        )
        for entry in _mapping_entries(config):
            inside, outside = (
                _host(xmlkit.text_of(entry, NAT_NS, n))
                for n in ("internal-src-address", "external-src-address")
            )
            if inside and outside:
                nat.append(NatMapping(inside, outside))
        lbs = top(config, NMD_NS, "load-balancer")
        for pool in xmlkit.children(lbs, NMD_NS, "pool") if lbs is not None else ():
            for m in xmlkit.children(pool, NMD_NS, "member"):
                lb.append(
                    LbUse(
                        xmlkit.text_of(pool, NMD_NS, "name") or "",
                        xmlkit.text_of(m, NMD_NS, "address") or "",
                        int_of(m, NMD_NS, "port", "lb") or 0,
                        xmlkit.text_of(m, NMD_NS, "vm-id"),
                    )
                )
        for tree, root in (("seeded", config), ("learned", state)):
            for kind in DI_CLASSES:
                for el in _di_elements(root, tree, kind):
                    owner = xmlkit.text_of(el, NMD_NS, "vm-id")
                    detail = xmlkit.text_of(el, NMD_NS, "port") or ""
                    for leaf in ("mac", "ip", "internal-address", "source-address"):
                        value = xmlkit.text_of(el, NMD_NS, leaf)
                        if value:
                            bindings.append(Binding(kind, value.lower(), owner, detail))
        return sorted_inventory(ports, names, bindings, nat, lb)


# ------------------------------------------------------------------------------------ helpers


def _di_match_leaves(ctx: VmContext) -> dict[PolicyKind, list[tuple[str, str]]]:
    macs = [("mac", m) for m in ctx.macs]
    v4 = list(ctx.ipv4s)
    return {
        PolicyKind.MAC_ENTRY: [*macs, ("port", ctx.port)],
        PolicyKind.ARP_ENTRY: [*(("ip", a) for a in v4), *macs],
        PolicyKind.ND_ENTRY: [*(("ip", a) for a in ctx.ipv6s), *macs],
        PolicyKind.DHCP_BINDING: [*macs, *(("ip", a) for a in v4)],
        PolicyKind.NAT_SESSION: [("internal-address", a) for a in v4],
        PolicyKind.FIREWALL_SESSION: [
            *(("source-address", a) for a in ctx.ips),
            *(("destination-address", a) for a in ctx.ips),
        ],
    }


def _hoist(el: Element) -> None:
    """Move the children of the placeholder ``<x>`` record element up into ``el``."""
    holder = el[-1]
    for node in list(holder):
        el.append(node)
    el.remove(holder)


def _host(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    address, _, length = prefix.partition("/")
    return address if length in ("", "32") else None


def _interface(config: Element, port: str) -> Element | None:
    ifs = top(config, IF_NS, "interfaces")
    for iface in xmlkit.children(ifs, IF_NS, "interface") if ifs is not None else ():
        if xmlkit.text_of(iface, IF_NS, "name") == port:
            return iface
    return None


def _iface_el(cfg: Element, port: str, *, with_type: bool = True) -> Element:
    iface = xmlkit.sub(section(cfg, IF_NS, "interfaces", {"nmd": NMD_NS}), IF_NS, "interface")
    xmlkit.sub(iface, IF_NS, "name", port)
    if with_type:
        iface.append(xmlkit.element(IF_NS, "type", "ianaift:ethernetCsmacd", nsmap={"ianaift": IANAIFT_NS}))
    return iface


def _nat_table(cfg: Element) -> Element:
    inst = xmlkit.sub(xmlkit.sub(section(cfg, NAT_NS, "nat"), NAT_NS, "instances"), NAT_NS, "instance")
    xmlkit.sub(inst, NAT_NS, "id", 1)
    return xmlkit.sub(inst, NAT_NS, "mapping-table")


def _mapping_entries(config: Element) -> Iterable[Element]:
    nat = top(config, NAT_NS, "nat")
    if nat is None:
        return []
    steps = ("instances", "instance", "mapping-table", "mapping-entry")
    return nat.iterfind("/".join(xmlkit.qualify(NAT_NS, s) for s in steps))


def _nat_indexes(config: Element) -> dict[str, int]:
    out = {}
    for entry in _mapping_entries(config):
        inside = _host(xmlkit.text_of(entry, NAT_NS, "internal-src-address"))
        index = int_of(entry, NAT_NS, "index", "mapping-entry")
        if inside is not None and index is not None:
            out[inside] = index
    return out


def _di_elements(root: Element | None, tree: str, kind: PolicyKind) -> Iterable[Element]:
    di = top(root, NMD_NS, "dynamic-info") if root is not None else None
    part = xmlkit.child(di, NMD_NS, tree) if di is not None else None
    return xmlkit.children(part, NMD_NS, kind.value) if part is not None else []


def _di_entries(
    root: Element | None, tree: str, kind: PolicyKind, cls: type[Any], ctx: VmContext
) -> list[Any]:
    out = []
    for el in _di_elements(root, tree, kind):
        entry = record_from_xml(el, NMD_NS, cls, f"dynamic-info/{tree}", ignore=_SEED_META)
        if ctx.claims(
            xmlkit.text_of(el, NMD_NS, "vm-id"), di_matches(entry, ctx), f"{tree} {kind.value} {entry.key}"
        ):
            out.append(entry)
    return out


def _decode_nat(config: Element, ctx: VmContext) -> Iterable[NatStatic]:
    for entry in _mapping_entries(config):
        inside = _host(xmlkit.text_of(entry, NAT_NS, "internal-src-address"))
        if inside is None or inside not in ctx.ips:
            continue
        index = xmlkit.text_of(entry, NAT_NS, "index")
        kind = xmlkit.text_of(entry, NAT_NS, "type") or "static"
        outside = _host(xmlkit.text_of(entry, NAT_NS, "external-src-address"))
        ports = [
            n
            for n in ("transport-protocol", "internal-src-port", "external-src-port")
            if xmlkit.child(entry, NAT_NS, n) is not None
        ]
        if kind != "static" or outside is None or ports:
            raise BundleError(f"nat mapping-entry[{index}] for {inside} is not a 1:1 static /32 mapping")
        yield NatStatic(inside, outside)


def _decode_rules(config: Element, ctx: VmContext) -> Iterable[FirewallRule]:
    fw = top(config, NMD_NS, "firewall")
    prefix = f"{ctx.vm_id}."
    for el in xmlkit.children(fw, NMD_NS, "rule") if fw is not None else ():
        name = xmlkit.text_of(el, NMD_NS, "name") or ""
        if ctx.claims(xmlkit.text_of(el, NMD_NS, "vm-id"), name.startswith(prefix), f"firewall rule {name}"):
            short = name[len(prefix) :] if name.startswith(prefix) else name
            yield record_from_xml(
                el,
                NMD_NS,
                FirewallRule,
                f"firewall/rule[{name}]",
                ignore=("name", "vm-id"),
                extra={"name": short},
            )


def _decode_lb(config: Element, ctx: VmContext) -> Iterable[LbMember]:
    lbs = top(config, NMD_NS, "load-balancer")
    for pool in xmlkit.children(lbs, NMD_NS, "pool") if lbs is not None else ():
        name = xmlkit.text_of(pool, NMD_NS, "name") or ""
        for m in xmlkit.children(pool, NMD_NS, "member"):
            address = xmlkit.text_of(m, NMD_NS, "address") or ""
            if ctx.claims(
                xmlkit.text_of(m, NMD_NS, "vm-id"), address in ctx.ips, f"lb pool {name} member {address}"
            ):
                yield LbMember(
                    name,
                    address,
                    int_of(m, NMD_NS, "port", "member") or 0,
                    int_of(m, NMD_NS, "weight", "member") or 1,
                )

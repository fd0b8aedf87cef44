"""Device profiles: the modules and features a device loads, what it learns, its default config.

Two flavours (docs/models.md section 3): ``ietf-*`` devices speak ietf-interfaces, ietf-access-control-list,
ietf-nat (firewall only) and netmig-device; ``acme-*`` devices speak the single vendor module acme-fabric.
A profile also knows where its learned tables live (netmig-device ``dynamic-info/learned`` or acme-fabric
``tables``) and where committed seeded DI lives (``dynamic-info/seeded`` or ``preload``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lxml import etree

from netconf_sim.fabricfile import VmSeed
from netconf_sim.learned import LearnedEntry, LearnedTables, TableShape, parse_seeded
from netconf_sim.learnedselect import learned_selection
from netconf_sim.xml import Element, data_root

__all__ = [
    "ACME_NS",
    "IANA_IF_NS",
    "IF_NS",
    "NMD_NS",
    "PROFILES",
    "Profile",
    "populate",
]

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANA_IF_NS = "urn:ietf:params:xml:ns:yang:iana-if-type"
NMD_NS = "urn:netmig:yang:netmig-device"
ACME_NS = "urn:acme:yang:acme-fabric"

_IETF_SHAPES = {kind: TableShape(kind, "age-s" if kind == "mac-entry" else
                                 ("lease-expiry-s" if kind == "dhcp-binding" else "expiry-s"),
                                 "vm-id", counts_down=kind != "mac-entry", origin_field="origin")
                for kind in ("mac-entry", "arp-entry", "nd-entry", "dhcp-binding", "nat-session",
                             "firewall-session")}
_IETF_SEEDED_SHAPES = {kind: TableShape(s.list_name, s.time_field, "vm-id", s.counts_down)
                       for kind, s in _IETF_SHAPES.items()}
_ACME_RENAMES: dict[str, dict[str, str]] = {
    "mac-entry": {}, "arp-entry": {}, "nd-entry": {}, "dhcp-binding": {},
    "nat-session": {"protocol": "proto", "internal-address": "inside", "internal-port": "inside-port",
                    "external-address": "outside", "external-port": "outside-port",
                    "remote-address": "peer", "remote-port": "peer-port"},
    "firewall-session": {"protocol": "proto", "source-address": "src", "source-port": "sport",
                         "destination-address": "dst", "destination-port": "dport"},
}
_ACME_LISTS = {"mac-entry": "l2-fdb", "arp-entry": "arp", "nd-entry": "nd", "dhcp-binding": "snooping",
               "nat-session": "nat-xlate", "firewall-session": "conn"}
_ACME_SHAPES = {kind: TableShape(name, "ttl-s", "owner", renames=_ACME_RENAMES[kind])
                for kind, name in _ACME_LISTS.items()}
_ACME_PRELOAD_SHAPES = {kind: TableShape(name, "ttl-s", "owner", renames=_ACME_RENAMES[kind],
                                         expires_field="valid-until")
                        for kind, name in _ACME_LISTS.items() if kind != "nd-entry"}

_ACL_FEATURES = ("match-on-ipv4", "match-on-tcp", "match-on-udp", "match-on-icmp", "ipv4",
                 "interface-attachment")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a device of this kind is: modules + features, learned kinds, native shapes, default config."""

    name: str
    flavour: str                        # "ietf" or "acme"
    role: str                           # leaf, spine, fw, nat
    modules: tuple[str, ...]
    features: Mapping[str, tuple[str, ...]]
    learns: tuple[str, ...]
    shapes: Mapping[str, TableShape] = field(default_factory=dict)
    seeded_shapes: Mapping[str, TableShape] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        """Namespace of the module holding the learned and seeded DI trees."""
        return NMD_NS if self.flavour == "ietf" else ACME_NS

    def merged_features(self, overrides: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """The profile's features with a fabric file's per-module overrides applied."""
        out = dict(self.features)
        out.update(overrides)
        return out

    def new_tables(self) -> LearnedTables:
        """Empty learned tables for one device of this profile."""
        return LearnedTables(self.learns, self.shapes)

    def default_config(self, ports: tuple[str, ...]) -> Element:
        """Initial configuration when the fabric file gives none: one interface/port per port name."""
        data = data_root()
        if not ports:
            return data
        if self.flavour == "ietf":
            interfaces = etree.SubElement(data, f"{{{IF_NS}}}interfaces", nsmap={None: IF_NS})
            for port in ports:
                iface = etree.SubElement(interfaces, f"{{{IF_NS}}}interface")
                etree.SubElement(iface, f"{{{IF_NS}}}name").text = port
                kind = etree.SubElement(iface, f"{{{IF_NS}}}type", nsmap={"ianaift": IANA_IF_NS})
                kind.text = "ianaift:ethernetCsmacd"
                etree.SubElement(iface, f"{{{IF_NS}}}enabled").text = "true"
        else:
            root = etree.SubElement(data, f"{{{ACME_NS}}}acme-fabric", nsmap={None: ACME_NS})
            for port in ports:
                item = etree.SubElement(root, f"{{{ACME_NS}}}port")
                etree.SubElement(item, f"{{{ACME_NS}}}name").text = port
        return data

    def operational_hook(self, tables: LearnedTables) -> Callable[[Element, Element | None], None]:
        """The engine's operational hook: append this device's learned tables to a ``<data>`` tree (with
        a subtree ``<filter>``, only the entries it may select)."""
        top, sub = ("dynamic-info", "learned") if self.flavour == "ietf" else ("acme-fabric", "tables")
        ns = self.namespace

        def hook(data: Element, filter: Element | None = None) -> None:
            holder = etree.Element(f"{{{ns}}}{sub}")
            select = None if filter is None else learned_selection(filter, ns, (top, sub), tables)
            tables.render(holder, ns, select)
            if len(holder) == 0:
                return
            parent = data.find(f"{{{ns}}}{top}")
            if parent is None:
                parent = etree.SubElement(data, f"{{{ns}}}{top}", nsmap={None: ns})
            parent.append(holder)

        return hook

    def commit_hook(self, tables: LearnedTables,
                    running_now: Callable[[], Element]) -> Callable[[Element, list[str] | None], None]:
        """The engine's on_commit callback: merge committed seeded DI into the learned tables (parsed
        again only when the commit changed the seeded container, or may have: ``changed`` None; and
        only when the tables are next read, from the running tree of then: ``running_now()``)."""
        top, sub = ("dynamic-info", "seeded") if self.flavour == "ietf" else ("acme-fabric", "preload")
        ns = self.namespace

        def load() -> list[LearnedEntry]:
            container = running_now().find(f"{{{ns}}}{top}/{{{ns}}}{sub}")
            return parse_seeded(container, ns, self.seeded_shapes, self.learns)

        def hook(running: Element, changed: list[str] | None = None) -> None:
            if changed is not None and not _touches(changed, top, sub):
                return
            tables.set_seeded_source(load)

        return hook


def _touches(paths: list[str], top: str, sub: str) -> bool:
    """Whether any of an edit's changed paths (``/prefix:top/prefix:sub[...]/...``; ``/`` for a whole
    datastore) is the container ``top/sub``, inside it, or one of its ancestors."""
    def local(step: str) -> str:
        return step.split("[", 1)[0].rsplit(":", 1)[-1]

    for path in paths:
        steps = path.lstrip("/").split("/", 2)
        if not steps[0]:
            return True  # "/": the whole datastore
        if local(steps[0]) != top:
            continue
        if len(steps) == 1 or local(steps[1]) == sub:
            return True
    return False


def populate(tables: LearnedTables, vm: VmSeed) -> None:
    """Fill ``tables`` with the entries a device would have learned from ``vm``'s traffic."""
    v4 = [ip for ip in vm.ips if ":" not in ip]
    v6 = [ip for ip in vm.ips if ":" in ip]
    vlan = vm.vlan or 1
    port = vm.port or "uplink"
    mac0 = vm.macs[0] if vm.macs else None

    def count(kind: str, natural: int) -> int:
        if kind not in tables.kinds:
            return 0
        wanted = vm.learned.get(kind)
        return natural if wanted is None else min(wanted, natural)

    for i in range(count("mac-entry", len(vm.macs))):
        tables.add("mac-entry", vm_id=vm.vm_id, age_s=15 + 10 * i, mac=vm.macs[i], vlan=vlan, port=port)
    for i in range(count("arp-entry", len(v4) if mac0 else 0)):
        tables.add("arp-entry", vm_id=vm.vm_id, age_s=60 + 10 * i, ip=v4[i], mac=mac0 or "")
    for i in range(count("nd-entry", len(v6) if mac0 else 0)):
        tables.add("nd-entry", vm_id=vm.vm_id, age_s=60 + 10 * i, ip=v6[i], mac=mac0 or "")
    for i in range(count("dhcp-binding", min(len(vm.macs), len(v4)))):
        tables.add("dhcp-binding", vm_id=vm.vm_id, age_s=3600, mac=vm.macs[i], ip=v4[i], vlan=vlan, port=port)
    if v4:
        outside = vm.nat_address or v4[0]
        sessions = vm.learned.get("nat-session", 0) if "nat-session" in tables.kinds else 0
        for i in range(sessions):
            tables.add("nat-session", vm_id=vm.vm_id, age_s=20 + 5 * i, protocol="tcp",
                       internal_address=v4[0], internal_port=40000 + i, external_address=outside,
                       external_port=20000 + i, remote_address=f"198.51.100.{10 + i % 200}", remote_port=443)
        conns = vm.learned.get("firewall-session", 0) if "firewall-session" in tables.kinds else 0
        for i in range(conns):
            tables.add("firewall-session", vm_id=vm.vm_id, age_s=10 + 5 * i, protocol="tcp",
                       source_address=f"198.51.100.{20 + i % 200}", source_port=50000 + i,
                       destination_address=v4[0], destination_port=443, state="established")


def _ietf(name: str, role: str, nmd_features: tuple[str, ...], learns: tuple[str, ...],
          nat: bool = False) -> Profile:
    modules = ["ietf-interfaces", "iana-if-type", "ietf-access-control-list", "netmig-device"]
    features: dict[str, tuple[str, ...]] = {"ietf-access-control-list": _ACL_FEATURES,
                                            "netmig-device": nmd_features}
    if nat:
        modules.append("ietf-nat")
        features["ietf-nat"] = ("basic-nat44", "napt44")
    seeded = {k: v for k, v in _IETF_SEEDED_SHAPES.items()
              if (k != "nd-entry" or "nd-seeding" in nmd_features)
              and (k != "nat-session" or "nat" in nmd_features)
              and (k != "firewall-session" or "firewall" in nmd_features)}
    return Profile(name, "ietf", role, tuple(modules), features, learns,
                   {k: _IETF_SHAPES[k] for k in learns}, seeded)


def _acme(name: str, role: str, learns: tuple[str, ...]) -> Profile:
    return Profile(name, "acme", role, ("acme-fabric",), {}, learns,
                   {k: _ACME_SHAPES[k] for k in learns}, _ACME_PRELOAD_SHAPES)


_L2 = ("mac-entry", "arp-entry", "nd-entry", "dhcp-binding")
PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        _ietf("ietf-leaf", "leaf", ("nd-seeding",), _L2),
        _ietf("ietf-spine", "spine", ("nd-seeding",), ("mac-entry", "arp-entry", "nd-entry")),
        _ietf("ietf-fw", "fw", ("firewall", "load-balancer", "nat", "nd-seeding"),
              ("arp-entry", "nat-session", "firewall-session"), nat=True),
        _acme("acme-leaf", "leaf", _L2),
        _acme("acme-spine", "spine", ("mac-entry", "arp-entry", "nd-entry")),
        _acme("acme-fw", "fw", ("arp-entry", "firewall-session")),
        _acme("acme-nat", "nat", ("arp-entry", "nat-session")),
    )
}

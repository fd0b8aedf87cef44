"""Scope (issue 6, Security): a migration of VM X touches only X's entries.

(a) a crafted source device (it ignores netmig's filters and answers get/get-config with everything it
    holds) reports another VM's entries next to X's (X's port tagged with
    another vm-id, a firewall rule named for X but tagged with another VM, a load-balancer member on X's
    address owned by another VM, a learned MAC entry of X's MAC owned by another VM): netmig refuses,
    naming the entry and its owner, and no device changes. Without such entries the same crafted device
    migrates fine (the refusal comes from the entries, not from the unfiltered replies).
(b) a successful migration of vm-web-01 (two-site, to the acme destinations): every node created or
    changed on a destination's running config lies in an entry whose owner is vm-web-01, or in the VM's
    destination port; nothing is deleted. The diff is by schema, list entries by key
    (netconf_sim.nacm.changes), read over NETCONF before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from devicelab import ALL_DEVICES, DeviceLab
from lxml import etree
from lxml.builder import ElementMaker
from netconf_sim.nacm import changes

from netmig.api import migrate
from netmig.errors import NetmigError
from netmig.model import PolicyKind
from netmig.options import MigrationOptions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "two-site"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
NMD = "urn:netmig:yang:netmig-device"
ACME = "urn:acme:yang:acme-fabric"
ALL = ALL_DEVICES
DESTINATIONS = ("b-leaf1", "b-spine1", "b-fw1", "b-nat1")
OPTIONS = MigrationOptions(allow_drop=frozenset({PolicyKind.ND_ENTRY}))
NCX, IFX, NMDX = (ElementMaker(namespace=ns, nsmap={None: ns}) for ns in (NC, IF_NS, NMD))
VM, MAC = "vm-web-01", "52:54:00:10:00:01"


class Lab(DeviceLab):
    """The example fabric plus helpers to craft hostile sources."""

    def __init__(self, fabric: Any, nc_connect: Callable[..., Any]) -> None:
        super().__init__(fabric, EXAMPLE, nc_connect)

    def commit(self, device: str, *children: Any) -> None:
        mgr = self.mgr(device)
        mgr.edit_config(target="candidate", config=NCX.config(*children))
        mgr.commit()

    def migrate(self) -> Any:
        return migrate(VM, source="host-a1", destination="host-b3", topology=self.topology,
                       environ=self.environ, options=OPTIONS)


class Unfiltered:
    """Fault hook of a crafted device: get and get-config replies carry the whole datastore, unfiltered."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.inner = device.runtime.faults

    async def before_rpc(self, ctx: Any) -> Any:
        return await self.inner.before_rpc(ctx)

    async def after_rpc(self, ctx: Any, reply: Any) -> Any:
        data = reply.find(f"{{{NC}}}data")
        if ctx.operation in ("get", "get-config") and data is not None:
            engine = self.device.engine
            source = ctx.rpc.find(f"{{{NC}}}get-config/{{{NC}}}source/*")
            full = engine.get(None) if ctx.operation == "get" else engine.get_config(
                etree.QName(source).localname, None)
            reply.replace(data, full)
        return await self.inner.after_rpc(ctx, reply)


def craft_source(lab: Lab) -> None:
    for name in ("a-leaf1", "a-fw1", "a-spine1"):
        device = lab.fabric.device(name)
        device.runtime.faults = Unfiltered(device)


@pytest.fixture
def lab(fresh_fabric: Callable[..., Any], nc_connect: Callable[..., Any]) -> Lab:
    return Lab(fresh_fabric(EXAMPLE / "fabric.yaml"), nc_connect)


# ------------------------------------------------------------- (a) another VM's entries on the source

def _port_of_other(lab: Lab) -> None:
    lab.commit("a-leaf1", IFX.interfaces(IFX.interface(IFX.name("eth3"), NMDX("vm-id", "vm-other"))))


def _rule_of_other(lab: Lab) -> None:
    lab.commit("a-fw1", NMDX.firewall(NMDX.rule(NMDX.name(f"{VM}.allow-https"), NMDX("vm-id", "vm-other"))))


def _lb_member_of_other(lab: Lab) -> None:
    member = NMDX.member(NMDX.address("10.1.10.11"), NMDX.port("443"), NMDX("vm-id", "vm-web-02"))
    lab.commit("a-fw1", NMDX("load-balancer", NMDX.pool(NMDX.name("web"), member)))


def _learned_mac_of_other(lab: Lab) -> None:
    tables = lab.fabric.device("a-leaf1").learned
    lab.fabric.call(lambda: tables.add("mac-entry", vm_id="vm-other", mac=MAC, vlan=111, port="eth3"))


CRAFTED = {
    "port tagged with another vm-id": (_port_of_other, "interface[eth3]", "vm-other"),
    "firewall rule named for the VM, owned by another": (_rule_of_other, f"firewall rule {VM}.allow-https",
                                                         "vm-other"),
    "lb member on the VM's address owned by another": (_lb_member_of_other, "member 10.1.10.11", "vm-web-02"),
    "learned MAC of the VM owned by another": (_learned_mac_of_other, "mac-entry", "vm-other"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_another_vms_entry_on_the_source_is_refused_and_nothing_changes(lab: Lab, case: str) -> None:
    craft, what, owner = CRAFTED[case]
    craft_source(lab)
    craft(lab)
    before = lab.snapshot()
    with pytest.raises(NetmigError) as info:
        lab.migrate()
    message = str(info.value)
    assert what in message and f"belongs to VM {owner!r}" in message and "refusing" in message, message
    assert lab.snapshot() == before


def test_the_crafted_device_alone_migrates(lab: Lab) -> None:
    craft_source(lab)
    assert lab.migrate().outcome == "SUCCESS"


# ------------------------------------------------------------- (b) only X's entries change


def _owner_or_port(el: Any) -> bool:
    """Is ``el`` inside an entry owned by VM (acme ``owner``) or inside the VM's destination port?"""
    for node in (el, *el.iterancestors()):
        owner = node.find(f"{{{ACME}}}owner")
        if owner is not None and (owner.text or "").strip() == VM:
            return True
        if node.tag == f"{{{ACME}}}port" and node.findtext(f"{{{ACME}}}name") == "ethernet-1/3":
            return True
    return False


def _holds_only_owned(el: Any, schema: Any, tags: tuple[str, ...]) -> bool:
    """A node created only to hold VM's entries: every leaf below it is VM's or a list key."""
    snode = schema.node(tags)
    if snode is not None and snode.kind == "leaf":
        parent = schema.node(tags[:-1])
        return parent is not None and tags[-1] in parent.keys  # the key of an entry created with it
    leaves = [n for n in el.iter() if isinstance(n.tag, str) and not len(n)]
    return bool(leaves) and all(_owner_or_port(n) or _is_key(n, schema) for n in leaves)


def _is_key(leaf: Any, schema: Any) -> bool:
    chain = [leaf]
    for node in leaf.iterancestors():
        if node.tag == f"{{{NC}}}data":
            break
        chain.append(node)
    path = [str(n.tag) for n in reversed(chain)]  # below <data>
    parent = schema.node(tuple(path[:-1]))
    return parent is not None and path[-1] in parent.keys


def test_migration_changes_only_the_vms_own_entries(lab: Lab) -> None:
    before = {d: lab.running(d) for d in DESTINATIONS}
    sources_before = {d: etree.tostring(lab.running(d), method="c14n") for d in ALL if d not in DESTINATIONS}
    assert lab.migrate().outcome == "SUCCESS"
    checked = 0
    for device in DESTINATIONS:
        after = lab.running(device)
        schema = lab.fabric.device(device).engine.schema
        found = list(changes(schema, before[device], after))
        assert found, f"{device}: the migration changed nothing"
        for operation, tags, path, nsmap in found:
            assert operation != "delete", f"{device}: deleted {path}"
            nodes = after.xpath("." + path, namespaces=nsmap)
            assert len(nodes) == 1, (device, path)
            owned = _owner_or_port(nodes[0]) or (operation == "create"
                                                  and _holds_only_owned(nodes[0], schema, tags))
            assert owned, f"{device}: {operation} {path} is not {VM}'s"
            checked += 1
    assert checked > 20
    for device, text in sources_before.items():  # and the sources keep everything
        assert etree.tostring(lab.running(device), method="c14n") == text, device

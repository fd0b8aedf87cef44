"""netmig.codecs.subtree.LocalData answers subtree filters as a device does (netconf-sim's RFC 6241 filter
is the reference), over the data of a generated fabric and the codecs' own per-VM filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree
from netconf_sim.subtree import apply_subtree_filter

from netmig.codecs.base import VmContext
from netmig.codecs.registry import get_codec
from netmig.codecs.subtree import LocalData, filter_prefix, prefix_filter
from netmig.xmlkit import parse


def _c14n(el: Any) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True)


def test_answers_equal_the_reference_filter_for_every_vm_on_every_device(
        tmp_path: Path, schema_cache: Any, fabricgen: Any) -> None:
    gen = fabricgen.generate(12, leaves=3, rules=2, nat=1, learned_fw=(1, 2))
    compared = nonempty = 0
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, _topo, _env):
        for name, dev in sorted(fabric.devices.items()):
            codec = get_codec("acme" if name.startswith("b-") else "ietf")
            whole = dev.engine.get()  # running, learned state and the yang-library, unfiltered
            local = LocalData(whole)
            for vm in gen.vms:
                ports = {"", vm.port, vm.b_port, "no-such-port"}
                for port in sorted(ports):
                    ctx = VmContext(vm.vm_id, port, macs=(vm.mac,), ips=tuple(vm.ips))
                    for flt in (codec.config_filter(ctx), codec.state_filter(ctx)):
                        want = _c14n(apply_subtree_filter(whole, flt))
                        assert _c14n(local.select(flt)) == want, (name, vm.vm_id, port)
                        compared += 1
                        nonempty += len(apply_subtree_filter(whole, flt)) > 0
    assert compared > 1000 and nonempty > 300  # the filters did select data, not only nothing


def test_filter_semantics_on_a_small_tree() -> None:
    ns = 'xmlns="urn:t"'
    data = parse(f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><top {ns}>'
                 '<e><k>1</k><v>a</v><sub><x>1</x></sub></e><e><k>2</k><v>b</v></e><e><k>3</k><v>a</v></e>'
                 '<pool><name>p</name><m><o>vm1</o></m><m><o>vm2</o></m></pool><pool><name>q</name></pool>'
                 '<leaf>7</leaf></top></data>'.encode())
    local = LocalData(data)
    filters = [
        f'<top {ns}><e><v>a</v></e></top>',                          # content match: whole entries
        f'<top {ns}><e><v>a</v><k/></e></top>',                       # content match + selection
        f'<top {ns}><e><k>2</k></e><e><v>a</v></e></top>',            # union of two selections
        f'<top {ns}><pool><name/><m><o>vm2</o></m></pool></top>',     # partial entries
        f'<top {ns}><e><k>9</k></e></top>',                           # nothing: no top either
        f'<top {ns}><leaf>7</leaf><e><k>1</k></e></top>',             # content match on the container
        f'<top {ns}><leaf>8</leaf><e><k>1</k></e></top>',             # ... that fails: nothing
        f'<top {ns}/>',                                               # selection of everything
        f'<top {ns}><e><sub/></e></top>',                             # containment without match
    ]
    for text in filters:
        flt = parse(f'<filter xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{text}</filter>'.encode())
        assert _c14n(local.select(flt)) == _c14n(apply_subtree_filter(data, flt)), text


def test_prefix_reaches_down_to_where_the_filter_selects() -> None:
    ctx = VmContext("vm-1", "p1", macs=("52:54:00:00:00:01",), ips=("10.0.0.1",))
    ietf, acme = get_codec("ietf"), get_codec("acme")
    paths = {filter_prefix(f) for f in ietf.config_filter(ctx)}
    local = {tuple(etree.QName(t).localname for t in p) for p in paths}
    assert local == {("interfaces",), ("acls",), ("nat", "instances"), ("firewall",),
                     ("load-balancer", "pool"), ("dynamic-info", "seeded")}
    assert {tuple(etree.QName(t).localname for t in filter_prefix(f)) for f in acme.state_filter(ctx)} == {
        ("acme-fabric", "tables")}
    flt = prefix_filter(sorted(paths))
    assert len(flt) == len(paths) and all(len(f) <= 1 for f in flt)

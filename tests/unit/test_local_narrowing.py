"""A batch's local answers to the IETF config filter are narrowed to the VM's own ACLs (the port's
attachment point, then the ACLs it names) and decode exactly as the device's answer to the unnarrowed
filter; netconf-sim's RFC 6241 filter is the reference for both filters."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

from lxml import etree
from netconf_sim.subtree import apply_subtree_filter
from test_localfilter import _c14n

from netmig.bulkread import BulkDevice
from netmig.codecs.base import Element, LocalNarrowing, VmContext
from netmig.codecs.ietf_acl import ACL_NS
from netmig.codecs.registry import get_codec
from netmig.errors import BundleError
from netmig.model import VmBundle

_ACL = f"{{{ACL_NS}}}acls/{{{ACL_NS}}}acl"


class _Device:
    """A read session answering from one data tree with the simulator's own filtering; counts RPCs."""

    def __init__(self, whole: Element) -> None:
        self.whole = whole
        self.calls = 0

    def get_config(self, source: str, filter: Element | None = None) -> Element:
        assert source == "running" and filter is not None
        self.calls += 1
        return apply_subtree_filter(self.whole, filter)

    def get(self, filter: Element | None = None) -> Element:
        assert filter is not None
        self.calls += 1
        return apply_subtree_filter(self.whole, filter)


def _decode(codec: Any, config: Element, state: Element, ctx: VmContext) -> VmBundle | str:
    try:
        return codec.decode(config, state, ctx)  # type: ignore[no-any-return]
    except BundleError as exc:
        return f"BundleError: {exc}"


def test_narrowed_local_answers_decode_as_the_device_answers(tmp_path: Path, schema_cache: Any,
                                                            fabricgen: Any) -> None:
    gen = fabricgen.generate(12, leaves=3, rules=2, nat=1, learned_fw=(1, 2))
    codec = get_codec("ietf")
    assert isinstance(codec, LocalNarrowing)
    compared = with_acls = refused = 0
    with fabricgen.running(gen, tmp_path / "state", schemas=schema_cache) as (fabric, _topo, _env):
        for name, dev in sorted(fabric.devices.items()):
            if name.startswith("b-"):
                continue
            whole = dev.engine.get()
            device, plain_device = _Device(whole), _Device(whole)
            bulk, plain = BulkDevice(name, codec), BulkDevice(name)  # plain: the unnarrowed answers
            total_acls = len(whole.findall(_ACL))
            for vm in gen.vms:
                for port in sorted({"", vm.port, vm.b_port, "no-such-port"}):
                    ctx = VmContext(vm.vm_id, port, macs=(vm.mac,), ips=tuple(vm.ips))
                    flt = codec.config_filter(ctx)
                    state = apply_subtree_filter(whole, codec.state_filter(ctx))
                    local = bulk.answer("get-config", flt, device)
                    plain.answer("get-config", flt, plain_device)
                    narrowed = codec.narrow_config_filter(flt, lambda f, w=whole: apply_subtree_filter(w, f))
                    assert _c14n(local) == _c14n(apply_subtree_filter(whole, narrowed)), (name, vm.vm_id)
                    want = _decode(codec, apply_subtree_filter(whole, flt), state, ctx)
                    got = _decode(codec, local, state, ctx)
                    assert got == want, (name, vm.vm_id, port)
                    copied = len(local.findall(_ACL))
                    compared += 1
                    if isinstance(got, str):  # another VM's port: refused alike
                        refused += 1
                        continue
                    assert copied == len(got.static.acl), (name, vm.vm_id, port)
                    if copied:
                        with_acls += 1
                        assert copied < total_acls  # only the VM's own, not the device's list
            # the probes are answered from the snapshot: no read beyond the unnarrowed filters' own
            assert bulk.reads == device.calls == plain.reads == plain_device.calls, name
    assert compared > 200 and with_acls >= 12 and refused > 0  # every VM's ACLs were found at its port


def test_a_missing_attached_acl_is_refused_as_by_the_device(fabricgen: Any) -> None:
    gen = fabricgen.generate(4, leaves=1, rules=2, nat=1)
    codec = get_codec("ietf")
    assert isinstance(codec, LocalNarrowing)
    leaf, vm = "a-leaf00", gen.vms[1]
    whole = _leaf_data(gen, leaf)
    victim = next(a for a in whole.findall(_ACL) if (a.findtext(f"{{{ACL_NS}}}name") or "").startswith(
        f"{vm.vm_id}."))
    victim.getparent().remove(victim)
    ctx = VmContext(vm.vm_id, vm.port, macs=(vm.mac,), ips=tuple(vm.ips))
    flt = codec.config_filter(ctx)
    state = apply_subtree_filter(whole, codec.state_filter(ctx))
    local = BulkDevice(leaf, codec).answer("get-config", flt, _Device(whole))
    want = _decode(codec, apply_subtree_filter(whole, flt), state, ctx)
    assert isinstance(want, str) and "does not exist" in want
    assert _decode(codec, local, state, ctx) == want


def _leaf_data(gen: Any, leaf: str) -> Element:
    """The generated running config of ``leaf`` as a ``<data>`` tree."""
    root = etree.fromstring(gen.fabric["devices"][leaf]["config"].encode())
    data = etree.Element("{urn:ietf:params:xml:ns:netconf:base:1.0}data")
    for child in root:
        data.append(deepcopy(child))
    return data

"""Learned tables' field index and the filtered rendering a ``<get>`` uses: a filter's answer from the
entries the index picks equals its answer from every entry, and the index follows every change."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from netconf_sim.learned import KIND_FIELDS, KIND_KEYS, OWNER, LearnedEntry, LearnedTables
from netconf_sim.profiles import PROFILES, Profile
from netconf_sim.subtree import apply_subtree_filter
from netconf_sim.xml import NC_NS, data_root

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VMS = ["vm-1", "vm-2", " vm-3 "]
VALUES = ["10.0.0.1", "10.0.0.2", "fe80::1", "52:54:00:00:00:01", "52:54:00:00:00:02", "p1", "tcp", "7"]


def _tables(profile: Profile) -> LearnedTables:
    return LearnedTables(profile.learns, profile.shapes, clock=lambda: 5000.0, wallclock=lambda: NOW)


@st.composite
def _entry(draw: st.DrawFn, kinds: tuple[str, ...]) -> tuple[str, dict[str, str], str | None]:
    kind = draw(st.sampled_from(kinds))
    fields = {n: draw(st.sampled_from(VALUES)) for n in KIND_KEYS[kind]}
    fields.update({n: draw(st.sampled_from(VALUES)) for n in KIND_FIELDS[kind] if draw(st.booleans())})
    return kind, fields, draw(st.sampled_from([*VMS, None]))


def _seeded(kind: str, fields: dict[str, str], vm: str | None, expired: bool) -> LearnedEntry:
    expires = NOW + timedelta(seconds=-5 if expired else 600)
    return LearnedEntry(kind, dict(fields), vm, "seeded", lifetime_s=600, expires_at=expires)


@st.composite
def _steps(draw: st.DrawFn, kinds: tuple[str, ...]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(0, 30))):
        op = draw(st.sampled_from(["add", "add", "add", "remove", "clear-vm", "clear", "seed"]))
        if op in ("add", "remove"):
            out.append((op, draw(_entry(kinds))))
        elif op == "clear-vm":
            out.append((op, draw(st.sampled_from(VMS))))
        elif op == "clear":
            out.append((op, None))
        else:
            out.append((op, draw(st.lists(st.tuples(_entry(kinds), st.booleans()), max_size=6))))
    return out


Model = dict[tuple[str, tuple[str, ...]], LearnedEntry]


def _run(tables: LearnedTables, steps: list[tuple[str, Any]]) -> tuple[Model, Model]:
    """Apply ``steps`` to ``tables`` and to a plain model; return the model (learned, seeded)."""
    learned: Model = {}
    seeded: Model = {}
    for op, arg in steps:
        if op == "add":
            kind, fields, vm = arg
            entry = tables.add(kind, vm_id=vm, **{k.replace("-", "_"): v for k, v in fields.items()})
            learned[(kind, entry.key)] = entry
        elif op == "remove":
            kind, fields, _ = arg
            keys = {k.replace("-", "_"): fields[k] for k in KIND_KEYS[kind]}
            existed = (kind, tuple(fields[k] for k in KIND_KEYS[kind])) in learned
            assert tables.remove(kind, **keys) is existed
            learned.pop((kind, tuple(fields[k] for k in KIND_KEYS[kind])), None)
        elif op == "clear-vm":
            tables.clear(str(arg))
            learned = {k: e for k, e in learned.items() if e.vm_id != arg}
        elif op == "clear":
            tables.clear()
            learned = {}
        else:
            entries = [_seeded(kind, fields, vm, expired) for (kind, fields, vm), expired in arg]
            tables.set_seeded(entries)
            seeded = {(e.kind, e.key): e for e in entries}
    return learned, seeded


def _value(entry: LearnedEntry, field: str) -> str | None:
    value = entry.vm_id if field == OWNER else entry.fields.get(field)
    return None if value is None else value.strip()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_field_index_follows_every_change(data: st.DataObject) -> None:
    profile = PROFILES[data.draw(st.sampled_from(sorted(PROFILES)))]
    tables = _tables(profile)
    learned, seeded = _run(tables, data.draw(_steps(profile.learns)))
    for kind in profile.learns:
        for field in (*KIND_KEYS[kind], *KIND_FIELDS[kind], OWNER):
            for value in [*VALUES, *VMS, " 10.0.0.1 "]:
                expect = {key for (k, key), e in (*learned.items(), *seeded.items())
                          if k == kind and _value(e, field) == value.strip()}
                assert tables.keys_where(kind, field, value) == expect, (kind, field, value)


def _ns(profile: Profile) -> str:
    return profile.namespace


def _path(profile: Profile) -> tuple[str, str]:
    return ("dynamic-info", "learned") if profile.flavour == "ietf" else ("acme-fabric", "tables")


@st.composite
def _state_filter(draw: st.DrawFn, profile: Profile) -> etree._Element:
    """A subtree filter reaching the learned container: netmig-like content matches on any field, the
    owner, time and origin leaves, selections, other namespaces and unqualified names."""
    ns = _ns(profile)
    top_name, sub_name = _path(profile)

    def name(local: str) -> str:
        space = draw(st.sampled_from([ns, ns, ns, None, NC_NS, "urn:other"]))
        return local if space is None else f"{{{space}}}{local}"

    flt = etree.Element(f"{{{NC_NS}}}filter", type="subtree")
    for _ in range(draw(st.integers(1, 2))):
        top = etree.SubElement(flt, name(top_name))
        if draw(st.integers(0, 9)) == 0:
            continue  # the whole container
        sub = etree.SubElement(top, name(sub_name))
        if draw(st.integers(0, 9)) == 0:
            continue  # all learned state
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(profile.learns))
            shape = profile.shapes[kind]
            item = etree.SubElement(sub, name(shape.list_name))
            leaves = [shape.native(n) for n in (*KIND_KEYS[kind], *KIND_FIELDS[kind])]
            leaves += [shape.owner_field, shape.time_field]
            leaves += [shape.origin_field] if shape.origin_field else []
            for _ in range(draw(st.integers(0, 3))):
                leaf = etree.SubElement(item, name(draw(st.sampled_from(leaves))))
                leaf.text = draw(st.sampled_from(["", *VALUES, *VMS, "learned", "seeded", "4700"]))
    return flt


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_rendering_what_a_filter_may_select_answers_like_rendering_everything(data: st.DataObject) -> None:
    profile = PROFILES[data.draw(st.sampled_from(sorted(PROFILES)))]
    tables = _tables(profile)
    _run(tables, data.draw(_steps(profile.learns)))
    hook = profile.operational_hook(tables)
    everything = data_root()
    hook(everything)
    for _ in range(3):
        flt = data.draw(_state_filter(profile))
        narrowed = data_root()
        hook(narrowed, flt)
        got = apply_subtree_filter(narrowed, flt)
        want = apply_subtree_filter(copy.deepcopy(everything), flt, scan=True)
        assert etree.tostring(got, method="c14n") == etree.tostring(want, method="c14n"), etree.tostring(flt)
        assert len(list(narrowed.iter())) <= len(list(everything.iter()))


def test_a_vm_filter_renders_only_that_vms_entries() -> None:
    profile = PROFILES["ietf-leaf"]
    tables = _tables(profile)
    for i in range(200):
        tables.add("mac-entry", vm_id=f"vm-{i}", mac=f"52:54:00:00:{i // 256:02x}:{i % 256:02x}", vlan=100,
                   port=f"p{i}")
        tables.add("arp-entry", vm_id=f"vm-{i}", ip=f"10.0.{i // 256}.{i % 256}", mac="52:54:00:00:00:01")
    ns = profile.namespace
    flt = etree.fromstring(
        f'<filter xmlns="{NC_NS}" type="subtree"><dynamic-info xmlns="{ns}"><learned>'
        f"<mac-entry><vm-id>vm-7</vm-id></mac-entry><mac-entry><port>p9</port></mac-entry>"
        f"<arp-entry><ip>10.0.0.9</ip></arp-entry></learned></dynamic-info></filter>")
    narrowed = data_root()
    profile.operational_hook(tables)(narrowed, flt)
    rendered = [(etree.QName(e).localname, e.findtext(f"{{{ns}}}vm-id")) for e in narrowed.iter(
        f"{{{ns}}}mac-entry", f"{{{ns}}}arp-entry")]
    assert rendered == [("mac-entry", "vm-7"), ("mac-entry", "vm-9"), ("arp-entry", "vm-9")]


@pytest.mark.parametrize("body", [
    "",                                                      # the whole container
    "<learned/>",                                            # all learned state
    "<learned><mac-entry/></learned>",                       # one whole table
    "<learned><mac-entry><age-s>20</age-s></mac-entry></learned>",  # a field the index does not keep
])
def test_filters_the_index_cannot_narrow_render_the_tables_they_reach(body: str) -> None:
    profile = PROFILES["ietf-leaf"]
    tables = _tables(profile)
    tables.add("mac-entry", vm_id="vm-1", mac="52:54:00:00:00:01", vlan=1, port="p1")
    tables.add("arp-entry", vm_id="vm-1", ip="10.0.0.1", mac="52:54:00:00:00:01")
    flt = etree.fromstring(f'<filter xmlns="{NC_NS}"><dynamic-info xmlns="{profile.namespace}">{body}'
                           f"</dynamic-info></filter>")
    narrowed = data_root()
    profile.operational_hook(tables)(narrowed, flt)
    kinds = {etree.QName(e).localname for e in narrowed.iter() if etree.QName(e).localname.endswith("entry")}
    assert kinds == ({"mac-entry"} if "mac-entry" in body else {"mac-entry", "arp-entry"})


_SCHEMAS: dict[str, Any] = {}


def _engine(profile: Profile, tables: LearnedTables) -> Any:
    from netconf_sim.engine import DeviceEngine
    from netconf_sim.schema import Schema

    if profile.name not in _SCHEMAS:
        _SCHEMAS[profile.name] = Schema.load(list(profile.modules), dict(profile.features))
    ports = ("p1", "p2", "p3") if profile.flavour == "ietf" else ("ethernet-1/1", "ethernet-1/2")
    return DeviceEngine("dev", _SCHEMAS[profile.name], None, operational=profile.operational_hook(tables),
                        initial_config=profile.default_config(ports))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_engine_get_answers_like_filtering_running_and_all_learned_state(data: st.DataObject) -> None:
    """The engine's filtered <get> (running filtered first, learned state narrowed, filtered again) gives
    what filtering a copy of running holding every learned entry gives, also when the filter mixes
    configuration and learned state under one container (acme-fabric: ports and tables)."""
    from netconf_sim.profiles import IF_NS
    from netconf_sim.schema import YANGLIB_NS

    profile = PROFILES[data.draw(st.sampled_from(["ietf-leaf", "acme-leaf", "acme-nat"]))]
    tables = _tables(profile)
    _run(tables, data.draw(_steps(profile.learns)))
    engine = _engine(profile, tables)
    flt = data.draw(_state_filter(profile))
    ports = ["p1", "p9", ""] if profile.flavour == "ietf" else ["ethernet-1/1", "ethernet-1/9", ""]
    for top in list(flt):
        if profile.flavour == "acme" and data.draw(st.booleans()):
            port = etree.SubElement(top, f"{{{profile.namespace}}}port")
            if data.draw(st.booleans()):
                name = etree.SubElement(port, f"{{{profile.namespace}}}name")
                name.text = data.draw(st.sampled_from(ports))
    if profile.flavour == "ietf" and data.draw(st.booleans()):
        iface = etree.SubElement(etree.SubElement(flt, f"{{{IF_NS}}}interfaces"), f"{{{IF_NS}}}interface")
        etree.SubElement(iface, f"{{{IF_NS}}}name").text = data.draw(st.sampled_from(ports))
    if data.draw(st.integers(0, 5)) == 0:
        etree.SubElement(flt, f"{{{YANGLIB_NS}}}modules-state")
    reference = engine.get_config("running")
    profile.operational_hook(tables)(reference)
    if any(etree.QName(el).namespace in (YANGLIB_NS, None, NC_NS) for el in flt.iterdescendants()):
        reference.append(engine.schema.yang_library())
        reference.append(engine.schema.modules_state())
    want = apply_subtree_filter(reference, flt, engine.schema, scan=True)
    got = engine.get(flt)
    assert etree.tostring(got, method="c14n") == etree.tostring(want, method="c14n"), etree.tostring(flt)

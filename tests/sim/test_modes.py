"""The four migration modes against netconf-sim over SSH: same scenarios, identical destination end states.

Each migration runs on a fresh copy of examples/two-site (netmig.simlab), so tests are independent and
safe under ``pytest -n 2``. Device-side faults are injected through the simulator's MigrationAgent.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from netmig.api import migrate
from netmig.errors import MigrationRolledBackError, PolicyConflictError
from netmig.feedback import MigrationResult
from netmig.model import PolicyKind
from netmig.options import MigrationOptions, Mode
from netmig.simlab import sim_lab
from netmig.store import Blob, SqliteStore, StoreError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "two-site"
MODES = [Mode.CENTRALIZED, Mode.MIDDLE, Mode.D_PUSH, Mode.D_PULL]
SITE_B = ("b-leaf1", "b-spine1", "b-fw1", "b-nat1")
SITE_A = ("a-leaf1", "a-leaf2", "a-spine1", "a-fw1")
# timers of seeded DI depend on when the migration ran
_VOLATILE = {"expires-at", "valid-until", "ttl-s", "age-s", "expiry-s", "lease-expiry-s"}


@contextmanager
def lab(tmp_path: Path) -> Iterator[Any]:
    with sim_lab(EXAMPLE, state_dir=tmp_path / f"lab-{time.monotonic_ns()}") as running:
        yield running


def run(running: Any, tmp_path: Path, mode: Mode, vm: str = "vm-web-01", source: str = "host-a1",
        destination: str = "host-b3", deadline_s: float = 10.0) -> MigrationResult:
    options = MigrationOptions(mode=mode, allow_drop=frozenset({PolicyKind.ND_ENTRY}))
    result = migrate(vm, source=source, destination=destination, topology=running.topology, options=options,
                     environ=running.environ, store=SqliteStore(tmp_path / "store.sqlite"),
                     feedback_deadline_s=deadline_s)
    assert isinstance(result, MigrationResult)
    return result


def _canonical(el: Any) -> str:
    """Running config as text, list entries sorted and DI timers blanked."""
    def norm(node: Any) -> Any:
        copy = etree.Element(node.tag)
        name = etree.QName(node).localname
        copy.text = None if name in _VOLATILE else (node.text or "").strip() or None
        kids = sorted((norm(c) for c in node if isinstance(c.tag, str)),
                      key=lambda c: etree.tostring(c))
        copy.extend(kids)
        return copy
    return etree.tostring(norm(el), pretty_print=True).decode()


def running_configs(running: Any, names: tuple[str, ...]) -> dict[str, str]:
    fabric = running.fabric
    return {n: fabric.call(lambda n=n: _canonical(fabric.device(n).engine.running_view())) for n in names}


def agent(running: Any, name: str) -> Any:
    return running.fabric.device(name).migration


def test_end_states_identical_across_modes(tmp_path: Path) -> None:
    """Asymmetric, unlike models (IETF site A -> acme site B): every mode leaves site B the same."""
    states: dict[Mode, dict[str, str]] = {}
    for mode in MODES:
        with lab(tmp_path) as running:
            before = running_configs(running, SITE_B)
            result = run(running, tmp_path, mode)
            assert result.ok and result.mode == mode.value
            states[mode] = running_configs(running, SITE_B)
            assert states[mode] != before
            # the VM's learned state really arrived (seeded into the destination's tables)
            fdb = running.fabric.device("b-leaf1").learned.entries("mac-entry")
            assert any(e.vm_id == "vm-web-01" and e.origin == "seeded" and e.fields["vlan"] == "2110"
                       and e.fields.get("port") == "ethernet-1/3" for e in fdb)
            xlate = running.fabric.device("b-nat1").learned.entries("nat-session")
            assert sorted(e.fields["external-address"] for e in xlate if e.vm_id == "vm-web-01") == \
                ["198.51.100.11"] * 3
    for mode in MODES[1:]:
        for name in SITE_B:
            assert states[mode][name] == states[Mode.CENTRALIZED][name], f"{mode.value} differs on {name}"


def _symmetric(tmp_path: Path, mode: Mode) -> dict[str, str]:
    with lab(tmp_path) as running:
        result = run(running, tmp_path, mode, "vm-db-01", "host-a2", "host-a3")
        assert result.ok
        return running_configs(running, SITE_A)


def test_symmetric_same_site_all_modes_agree(tmp_path: Path) -> None:
    """Leaf to leaf at site A (spine and firewall are source and destination at once)."""
    states = {mode: _symmetric(tmp_path, mode) for mode in MODES}
    for mode in MODES[1:]:
        assert states[mode] == states[Mode.CENTRALIZED], f"{mode.value} differs"
    assert "vm-db-01" in states[Mode.MIDDLE]["a-leaf1"]


@pytest.mark.parametrize("mode", MODES)
def test_conflict_refused_everywhere(tmp_path: Path, mode: Mode) -> None:
    """host-b2's port already belongs to vm-app-01: refused before any device changes."""
    with lab(tmp_path) as running:
        before = running_configs(running, (*SITE_A, *SITE_B))
        with pytest.raises(PolicyConflictError):
            run(running, tmp_path, mode, destination="host-b2")
        assert running_configs(running, (*SITE_A, *SITE_B)) == before


@pytest.mark.parametrize("mode", MODES[1:])
def test_device_refusing_import_rolls_back(tmp_path: Path, mode: Mode) -> None:
    """A destination refuses the DI import: FAIL, and no destination keeps anything."""
    with lab(tmp_path) as running:
        before = running_configs(running, (*SITE_A, *SITE_B))
        agent(running, "b-nat1").fail_import = True
        with pytest.raises(MigrationRolledBackError, match="b-nat1"):
            run(running, tmp_path, mode)
        assert running_configs(running, (*SITE_A, *SITE_B)) == before
        assert all(running.fabric.device(n).runtime.pending is None for n in SITE_B)


@pytest.mark.parametrize(("mode", "silent"), [(Mode.D_PUSH, "a-fw1"), (Mode.D_PULL, "b-nat1")])
def test_silent_device_fails_within_deadline(tmp_path: Path, mode: Mode, silent: str) -> None:
    """A device that ignores the associate: FAIL naming it, within the deadline, nothing half-applied."""
    with lab(tmp_path) as running:
        before = running_configs(running, (*SITE_A, *SITE_B))
        agent(running, silent).ignore_associate = True
        started = time.monotonic()
        with pytest.raises(MigrationRolledBackError, match=f"silent: {silent}"):
            run(running, tmp_path, mode, deadline_s=1.5)
        assert time.monotonic() - started < 8
        time.sleep(0.3)  # transfers of the devices that did answer are over by now
        assert running_configs(running, (*SITE_A, *SITE_B)) == before
        assert all(running.fabric.device(n).runtime.pending is None for n in SITE_B)


def test_middle_moves_a_kind_netmig_has_never_heard_of(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator invents a DI kind; it moves through the middle mode with no netmig change."""
    from netconf_sim import learned
    from netconf_sim.learned import LearnedEntry, TableShape

    kind = "vxlan-flood-entry"
    monkeypatch.setitem(learned.KIND_KEYS, kind, ("vni", "remote-vtep"))
    monkeypatch.setitem(learned.KIND_FIELDS, kind, ("mode",))
    assert kind not in {k.value for k in PolicyKind}
    with lab(tmp_path) as running:
        for name in ("a-leaf1", "b-leaf1"):
            agent(running, name).extra_shapes[kind] = TableShape("flood", "age-s", "owner", counts_down=False)
        entry = LearnedEntry(kind, {"vni": "10110", "remote-vtep": "192.0.2.7", "mode": "head-end"},
                             "vm-web-01", lifetime_s=300)
        agent(running, "a-leaf1").extra_seeded[kind] = {entry.key: entry}
        run(running, tmp_path, Mode.MIDDLE)
        got = agent(running, "b-leaf1").extra_seeded.get(kind, {})
        assert [(e.fields, e.vm_id) for e in got.values()] == [(entry.fields, "vm-web-01")]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_blob_path_imports_nothing_that_could_decode_blobs() -> None:
    store, middle = _imports(ROOT / "netmig" / "store.py"), _imports(ROOT / "netmig" / "modes" / "middle.py")
    assert not {i for i in store if i.startswith(("netmig.", "lxml"))} - {"netmig.errors.NetmigError"}
    decoders = ("netmig.codecs", "netmig.model.bundle", "netmig.model.dynamic", "lxml", "netmig.xmlkit.parse",
                "json", "pickle")
    assert not {i for i in middle if i.startswith(decoders)}


def test_store_survives_restart_and_checks_digests(tmp_path: Path) -> None:
    import hashlib

    data = b"\x00opaque\xff"
    path = tmp_path / "s" / "store.sqlite"
    with SqliteStore(path) as first:
        first.put("mig-1", "a-leaf1", Blob(data, "application/x-test", hashlib.sha256(data).hexdigest(), 3))
    with SqliteStore(path) as second:  # a new coordinator process finds what the old one collected
        assert second.devices("mig-1") == ["a-leaf1"]
        got = second.get("mig-1", "a-leaf1")
        assert got is not None and got.data == data and got.entry_count == 3
        assert second.get("mig-1", "b-leaf1") is None
        with pytest.raises(StoreError):
            second.put("mig-1", "a-fw1", Blob(data, "x/y", "0" * 64))
        second.drop("mig-1")
        assert second.devices("mig-1") == []


def test_middle_resumes_from_stored_blobs(tmp_path: Path) -> None:
    """Blobs already stored for a migration id are imported as they are, not exported again."""
    with lab(tmp_path) as running:
        result = run(running, tmp_path, Mode.MIDDLE)
        assert result.moved["di-entries"] > 0
        assert SqliteStore(tmp_path / "store.sqlite").devices(result.migration_id) == []  # dropped once done


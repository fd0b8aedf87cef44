"""The fault matrix (issue 6), reduced, for the middle, d-push and d-pull modes.

Same lab, same migration and same end-state invariant as ``test_fault_matrix`` (whose helpers this
reuses), on a reduced matrix: faults {rpc-error every time, drop-after, reboot} x phases {import,
commit-confirmed, confirm} on one faulty destination (b-fw1, which takes static rules and a-fw1's
connection table) x 3 modes.

The distributed modes stage destinations outside ``NetworkTransaction`` (the step hook sees no lock,
edit or commit there) and the DI import is sent by a device (the partner in d-push, the destination
itself in d-pull), so the fault is armed on b-fw1 before the migration starts, on an rpc that the
read-only preparation never sends; ``nth=1`` then hits the phase's first such rpc:

- import: ``import-di`` (middle: netmig's, under its candidate lock; d-push/d-pull: the device-to-device
  transfer's session, so the fault lands in netconf-sim's own client while netmig's sessions to b-fw1
  are dropped too by a reboot);
- commit-confirmed: the first ``<commit><confirmed/>`` (netmig's static stage, before any import);
- confirm: the confirming commit (only netmig sends one, with the persist-id in the distributed modes).

Afterwards every device comes back up and pending confirmed commits expire (3 s); then sources are
intact and the destinations hold the full migration everywhere or nothing anywhere, and netmig says
which: SUCCESS, or MigrationRolledBackError. A confirming commit that fails for good after the other
destinations confirmed (rpc-error or reboot at confirm) is retried from new sessions until the confirm
timeout, then the confirmed destinations are compensated: static undo plus ``withdraw-di`` (the device
removes the seeded DI its imports created), in a confirmed commit of their own.

``test_fault_di_only`` puts the confirm-phase faults on a DI-only destination instead (b-spine1: it takes
no static change, only a-spine1's DI through ``import-di``, so running cannot tell whether its confirmed
commit took effect): when its confirming commit fails for good with nothing pending (drop-after: the
confirm took effect, the reply was lost; reboot: the device rolled back), it is compensated like the
confirmed devices (``withdraw-di`` of imports that are gone removes 0 entries), never left holding them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from test_fault_matrix import (
    DESTINATION,
    DESTINATIONS,
    OPTIONS,
    SOURCE,
    SOURCES,
    UNINVOLVED,
    VM,
    Lab,
    Reference,
    fault_rule,
    settle,
    snapshot,
    two_site,
)

from netmig.api import migrate
from netmig.errors import MigrationRolledBackError, NetmigError
from netmig.feedback import MigrationResult
from netmig.options import MigrationOptions, Mode

MODES = (Mode.MIDDLE, Mode.D_PUSH, Mode.D_PULL)
FAULTY = "b-fw1"
DI_ONLY = "b-spine1"  # no static change in any of the three modes: only import-di (checked per mode)
PHASES = {"import": "import-di", "commit-confirmed": "confirmed-commit", "confirm": "confirming-commit"}
FAULTS = ("rpc-error", "drop-after", "reboot")
FEEDBACK_DEADLINE_S = 8.0

CASES = [pytest.param(m, f, p, id=f"{m.value}-{f}-{p}") for m in MODES for f in FAULTS for p in PHASES]
DI_ONLY_CASES = [pytest.param(m, f, id=f"{m.value}-{f}") for m in MODES for f in FAULTS]


def _options(mode: Mode) -> MigrationOptions:
    return MigrationOptions(mode=mode, allow_drop=OPTIONS.allow_drop, commit=OPTIONS.commit,
                            timeouts=OPTIONS.timeouts)


def _migrate(lab: Lab, mode: Mode) -> Any:
    return migrate(VM, source=SOURCE, destination=DESTINATION, topology=lab.topology, environ=lab.environ,
                   options=_options(mode), feedback_deadline_s=FEEDBACK_DEADLINE_S)


# where the lab's models keep imported DI in the configuration (acme-fabric, netmig-device)
_DI_CONTAINERS = frozenset({"preload", "seeded"})


def _static_config(fabric: Any, name: str) -> str:
    """``name``'s running configuration without the containers imported DI is written to."""
    dev = fabric.device(name)
    data = fabric.call(lambda: dev.engine.get_config("running"))
    di = [e for e in data.iter() if isinstance(e.tag, str) and etree.QName(e).localname in _DI_CONTAINERS]
    for el in di:
        el.getparent().remove(el)
    return str(etree.tostring(data, encoding="unicode"))


# mode -> whether the reference migration left DI_ONLY's static configuration as it was (see ``references``)
di_only: dict[Mode, bool] = {}


@pytest.fixture(scope="module")
def references(schema_cache: Any) -> Iterator[dict[Mode, Reference]]:
    """What a fault-free migration leaves on every device, per mode (computed on first use)."""
    class Lazy(dict[Mode, Reference]):
        def __missing__(self, mode: Mode) -> Reference:
            with tempfile.TemporaryDirectory(prefix="fault-matrix-modes-ref-") as state, \
                    two_site(Path(state), schema_cache) as lab:
                before, config = snapshot(lab.fabric), _static_config(lab.fabric, DI_ONLY)
                result = _migrate(lab, mode)
                assert isinstance(result, MigrationResult) and result.ok
                settle(lab.fabric)
                after = snapshot(lab.fabric)
                di_only[mode] = _static_config(lab.fabric, DI_ONLY) == config
            changed = [d for d in DESTINATIONS if before[d] != after[d]]
            assert len(changed) >= 3, f"{mode}: the reference migration changed only {changed}"
            assert DI_ONLY in changed, f"{mode}: {DI_ONLY} takes no DI"
            self[mode] = Reference(before, after)
            return self[mode]

    yield Lazy()


@pytest.mark.parametrize(("mode", "fault", "phase"), CASES)
def test_fault_matrix_modes(references: dict[Mode, Reference], schema_cache: Any, tmp_path: Path,
                            mode: Mode, fault: str, phase: str) -> None:
    _check_fault(references[mode], schema_cache, tmp_path, mode, FAULTY, fault, PHASES[phase])


@pytest.mark.parametrize(("mode", "fault"), DI_ONLY_CASES)
def test_fault_di_only(references: dict[Mode, Reference], schema_cache: Any, tmp_path: Path, mode: Mode,
                       fault: str) -> None:
    """The confirm-phase faults on the DI-only destination: complete everywhere or unchanged everywhere."""
    reference = references[mode]
    assert di_only[mode], f"{mode}: {DI_ONLY} takes a static change, so it is not DI-only"
    _check_fault(reference, schema_cache, tmp_path, mode, DI_ONLY, fault, PHASES["confirm"])


def _check_fault(reference: Reference, schema_cache: Any, tmp_path: Path, mode: Mode, faulty: str,
                 fault: str, operation: str) -> None:
    """Migrate with ``fault`` armed on ``faulty``'s ``operation``; assert the end-state invariant."""
    rule = fault_rule(fault, operation)
    assert rule is not None
    with two_site(tmp_path / "lab", schema_cache) as lab:
        fabric: Any = lab.fabric
        before = snapshot(fabric)
        assert before == reference.before
        fabric.device(faulty).faults.set(rule)
        outcome, error, clean = "FAIL", "", False
        started = time.monotonic()
        try:
            result = _migrate(lab, mode)
            assert isinstance(result, MigrationResult)
            outcome = "SUCCESS" if result.ok else "FAIL"
        except NetmigError as exc:
            error = f"{type(exc).__name__}: {exc}"
            clean = isinstance(exc, MigrationRolledBackError)
        took = time.monotonic() - started
        fired = list(fabric.device(faulty).faults.fired)
        settle(fabric)
        after = snapshot(fabric)

    assert fired, f"the fault never fired ({outcome} {error})"
    assert took < FEEDBACK_DEADLINE_S + 10, f"the migration took {took:.1f} s"
    for name in SOURCES + UNINVOLVED:
        assert after[name] == before[name], f"{name} changed (sources keep everything): {outcome} {error}"
    complete = [d for d in DESTINATIONS if after[d] == reference.after[d]]
    unchanged = [d for d in DESTINATIONS if after[d] == before[d]]
    assert len(complete) == len(DESTINATIONS) or len(unchanged) == len(DESTINATIONS), \
        f"half-applied: complete {complete}, unchanged {unchanged} ({outcome} {error})"
    # every device back or every device migrated, and netmig says which: a compensated failure is a
    # clean rollback (MigrationRolledBackError), never RollbackIncompleteError
    assert outcome == "SUCCESS" or clean, f"neither SUCCESS nor a clean rollback: {error}"
    if outcome == "SUCCESS":
        assert len(complete) == len(DESTINATIONS), f"SUCCESS but only {complete} hold the migration"
    elif clean:
        assert len(unchanged) == len(DESTINATIONS), f"{error} but {unchanged} only are as before"

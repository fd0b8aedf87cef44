"""The fault matrix (issue 6): every fault x every transaction phase x one or several faulty destinations.

Each case runs a real ``netmig.api.migrate`` of vm-web-01 from host-a1 (IETF site A) to host-b3 (acme site
B; destinations b-leaf1, b-fw1, b-nat1, b-spine1) on a fresh two-site lab. The fault is armed on the faulty
destination(s) by the transaction's ``on_step`` hook just before the phase's step, so it hits that phase's
rpc and nothing earlier (the pull and conflict check read destinations too). Afterwards every device comes
back up, pending confirmed commits are left to expire, and every device's running config and learned
state (``<get>`` content, timers stripped) is compared with the snapshot taken before:

- sources are always unchanged (nothing removed before SUCCESS);
- netmig said SUCCESS: every destination holds exactly what a fault-free migration leaves there;
- netmig failed: every destination is exactly as before.

Anything else is a lost or duplicated entry. Set ``NETMIG_FAULT_MATRIX_LOG=FILE`` to get one JSON line
per case (fault, phase, scope, outcome, seconds).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from netconf_sim.fabric import running_fabric
from netconf_sim.faults import FaultRule

from netmig.api import migrate
from netmig.errors import NetmigError
from netmig.feedback import MigrationResult
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.settings import CommitPolicy, Timeouts
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology
from netmig.topology.model import Topology
from netmig.transaction import Step

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "examples" / "two-site"
VM, SOURCE, DESTINATION = "vm-web-01", "host-a1", "host-b3"
SOURCES = ("a-leaf1", "a-spine1", "a-fw1")
DESTINATIONS = ("b-leaf1", "b-spine1", "b-fw1", "b-nat1")
UNINVOLVED = ("a-leaf2",)
SCOPES = {"one": ("b-fw1",), "several": ("b-leaf1", "b-fw1", "b-nat1")}
CONFIRM_TIMEOUT_S = 3
OPTIONS = MigrationOptions(
    allow_drop=frozenset({PolicyKind.ND_ENTRY}),
    commit=CommitPolicy(confirm_timeout_s=CONFIRM_TIMEOUT_S),
    timeouts=Timeouts(connect_s=3, rpc_s=5, connect_attempts=2, connect_backoff_s=0.05))

# phase -> (the transaction step that arms the fault, the rpc the fault hits)
PHASES: dict[str, tuple[Step, str]] = {
    "lock": (Step.LOCK, "lock"),
    "discard": (Step.DISCARD, "discard-changes"),
    "edit": (Step.EDIT, "edit-config"),
    "validate": (Step.VALIDATE, "validate"),
    "commit-confirmed": (Step.COMMIT_CONFIRMED, "confirmed-commit"),
    # the verify read of running rides in the commit's flight (pipelined): armed with the commit
    "verify": (Step.COMMIT_CONFIRMED, "get-config"),
    "confirm": (Step.CONFIRM, "confirming-commit"),
}


def fault_rule(fault: str, operation: str) -> FaultRule | None:
    """The per-rpc rule of ``fault`` on ``operation`` (None for the device-level lock-held fault)."""
    rules = {
        "latency": FaultRule("latency", operation, delay_s=0.3),
        "rpc-error": FaultRule("rpc-error", operation, error_tag="operation-failed"),  # every time
        "rpc-error-once": FaultRule("rpc-error", operation, error_tag="resource-denied", nth=1),
        "drop-before": FaultRule("drop-before", operation, nth=1),
        "drop-after": FaultRule("drop-after", operation, nth=1),
        "reboot": FaultRule("down", operation, reboot=True, up_after_s=0.5, nth=1),
        "partition": FaultRule("down", operation, reboot=False, up_after_s=0.5, nth=1),
        "slow-reply": FaultRule("slow-reply", operation, delay_s=CONFIRM_TIMEOUT_S + 1.0, nth=1),
        "malformed-reply": FaultRule("malformed-reply", operation, nth=1),
        "oversized-reply": FaultRule("oversized-reply", operation, size_bytes=40 * 1024 * 1024, nth=1),
    }
    return rules.get(fault)


FAULTS = ("latency", "rpc-error", "rpc-error-once", "drop-before", "drop-after", "reboot", "partition",
          "slow-reply", "malformed-reply", "oversized-reply")
# A device that refuses every confirming commit, or reboots (losing its pending commit) after the others
# confirmed, is made consistent by undoing the confirmed devices, each with its own confirmed commit
# (compensation): netmig then reports MigrationRolledBackError and every destination is as before.
CASES = [pytest.param(f, p, s, id=f"{f}-{p}-{s}") for f in FAULTS for p in PHASES for s in SCOPES]
CASES += [pytest.param("lock-held", "lock", s, id=f"lock-held-lock-{s}") for s in SCOPES]
_TIME_LEAVES = frozenset({"expires-at", "valid-until"})
# Non-presence containers of the lab's models (none of them declares presence): empty, they are the same
# data as none (RFC 7950 7.5.1), so a removal that leaves one behind leaves the device as it was.
_NP_CONTAINERS = frozenset(name for yang in (ROOT / "yang").glob("*.yang")
                           for name in re.findall(r"^\s*container\s+([\w-]+)\s*\{", yang.read_text(), re.M))
assert _NP_CONTAINERS and not any("presence" in y.read_text() for y in (ROOT / "yang").glob("*.yang"))
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def snapshot(fabric: Any) -> dict[str, str]:
    """Every device's running config plus learned state, as served by <get>, without timers."""
    out: dict[str, str] = {}
    for name, dev in fabric.devices.items():
        data = fabric.call(lambda dev=dev: dev.engine.get(None))
        for el in list(data):
            if etree.QName(el).localname in ("yang-library", "modules-state"):
                data.remove(el)
        for leaf in list(data.iter()):
            local = etree.QName(leaf).localname if isinstance(leaf.tag, str) else ""
            text = (leaf.text or "").strip()
            timer = (local in _TIME_LEAVES or (local.endswith("-s") and text.isdigit())
                     or _TIMESTAMP.match(text))
            if len(leaf) == 0 and timer:
                leaf.getparent().remove(leaf)
        for el in reversed(list(data.iter())):  # children first: a container emptied here goes too
            if el is not data and isinstance(el.tag, str) and len(el) == 0 and not (el.text or "").strip() \
                    and etree.QName(el).localname in _NP_CONTAINERS:
                el.getparent().remove(el)
        etree.cleanup_namespaces(data)  # an unused xmlns:nc declaration left by an nc:operation is no data
        etree.indent(data)
        out[name] = etree.tostring(data, encoding="unicode")
    return out


@dataclass(frozen=True)
class Lab:
    fabric: Any
    topology: Topology
    environ: dict[str, str]


@contextmanager
def two_site(state: Path, schemas: Any) -> Iterator[Lab]:
    """``netmig.simlab.sim_lab`` on the shared schema cache (a fresh lab in ~0.3 s instead of ~1 s)."""
    with running_fabric(LAB / "fabric.yaml", state, schemas=schemas) as fabric:
        topology, environ = rewrite_for_fabric(load_topology(LAB / "topology.yaml"), fabric.devices_json,
                                               fabric.known_hosts)
        yield Lab(fabric, topology, environ)


def options_for_lab(lab: Lab) -> dict[str, Any]:
    return {"source": SOURCE, "destination": DESTINATION, "topology": lab.topology, "environ": lab.environ,
            "options": OPTIONS}


def settle(fabric: Any) -> None:
    """Every device up, faults gone, and no confirmed commit pending (wait for the timers)."""
    for dev in fabric.devices.values():
        dev.faults.clear()
        dev.faults.up()
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S + 5
    while any(dev.runtime.pending is not None for dev in fabric.devices.values()):
        assert time.monotonic() < deadline, "a confirmed commit stays pending past its timeout"
        time.sleep(0.1)


@dataclass(frozen=True)
class Reference:
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def reference(schema_cache: Any) -> Iterator[Reference]:
    """What a fault-free migration leaves on every device."""
    with tempfile.TemporaryDirectory(prefix="fault-matrix-ref-") as state, \
            two_site(Path(state), schema_cache) as lab:
        before = snapshot(lab.fabric)
        result = migrate(VM, **options_for_lab(lab))
        assert isinstance(result, MigrationResult) and result.ok
        settle(lab.fabric)
        after = snapshot(lab.fabric)
    changed = [d for d in DESTINATIONS if before[d] != after[d]]
    assert len(changed) >= 3, f"the reference migration changed only {changed}"
    yield Reference(before, after)


def _log(record: dict[str, Any]) -> None:
    path = os.environ.get("NETMIG_FAULT_MATRIX_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


@pytest.mark.parametrize(("fault", "phase", "scope"), CASES)
def test_fault_matrix(reference: Reference, schema_cache: Any, tmp_path: Path, fault: str, phase: str,
                      scope: str) -> None:
    started = time.perf_counter()
    step, operation = PHASES[phase]
    faulty = SCOPES[scope]
    with two_site(tmp_path / "lab", schema_cache) as lab:
        fabric: Any = lab.fabric
        before = snapshot(fabric)
        assert before == reference.before
        armed: set[str] = set()

        def on_step(device: str, taken: Any) -> None:
            if device in faulty and taken == step and device not in armed:
                armed.add(device)
                faults = fabric.device(device).faults
                rule = fault_rule(fault, operation)
                if rule is None:
                    faults.hold_lock("candidate")
                else:
                    faults.set(rule)

        outcome, error = "FAIL", ""
        try:
            result = migrate(VM, on_step=on_step, **options_for_lab(lab))
            assert isinstance(result, MigrationResult)
            outcome = "SUCCESS" if result.ok else "FAIL"
        except NetmigError as exc:
            error = f"{type(exc).__name__}: {exc}"
        fired = {d: list(fabric.device(d).faults.fired) for d in faulty}
        settle(fabric)
        after = snapshot(fabric)

    _log({"fault": fault, "phase": phase, "scope": scope, "outcome": outcome, "error": error[:300],
          "seconds": round(time.perf_counter() - started, 2)})
    assert armed, f"the transaction never reached {phase} on any of {faulty}"
    if fault != "lock-held":
        assert any(fired.values()), f"the fault never fired: {fired}"
    for name in SOURCES + UNINVOLVED:
        assert after[name] == before[name], f"{name} changed (sources keep everything): {outcome} {error}"
    if outcome == "SUCCESS":
        lost = [d for d in DESTINATIONS if after[d] != reference.after[d]]
        assert not lost, f"SUCCESS but {lost} do not hold the migrated state"
    else:
        kept = [d for d in DESTINATIONS if after[d] != before[d]]
        assert not kept, f"FAIL ({error}) but {kept} kept changes"
        # every device is as before: the error must say so, not ask a person to look
        assert not error.startswith("RollbackIncompleteError"), f"clean rollback reported as {error}"

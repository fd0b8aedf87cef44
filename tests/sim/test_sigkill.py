"""SIGKILL the coordinator at every journaled step of a migration, for real, then recover.

The fabric runs in this test process so it outlives the killed coordinator: a child ``python -c``
process migrates vm-web-01 over it with the journal on, and kills itself with SIGKILL right after
journaling the chosen step (the ``NETMIG_TEST_KILL_AT`` test hook of netmig.journal_hook). The child
gets the device passwords through its environment only. Then ``recover`` settles the migration, and
every destination must hold either the complete migration or exactly what it held before, the sources
must be intact, the journal record finished, and a second recovery must find nothing to do.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netmig.devices import handles_for
from netmig.journal import SqliteJournal, Step
from netmig.netconf.session import DeviceSession
from netmig.recovery import recover
from netmig.settings import SshPolicy
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology
from netmig.topology.model import Topology
from netmig.xmlkit import to_bytes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site"
DESTINATIONS = ("b-fw1", "b-leaf1", "b-nat1", "b-spine1")
SOURCES = ("a-fw1", "a-leaf1", "a-spine1")
STEPS = ("lock", "discard", "edit", "validate", "commit-confirmed", "verify", "confirm", "unlock")
CONFIRM_TIMEOUT_S = 5
_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_TIMER = re.compile(rb"<((?:[\w.-]+:)?(?:ttl-s|age-s|expiry-s|lease-expiry-s))>\d+</")

CHILD = """
import sys
from pathlib import Path
from netmig.api import migrate
from netmig.journal import SqliteJournal
from netmig.model import PolicyKind
from netmig.options import MigrationOptions
from netmig.settings import CommitPolicy
from netmig.simlab import rewrite_for_fabric
from netmig.topology import load_topology

example, devices_json, known_hosts, journal = (Path(a) for a in sys.argv[1:5])
topology, _ = rewrite_for_fabric(load_topology(example / "topology.yaml"), devices_json, known_hosts)
options = MigrationOptions(allow_drop=frozenset({PolicyKind("nd-entry")}),
                           commit=CommitPolicy(confirm_timeout_s=int(sys.argv[5])))
with SqliteJournal(journal) as j:
    result = migrate("vm-web-01", source="host-a1", destination="host-b3", topology=topology,
                     options=options, journal=j)
print(result.outcome)
"""


def lab(fabric: Any) -> tuple[Topology, dict[str, str]]:
    """The example topology pointed at ``fabric``, and the passwords as environment variables."""
    topology = load_topology(EXAMPLE / "topology.yaml")
    return rewrite_for_fabric(topology, fabric.devices_json, fabric.known_hosts)


def snapshot(topology: Topology, environ: dict[str, str], names: tuple[str, ...]) -> dict[str, bytes]:
    """Each device's running config, with timestamps and count-down timers of seeded DI blanked out."""
    handles = handles_for([topology.devices[n] for n in names], environ)
    ssh = SshPolicy(known_hosts=topology.known_hosts)
    out = {}
    for name in names:
        with DeviceSession(handles[name].endpoint, ssh=ssh) as session:
            running = _TIMESTAMP.sub(b"T", to_bytes(session.get_config("running")))
            out[name] = _TIMER.sub(rb"<\1>N</", running)
    return out


def run_child(fabric: Any, environ: dict[str, str], journal: Path,
              kill_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETMIG_SIM_PASSWORD")}
    env.update(environ)
    env.pop("NETMIG_TEST_KILL_AT", None)
    if kill_at is not None:
        env["NETMIG_TEST_KILL_AT"] = kill_at
    args = [sys.executable, "-c", CHILD, str(EXAMPLE), str(fabric.devices_json), str(fabric.known_hosts),
            str(journal), str(CONFIRM_TIMEOUT_S)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def migrated_reference(tmp_path_factory: pytest.TempPathFactory, schema_cache: Any) -> dict[str, Any]:
    """A complete, unkilled journaled run: the destinations' end state and the steps it journaled."""
    from netconf_sim.fabric import running_fabric

    tmp = tmp_path_factory.mktemp("sigkill-reference")
    with running_fabric(EXAMPLE / "fabric.yaml", tmp / "state", schemas=schema_cache) as fabric:
        topology, environ = lab(fabric)
        before = snapshot(topology, environ, DESTINATIONS + SOURCES)
        done = run_child(fabric, environ, tmp / "journal.sqlite", None)
        assert done.returncode == 0, done.stderr
        after = snapshot(topology, environ, DESTINATIONS + SOURCES)
        with SqliteJournal(tmp / "journal.sqlite") as journal:
            (record,) = journal.history()
    return {"before": before, "after": after, "record": record}


def test_reference_run_journals_every_parametrised_step(migrated_reference: dict[str, Any]) -> None:
    record = migrated_reference["record"]
    assert record.outcome == "success"
    journaled = {(s.device, s.step.value) for s in record.steps if s.ok is None}
    assert journaled == {(d, s) for d in DESTINATIONS for s in STEPS}
    before, after = migrated_reference["before"], migrated_reference["after"]
    assert all(before[d] != after[d] for d in DESTINATIONS)  # each destination really changes
    assert all(before[s] == after[s] for s in SOURCES)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("device", DESTINATIONS)
def test_sigkill_then_recover(device: str, step: str, fresh_fabric: Callable[..., Any], tmp_path: Path,
                              migrated_reference: dict[str, Any]) -> None:
    fabric = fresh_fabric()
    topology, environ = lab(fabric)
    journal_path = tmp_path / "journal.sqlite"
    before = snapshot(topology, environ, DESTINATIONS + SOURCES)
    assert before == migrated_reference["before"]

    child = run_child(fabric, environ, journal_path, f"{device}:{step}:1")
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-2000:])

    with SqliteJournal(journal_path) as journal:
        (record,) = journal.unfinished()
        # the kill came right after journaling this step (other devices' threads may have journaled more)
        assert any(s.device == device and s.step.value == step for s in record.steps)
        past_point_of_no_return = any(s.step is Step.CONFIRM for s in record.steps)
        reports = recover(journal, environ=environ)
        assert [r.migration_id for r in reports] == [record.migration_id]
        assert reports[0].ok, reports[0].errors
        assert reports[0].outcome == ("success" if past_point_of_no_return else "rolled-back")
        sealed = journal.get(record.migration_id)
        assert sealed.finished and sealed.recovered
        assert journal.unfinished() == []
        assert recover(journal, environ=environ) == []  # a second recovery does nothing

    expected = migrated_reference["after"] if past_point_of_no_return else migrated_reference["before"]
    after = snapshot(topology, environ, DESTINATIONS + SOURCES)
    assert after == expected
    if past_point_of_no_return:  # the commits were confirmed by recovery, not left to expire
        time.sleep(CONFIRM_TIMEOUT_S + 1.5)
        assert snapshot(topology, environ, DESTINATIONS) == {d: expected[d] for d in DESTINATIONS}

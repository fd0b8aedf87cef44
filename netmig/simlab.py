"""The embedded lab: run an example fabric in netconf-sim and point a topology at it.

``netmig migrate ... --sim examples/two-site`` starts ``fabric.yaml`` of that directory on ephemeral
127.0.0.1 ports, loads its ``topology.yaml`` and rewrites each device's address, port and login from the
simulator's ``devices.json``; host keys are checked against the fabric's own ``known_hosts``. The
simulator's passwords are handed over in a private environment mapping, never through ``os.environ``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from netmig.errors import InputError
from netmig.topology import load_topology
from netmig.topology.model import Credentials, Topology

__all__ = ["SimLab", "sim_lab"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimLab:
    """A running simulated fabric and the topology rewritten to reach it."""

    topology: Topology
    environ: Mapping[str, str]
    state_dir: Path
    fabric: object


def _lab_files(directory: Path) -> tuple[Path, Path]:
    fabric, topology = directory / "fabric.yaml", directory / "topology.yaml"
    for path in (fabric, topology):
        if not path.is_file():
            raise InputError(f"{directory}: --sim needs a directory holding fabric.yaml and topology.yaml "
                             f"({path.name} is missing)")
    return fabric, topology


def rewrite_for_fabric(topology: Topology, devices_json: Path,
                       known_hosts: Path) -> tuple[Topology, dict[str, str]]:
    """The topology with each device's address, port and login taken from the simulator."""
    served = {d["name"]: d for d in json.loads(devices_json.read_text())["devices"]}
    environ: dict[str, str] = {}
    devices = {}
    for name, device in topology.devices.items():
        entry = served.get(name)
        if entry is None:
            raise InputError(f"{topology.source}: device {name} is not in the simulated fabric")
        var = f"NETMIG_SIM_PASSWORD_{name.upper().replace('-', '_')}"
        environ[var] = entry["password"]
        creds = Credentials(entry["username"], password_env=var)
        devices[name] = replace(device, address=entry["host"], port=int(entry["port"]), credentials=creds,
                                known_hosts=known_hosts)
    return replace(topology, devices=devices, known_hosts=known_hosts), environ


@contextmanager
def sim_lab(directory: str | Path, *, state_dir: str | Path | None = None) -> Iterator[SimLab]:
    """Start the example fabric in ``directory`` and yield the topology that reaches it."""
    try:
        from netconf_sim.fabric import running_fabric
    except ImportError as exc:  # pragma: no cover - the simulator ships in the same distribution
        raise InputError("--sim needs the netconf-sim package (pip install -e .)") from exc
    fabric_file, topology_file = _lab_files(Path(directory))
    topology = load_topology(topology_file)
    with ExitStack() as stack:
        if state_dir is None:
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="netmig-sim-"))
        state = Path(state_dir)
        fabric = stack.enter_context(running_fabric(fabric_file, state))
        rewritten, environ = rewrite_for_fabric(topology, fabric.devices_json, fabric.known_hosts)
        log.info("simulated fabric %s running in %s", fabric_file, state)
        yield SimLab(rewritten, environ, state, fabric)

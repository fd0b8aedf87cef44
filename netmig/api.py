"""The library's front door: ``netmig.migrate(vm, source=..., destination=..., topology=...)``."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path

from netmig.errors import InputError
from netmig.feedback import MigrationResult
from netmig.modes.centralized import DryRun, run_centralized
from netmig.options import MigrationOptions, Mode
from netmig.topology import load_topology, resolve
from netmig.topology.model import Topology
from netmig.transaction import StepHook

__all__ = ["migrate", "new_migration_id"]

log = logging.getLogger(__name__)


def new_migration_id() -> str:
    """A fresh, unguessable migration id (``mig-`` and 12 hex digits)."""
    return "mig-" + secrets.token_hex(6)


def migrate(vm_id: str, *, source: str, destination: str, topology: Topology | str | Path,
            options: MigrationOptions | None = None, environ: Mapping[str, str] | None = None,
            on_step: StepHook | None = None, migration_id: str | None = None) -> MigrationResult | DryRun:
    """Move ``vm_id``'s policies and learned state from host ``source`` to host ``destination``.

    Returns the SUCCESS :class:`MigrationResult` (or a :class:`DryRun` when ``options.dry_run``).
    A failure raises a :class:`netmig.errors.NetmigError` subclass whose ``exit_code`` tells its class:
    bad input, device unreachable, translation refused, rolled back cleanly, or rollback incomplete.
    Nothing is half-applied: every destination took the change, or none kept it.
    """
    opts = options if options is not None else MigrationOptions()
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    plan = resolve(topo, vm_id, source, destination)
    mid = migration_id or new_migration_id()
    log.info("migration %s: %s from %s to %s (%s)", mid, vm_id, source, destination, opts.mode.value)
    if opts.mode is not Mode.CENTRALIZED:
        raise InputError(f"mode {opts.mode.value} is not available yet (use --mode centralized)")
    return run_centralized(plan, topo, opts, migration_id=mid, environ=environ, on_step=on_step)

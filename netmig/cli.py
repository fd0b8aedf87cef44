"""The ``netmig`` command: parse arguments, call the library, print one line per error, exit with its code.

Exit codes: 0 SUCCESS; 1 other netmig error; 2 bad input; 3 device unreachable or refusing; 4 policy cannot
be placed (unsupported or conflicting); 5 FAIL, rolled back cleanly everywhere; 6 FAIL, rollback
incomplete (the message names the devices that need a person); 70 internal error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from netmig import cli_batch, cli_journal
from netmig.api import migrate, new_migration_id
from netmig.check import ConflictPolicy
from netmig.errors import InputError, NetmigError, TransactionError
from netmig.feedback import MigrationResult
from netmig.journal import SqliteJournal
from netmig.model import PolicyKind
from netmig.modes.centralized import DryRun
from netmig.options import MigrationOptions, Mode
from netmig.progress import ProgressDisplay
from netmig.settings import CommitPolicy, SshPolicy
from netmig.simlab import sim_lab
from netmig.topology import load_topology
from netmig.topology.model import Topology

__all__ = ["main"]

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

MODE_HELP = """\
modes (seed draft sections 4-6):
  centralized  netmig pulls each source device's policies, translates them through the topology's
               partner map and pushes them in one confirmed-commit transaction. Full control and
               feedback, works with any NETCONF device; netmig does all the work.
  middle       static policies as above; learned state (DI) leaves each source device as an opaque
               blob (export-di), netmig stores it (SQLite, survives a restart) and routes it by the
               partner map, destinations import it into the same confirmed commit. netmig never
               parses DI, so new DI kinds need no netmig upgrade. Devices must implement
               netmig-migration.
  d-push, d-pull
               static policies staged by netmig; then a VDP-style associate (S-bit to the source
               bridge / M-bit to the destination bridge) carrying the partner addresses makes
               devices transfer DI to (push) or from (pull) their partners over NETCONF. The bridge
               names the devices that must report; netmig waits for exactly those (deadline) and
               confirms everywhere or cancels everywhere, naming silent devices.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netmig", description="Move a live-migrating VM's network "
                                     "policies and learned state to its new devices over NETCONF.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log warnings (-vv: each step, -vvv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mig = sub.add_parser("migrate", help="migrate one VM's policies", epilog=MODE_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Migrate VM's static policies and learned state from the devices of "
                         "host FROM to those of host TO; SUCCESS (exit 0) or FAIL with everything "
                         "rolled back.")
    mig.add_argument("vm", help="VM id, e.g. vm-web-01")
    mig.add_argument("--from", dest="source", required=True, metavar="HOST", help="host the VM leaves")
    mig.add_argument("--to", dest="destination", required=True, metavar="HOST", help="host the VM lands on")
    where = mig.add_mutually_exclusive_group(required=True)
    where.add_argument("--topology", type=Path, metavar="FILE", help="topology YAML (netmig-topology model)")
    where.add_argument("--sim", type=Path, metavar="DIR",
                       help="start the simulated fabric in DIR (fabric.yaml + topology.yaml) "
                       "and migrate on it")
    mig.add_argument("--sim-state", type=Path, metavar="DIR", help="keep the simulator's state in DIR")
    mig.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.CENTRALIZED.value)
    mig.add_argument("--allow-drop", action="append", default=[], metavar="KIND",
                     choices=[k.value for k in PolicyKind],
                     help="leave KIND behind where a destination cannot express it (repeatable)")
    mig.add_argument("--on-conflict", choices=[c.value for c in ConflictPolicy],
                     default=ConflictPolicy.FAIL.value,
                     help="fail (default) or leave conflicting kinds out and report them")
    mig.add_argument("--dry-run", action="store_true", help="show the change per device; change nothing")
    mig.add_argument("--format", choices=["text", "xml"], default="text", help="dry-run output format")
    mig.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    mig.add_argument("--cleanup-source", action="store_true",
                     help="after SUCCESS remove the VM's entries from the source devices "
                     "(second transaction)")
    mig.add_argument("--confirm-timeout", type=int, default=60, metavar="S",
                     help="confirmed-commit timeout in seconds (default 60)")
    mig.add_argument("--known-hosts", type=Path, metavar="FILE",
                     help="known_hosts to verify device keys with")
    mig.add_argument("--no-host-key-check", action="store_true",
                     help="do not verify SSH host keys (throw-away labs only; prints a warning)")
    cli_journal.add_journal_option(mig, allow_off=True)
    cli_journal.register(sub)
    cli_batch.patch_migrate(mig)
    cli_batch.register(sub)
    return parser


def _options(args: argparse.Namespace) -> MigrationOptions:
    if args.confirm_timeout < 1:
        raise InputError(f"--confirm-timeout must be at least 1 second, not {args.confirm_timeout}")
    return MigrationOptions(
        mode=Mode(args.mode),
        allow_drop=frozenset(PolicyKind(k) for k in args.allow_drop),
        on_conflict=ConflictPolicy(args.on_conflict),
        dry_run=args.dry_run,
        cleanup_source=args.cleanup_source,
        commit=CommitPolicy(confirm_timeout_s=args.confirm_timeout),
        ssh=SshPolicy(known_hosts=args.known_hosts, verify_host_keys=not args.no_host_key_check),
    )


def _print_result(result: MigrationResult, out: TextIO) -> None:
    total = sum(v for k, v in result.timings_ms.items() if "." not in k)
    out.write(f"{result.outcome.value}  {result.vm_id}  migration {result.migration_id} "
              f"({result.mode}, {total:.0f} ms)\n")
    moved = ", ".join(f"{kind} {n}" for kind, n in sorted(result.moved.items()))
    out.write(f"  moved:    {moved or 'nothing'}\n")
    if result.dropped:
        out.write(f"  dropped:  {', '.join(result.dropped)}\n")
    if result.conflicts:
        out.write(f"  skipped (conflicts): {'; '.join(result.conflicts)}\n")
    phases = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items() if "." not in k)
    out.write(f"  phases:   {phases}\n")
    width = max((len(d.device) for d in result.devices), default=6)
    out.write(f"  {'device':<{width}}  {'outcome':<8} phase\n")
    for dev in result.devices:
        out.write(f"  {dev.device:<{width}}  {'ok' if dev.ok else 'FAILED':<8} {dev.phase_reached.value}\n")


def _print_dry_run(dry: DryRun, fmt: str, out: TextIO) -> None:
    prepared = dry.prepared
    out.write(f"DRY RUN  {prepared.plan.vm_id}: nothing was changed\n")
    if prepared.dropped:
        out.write(f"  would drop: {', '.join(prepared.dropped)}\n")
    for planned in dry.planned:
        check = prepared.checks[planned.device]
        counts = ", ".join(f"{k.value} {n}" for k, n in sorted(check.bundle.counts().items()) if n)
        out.write(f"--- {planned.device} ({planned.address}): + {counts}\n")
        if fmt == "xml":
            out.write(planned.edit_xml)
        else:
            for line in planned.edit_xml.splitlines()[1:-1]:
                out.write(f"+ {line[2:]}\n")
    for line in dry.di_moves:
        out.write(f"  DI: {line}\n")


def _fail_json(exc: NetmigError, vm: str, migration_id: str) -> str:
    outcomes = getattr(exc, "outcomes", ())
    return json.dumps({"migration_id": migration_id, "vm_id": vm, "outcome": "FAIL",
                       "exit_code": exc.exit_code, "error": str(exc), "error_type": type(exc).__name__,
                       "devices": [o.to_dict() for o in outcomes if hasattr(o, "to_dict")]})


def _run_migrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    options = _options(args)
    if not options.ssh.verify_host_keys:
        err.write("netmig: WARNING: SSH host keys are NOT verified (--no-host-key-check)\n")
    migration_id = new_migration_id()
    progress = ProgressDisplay(err, enabled=None if not args.json else False)
    with ExitStack() as stack:
        environ: Mapping[str, str] | None = None
        topology: Topology
        if args.sim is not None:
            lab = stack.enter_context(sim_lab(args.sim, state_dir=args.sim_state))
            topology, environ = lab.topology, lab.environ
        else:
            topology = load_topology(args.topology)
        journal = None if args.no_journal or args.dry_run else stack.enter_context(
            SqliteJournal(cli_journal.journal_path(args)))
        try:
            result = migrate(args.vm, source=args.source, destination=args.destination, topology=topology,
                             options=options, environ=environ, on_step=progress.step,
                             migration_id=migration_id, journal=journal)
        except NetmigError as exc:
            progress.close()
            if args.json:
                out.write(_fail_json(exc, args.vm, migration_id) + "\n")
            raise
        progress.close()
    if isinstance(result, DryRun):
        _print_dry_run(result, args.format, out)
        return 0
    if args.json:
        out.write(result.to_json(indent=2) + "\n")
    else:
        _print_result(result, out)
    return 0 if result.ok else 5


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the ``netmig`` console script; returns the exit code."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    # Quiet by default: the one FAIL line says what went wrong; -v shows the warnings and steps behind it.
    level = (logging.CRITICAL if args.verbose == 0 else logging.WARNING if args.verbose == 1
             else logging.INFO if args.verbose == 2 else logging.DEBUG)
    logging.basicConfig(level=level, stream=stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command in cli_journal.COMMANDS:
            return cli_journal.run(args, stdout, stderr)
        if cli_batch.wants(args):  # prepare, commit-migration, migrate --batch/--prestage
            return cli_batch.run(args, stdout, stderr)
        return _run_migrate(args, stdout, stderr)
    except TransactionError as exc:
        stderr.write(f"FAIL  {args.vm}: {exc}\n")
        return exc.exit_code
    except NetmigError as exc:
        prefix = f"FAIL  {args.vm}: " if getattr(args, "vm", None) else "netmig: "
        stderr.write(f"{prefix}{exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        stderr.write("netmig: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place a foreign error is allowed to stop: one line, no traceback
        if args.verbose > 2:
            raise
        stderr.write(f"netmig: internal error: {type(exc).__name__}: {exc} (run with -vvv for details)\n")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

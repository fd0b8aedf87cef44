"""CLI of issue 7: ``netmig prepare`` / ``netmig commit-migration`` (pre-staging across two commands),
``netmig migrate --prestage`` (both phases in one process) and ``netmig migrate --batch FILE``.

The staged candidates are locked by the sessions that staged them, so they cannot be handed from one
process to another. ``netmig prepare`` therefore stages and then stays in the foreground holding the
sessions, listening on a private Unix socket (``--socket-dir``, mode 0700) named after the stage id;
``netmig commit-migration STAGE-ID`` (at suspension) tells it to commit and prints its result, or
``--abort`` to discard. A stage nobody commits within ``--hold`` seconds is discarded; so is one whose
``prepare`` process is interrupted. If that process dies, its sessions drop and the devices release the
locks and discard the staged candidates themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

from netmig.errors import InputError, NetmigError
from netmig.topology.model import Topology

__all__ = ["COMMANDS", "patch_migrate", "register", "run", "wants"]

COMMANDS = ("prepare", "commit-migration")


def _socket_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "netmig" if base else Path(f"/tmp/netmig-{os.getuid()}")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("vm", help="VM id")
    parser.add_argument("--from", dest="source", required=True, metavar="HOST")
    parser.add_argument("--to", dest="destination", required=True, metavar="HOST")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--topology", type=Path, metavar="FILE")
    where.add_argument("--sim", type=Path, metavar="DIR")


def register(sub: Any) -> None:
    """Add ``prepare`` and ``commit-migration`` to the ``netmig`` subcommands."""
    from netmig.model import PolicyKind

    prep = sub.add_parser("prepare", help="pre-stage a VM's migration while it runs (phase one)",
                          description="Pull, translate, check and stage the VM's policies on the destination "
                          "devices (candidates locked and validated), then hold them until "
                          "'netmig commit-migration STAGE-ID' (at suspension) or --hold runs out.")
    _common(prep)
    prep.add_argument("--sim-state", type=Path, metavar="DIR")
    prep.add_argument("--allow-drop", action="append", default=[], metavar="KIND",
                      choices=[k.value for k in PolicyKind])
    prep.add_argument("--confirm-timeout", type=int, default=60, metavar="S")
    prep.add_argument("--known-hosts", type=Path, metavar="FILE")
    prep.add_argument("--hold", type=float, default=600.0, metavar="S",
                      help="discard the stage when nobody commits it within S seconds (default 600)")
    prep.add_argument("--socket-dir", type=Path, metavar="DIR")
    com = sub.add_parser("commit-migration", help="commit a pre-staged migration (phase two, at suspension)")
    com.add_argument("stage", metavar="STAGE-ID")
    com.add_argument("--abort", action="store_true", help="discard the stage instead")
    com.add_argument("--socket-dir", type=Path, metavar="DIR")
    com.add_argument("--json", action="store_true")


def patch_migrate(mig: argparse.ArgumentParser) -> None:
    """Give ``netmig migrate`` ``--batch FILE`` and ``--prestage`` (VM, --from and --to become optional
    with --batch; :func:`wants` checks them otherwise)."""
    for action in mig._actions:
        if action.dest == "vm":
            action.nargs = "?"
        if action.dest in ("source", "destination"):
            action.required = False
    mig.add_argument("--batch", type=Path, metavar="FILE",
                     help="migrate every VM of FILE (CSV vm,from,to or YAML list), grouped per device "
                          "(--mode centralized, middle, d-push or d-pull)")
    mig.add_argument("--prestage", action="store_true",
                     help="stage first, then commit, reporting the suspension phase apart")
    mig.add_argument("--workers", type=int, default=4, help="--batch: VMs prepared in parallel")
    mig.add_argument("--group-size", type=int, default=1000, help="--batch: VMs per group commit")


def wants(args: argparse.Namespace) -> bool:
    """Is this a command of this module? Raises InputError for a migrate missing VM/--from/--to."""
    if args.command in COMMANDS:
        return True
    if args.command != "migrate":
        return False
    if getattr(args, "batch", None) is not None:
        if args.vm or args.source or args.destination:
            raise InputError("--batch takes the VMs from the file: give no VM, --from or --to")
        return True
    if not (args.vm and args.source and args.destination):
        raise InputError("migrate needs VM, --from and --to (or --batch FILE)")
    return bool(getattr(args, "prestage", False))


@contextmanager
def _topology(args: argparse.Namespace) -> Iterator[tuple[Topology, Mapping[str, str] | None]]:
    from netmig.simlab import sim_lab
    from netmig.topology import load_topology

    with ExitStack() as stack:
        if args.sim is not None:
            lab = stack.enter_context(sim_lab(args.sim, state_dir=getattr(args, "sim_state", None)))
            yield lab.topology, lab.environ
        else:
            yield load_topology(args.topology), None


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "prepare":
        return _prepare(args, out, err)
    if args.command == "commit-migration":
        return _commit(args, out)
    if args.batch is not None:
        return _batch(args, out)
    return _prestage(args, out)


def _options(args: argparse.Namespace) -> Any:
    if args.command == "migrate":
        from netmig.cli import _options as migrate_options
        return migrate_options(args)
    from netmig.model import PolicyKind
    from netmig.options import MigrationOptions
    from netmig.settings import CommitPolicy, SshPolicy
    return MigrationOptions(allow_drop=frozenset(PolicyKind(k) for k in args.allow_drop),
                            commit=CommitPolicy(confirm_timeout_s=args.confirm_timeout),
                            ssh=SshPolicy(known_hosts=args.known_hosts))


def _print(result: Any, out: TextIO, as_json: bool) -> None:
    if as_json:
        out.write(result.to_json(indent=2) + "\n")
        return
    t = result.timings_ms
    out.write(f"{result.outcome.value}  {result.vm_id}  stage {result.migration_id}: suspension "
              f"{t.get('suspension', 0):.1f} ms (pre-copy while running {t.get('pre-copy', 0):.0f} ms)\n")
    for dev in result.devices:
        out.write(f"  {dev.device}  {'ok' if dev.ok else 'FAILED'}  {dev.phase_reached.value}\n")


def _prestage(args: argparse.Namespace, out: TextIO) -> int:
    from netmig import staging
    with _topology(args) as (topo, environ):
        stage = staging.prepare(args.vm, source=args.source, destination=args.destination, topology=topo,
                                options=_options(args), environ=environ)
        with stage:
            result = stage.commit()
    _print(result, out, args.json)
    return 0


def _batch(args: argparse.Namespace, out: TextIO) -> int:
    """``migrate --batch``: journaled as a single migration is (``--journal``, default under
    ``$NETMIG_HOME``; ``--no-journal`` to skip), one journal record per group (d-push/d-pull: per try)."""
    from netmig.batch import load_batch, migrate_many
    from netmig.cli_journal import journal_path
    from netmig.journal import SqliteJournal

    items = load_batch(args.batch)
    options = _options(args)
    with _topology(args) as (topo, environ), ExitStack() as stack:
        journal = None if args.no_journal else stack.enter_context(SqliteJournal(journal_path(args)))
        result = migrate_many(items, topology=topo, options=options, environ=environ,
                              workers=args.workers, group_size=args.group_size, journal=journal)
    if args.json:
        out.write(json.dumps({"results": [r.to_dict() for r in result.results],
                              "timings_ms": dict(result.timings_ms)}, indent=2) + "\n")
    else:
        for r in result.results:
            out.write(f"{r.outcome.value:<8} {r.vm}" + (f"  {r.error}" if r.error else "") + "\n")
        out.write(f"{len(result.succeeded)} of {len(result.results)} VMs moved in "
                  f"{result.timings_ms.get('total', 0) / 1000:.1f} s\n")
    return 0 if not result.failed else 5


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the ``with stage`` discards and unlocks on the way out


def _prepare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from netmig import staging
    directory = _socket_dir(args.socket_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o077:
        raise InputError(f"{directory}: the socket directory must be yours and private (mode 0700)")
    with _topology(args) as (topo, environ):
        stage = staging.prepare(args.vm, source=args.source, destination=args.destination, topology=topo,
                                options=_options(args), environ=environ)
        path = directory / f"{stage.id}.sock"
        with stage, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            try:
                server.listen(1)
                server.settimeout(args.hold)
                out.write(f"STAGED {stage.id}  {args.vm}: candidates locked and validated on "
                          f"{', '.join(c.endpoint.name for c in stage.prepared.changes)} "
                          f"(pre-copy {stage.timings_ms['pre-copy']:.0f} ms); "
                          f"run 'netmig commit-migration {stage.id}' at suspension\n")
                out.flush()
                signal.signal(signal.SIGTERM, _interrupted)
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    err.write(f"netmig: stage {stage.id}: nobody committed within {args.hold:g} s; "
                              "discarded\n")
                    return 5
                with conn:
                    command = conn.makefile("r").readline().strip()
                    if command != "commit":
                        stage.abort()
                        conn.sendall(json.dumps({"outcome": "ABORTED", "stage": stage.id}).encode())
                        out.write(f"ABORTED {stage.id}\n")
                        return 5
                    try:
                        result = stage.commit(migration_id=stage.id)
                    except NetmigError as exc:
                        conn.sendall(json.dumps({"outcome": "FAIL", "error": str(exc),
                                                 "exit_code": exc.exit_code}).encode())
                        raise
                    conn.sendall(result.to_json().encode())
            finally:
                path.unlink(missing_ok=True)
    _print(result, out, False)
    return 0


def _commit(args: argparse.Namespace, out: TextIO) -> int:
    path = _socket_dir(args.socket_dir) / f"{args.stage}.sock"
    if "/" in args.stage or not path.exists():
        raise InputError(f"no staged migration {args.stage} (is its 'netmig prepare' still running?)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        client.sendall(b"abort\n" if args.abort else b"commit\n")
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks) or b"{}")
    if args.json or reply.get("outcome") != "SUCCESS":
        out.write(json.dumps(reply, indent=2) + "\n")
    else:
        ms = reply.get("timings_ms", {}).get("suspension", 0)
        out.write(f"SUCCESS  {reply['vm_id']}  stage {args.stage}: suspension {ms:.1f} ms\n")
    if reply.get("outcome") == "SUCCESS":
        return 0
    return int(reply.get("exit_code", 5))


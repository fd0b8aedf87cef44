"""The journal's commands: ``netmig status``, ``history``, ``rollback MIGRATION-ID`` and ``recover``.

Each reads (and for rollback and recover, writes) the journal at ``--journal`` (default
``$NETMIG_HOME/journal.sqlite``). Device passwords come from the environment variables the journaled
plan names, as for ``migrate``; nothing secret is ever printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from netmig.errors import NetmigError, TransactionError
from netmig.journal import MigrationRecord, SqliteJournal, default_journal_path
from netmig.recovery import RecoveryReport, recover, rollback_migration
from netmig.recovery_rules import recovery_decision
from netmig.settings import CommitPolicy, SshPolicy

__all__ = ["COMMANDS", "add_journal_option", "journal_path", "register", "run"]

COMMANDS = ("status", "history", "rollback", "recover")


def add_journal_option(parser: argparse.ArgumentParser, *, allow_off: bool = False) -> None:
    """``--journal PATH`` (and ``--no-journal`` for commands that can run without one)."""
    parser.add_argument("--journal", type=Path, metavar="PATH",
                        help="journal file (default $NETMIG_HOME/journal.sqlite, "
                        "NETMIG_HOME defaulting to ~/.local/state/netmig)")
    if allow_off:
        parser.add_argument("--no-journal", action="store_true",
                            help="do not journal this migration (no recovery after a crash)")


def journal_path(args: argparse.Namespace) -> Path:
    path: Path | None = getattr(args, "journal", None)
    return path if path is not None else default_journal_path()


def register(sub: Any) -> None:
    """Add the journal subcommands to the ``netmig`` subparsers."""
    status = sub.add_parser("status", help="unfinished migrations and the last one")
    status.add_argument("--json", action="store_true", help="print JSON")
    add_journal_option(status)
    history = sub.add_parser("history", help="journaled migrations, newest first")
    history.add_argument("--vm", metavar="VM", help="only this VM")
    history.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")
    history.add_argument("--json", action="store_true", help="print JSON (steps included)")
    add_journal_option(history)
    rollback = sub.add_parser("rollback", help="undo a completed migration",
                              description="Remove what migration MIGRATION-ID added on its destinations "
                              "and restore the source entries --cleanup-source removed, in one confirmed "
                              "transaction; journaled as a migration of mode rollback.")
    rollback.add_argument("migration_id", metavar="MIGRATION-ID")
    rollback.add_argument("--confirm-timeout", type=int, default=60, metavar="S")
    rollback.add_argument("--known-hosts", type=Path, metavar="FILE")
    rollback.add_argument("--json", action="store_true", help="print the result as JSON")
    add_journal_option(rollback)
    rec = sub.add_parser("recover", help="settle interrupted migrations (confirm or cancel by persist-id)")
    rec.add_argument("--known-hosts", type=Path, metavar="FILE")
    rec.add_argument("--json", action="store_true", help="print JSON")
    add_journal_option(rec)


def _brief(record: MigrationRecord) -> dict[str, object]:
    state = record.outcome if record.finished else "UNFINISHED"
    return {"migration_id": record.migration_id, "vm_id": record.vm_id, "mode": record.mode,
            "from": record.source_host, "to": record.destination_host,
            "started_at": record.started_at.isoformat(timespec="seconds"),
            "finished_at": record.finished_at.isoformat(timespec="seconds") if record.finished_at else None,
            "outcome": state, "recovered": record.recovered, "devices": list(record.devices),
            "rollback_of": record.plan.get("rollback-of"), "vms": list(record.vms),
            "group": record.group is not None}


def _table(records: list[MigrationRecord], out: TextIO) -> None:
    rows = [("MIGRATION", "VM", "MODE", "FROM", "TO", "STARTED", "OUTCOME")]
    for r in records:
        b = _brief(r)
        outcome = str(b["outcome"]) + (" (recovered)" if r.recovered else "")
        if b["rollback_of"]:
            outcome += f" (of {b['rollback_of']})"
        rows.append((r.migration_id, r.vm_id, r.mode, r.source_host, r.destination_host,
                     str(b["started_at"]), outcome))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _status(journal: SqliteJournal, args: argparse.Namespace, out: TextIO) -> int:
    unfinished = journal.unfinished()
    last = journal.history(limit=1)
    if args.json:
        out.write(json.dumps({"unfinished": [{**_brief(r), "recovery": [
            {"device": d.device, "action": d.action.value, "reason": d.reason}
            for d in recovery_decision(r).devices]} for r in unfinished],
            "last": _brief(last[0]) if last else None}, indent=2) + "\n")
        return 0
    if unfinished:
        out.write(f"{len(unfinished)} unfinished migration(s) (run netmig recover):\n")
        _table(unfinished, out)
    else:
        out.write("no unfinished migrations\n")
    if last:
        out.write("last:\n")
        _table(last, out)
    return 0


def _history(journal: SqliteJournal, args: argparse.Namespace, out: TextIO) -> int:
    if args.limit < 1:
        raise NetmigError(f"--limit must be at least 1, not {args.limit}")
    records = journal.history(limit=args.limit, vm_id=args.vm)
    if args.json:
        items = []
        for r in records:
            steps = [{"seq": s.seq, "device": s.device, "step": s.step.value, "ok": s.ok,
                      "persist_id": s.persist_id, "at": s.at.isoformat(), "detail": s.detail}
                     for s in r.steps]
            items.append({**_brief(r), "summary": r.summary, "recovery_note": r.recovery_note,
                          "steps": steps})
        out.write(json.dumps(items, indent=2) + "\n")
    elif records:
        _table(records, out)
    else:
        out.write("no migrations journaled\n")
    return 0


def _report_json(report: RecoveryReport) -> dict[str, object]:
    return {"migration_id": report.migration_id, "vm_id": report.vm_id, "outcome": report.outcome or None,
            "actions": list(report.actions), "errors": list(report.errors), "skipped": report.skipped,
            "vms": list(report.vms)}


def _recover(journal: SqliteJournal, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    reports = recover(journal, ssh=SshPolicy(known_hosts=args.known_hosts))
    if args.json:
        out.write(json.dumps([_report_json(r) for r in reports], indent=2) + "\n")
    elif not reports:
        out.write("nothing to recover\n")
    for report in reports:
        if not args.json:
            what = (report.skipped and f"skipped: {report.skipped}") or report.outcome or "left unfinished"
            out.write(f"{report.migration_id}  {report.vm_id}: {what}\n")
            if report.vms != (report.vm_id,):  # a batch group: the VMs it held
                out.write(f"  VMs of the group ({len(report.vms)}): {', '.join(report.vms)}\n")
            for line in report.actions:
                out.write(f"  {line}\n")
        for line in report.errors:
            err.write(f"netmig: recover {report.migration_id}: {line}\n")
    return 0 if all(r.ok or r.skipped for r in reports) else 6


def _rollback(journal: SqliteJournal, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.confirm_timeout < 1:
        raise NetmigError(f"--confirm-timeout must be at least 1 second, not {args.confirm_timeout}")
    try:
        result = rollback_migration(journal, args.migration_id, ssh=SshPolicy(known_hosts=args.known_hosts),
                                    commit=CommitPolicy(confirm_timeout_s=args.confirm_timeout))
    except TransactionError as exc:
        err.write(f"FAIL  rollback of {args.migration_id}: {exc}\n")
        return exc.exit_code
    if args.json:
        out.write(json.dumps({"migration_id": result.migration_id, "rollback_of": result.rollback_of,
                              "vm_id": result.vm_id, "outcome": "SUCCESS",
                              "restored_sources": list(result.restored_sources),
                              "devices": [d.to_dict() for d in result.devices]}, indent=2) + "\n")
    else:
        out.write(f"SUCCESS  {result.vm_id}  rollback {result.migration_id} of {result.rollback_of}\n")
        for dev in result.devices:
            out.write(f"  {dev.device}  {'ok' if dev.ok else 'FAILED'}  {dev.phase_reached.value}\n")
        if result.restored_sources:
            out.write(f"  restored on the source: {', '.join(result.restored_sources)}\n")
    return 0


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run a journal command; NetmigError subclasses propagate to the CLI's one-line handler."""
    with SqliteJournal(journal_path(args)) as journal:
        if args.command == "status":
            return _status(journal, args, out)
        if args.command == "history":
            return _history(journal, args, out)
        if args.command == "recover":
            return _recover(journal, args, out, err)
        return _rollback(journal, args, out, err)

"""withdraw-di against netconf-sim over SSH: a device undoes exactly what a migration's imports created.

a-leaf1 (IETF) exports vm-web-01's DI; b-leaf1 (acme) imports it under a migration-id, commits, and is
then asked to withdraw that migration's imports: from the importing session or from a new one. Entries
the candidate held before the import (another migration's) survive, and the reply counts the removals.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from netconf_sim.fabric import Fabric, running_fabric

from netmig.errors import RpcError
from netmig.modes.middle import MIGRATION_NS, withdraw_op
from netmig.netconf import DeviceSession
from netmig.settings import Credentials, DeviceEndpoint, SshPolicy, Timeouts
from netmig.xmlkit import Element, element, sub, text_of

ROOT = Path(__file__).resolve().parents[2]
FABRIC = ROOT / "examples" / "two-site" / "fabric.yaml"
FAST = Timeouts(connect_s=5, rpc_s=10, connect_attempts=2, connect_backoff_s=0.01)
VM = "vm-web-01"
KINDS = ("mac-entry", "arp-entry", "dhcp-binding")


@pytest.fixture
def fab(tmp_path: Path) -> Iterator[Fabric]:
    with running_fabric(FABRIC, tmp_path / "fabric") as fabric:
        yield fabric


def session(fab: Fabric, name: str) -> DeviceSession:
    e = fab.endpoints[name]
    endpoint = DeviceEndpoint(name, e.host, e.port, Credentials(e.username, e.password))
    return DeviceSession(endpoint, ssh=SshPolicy(known_hosts=fab.known_hosts, allow_agent=False),
                         timeouts=FAST)


def export(fab: Fabric) -> dict[str, str]:
    op = element(MIGRATION_NS, "export-di")
    sub(op, MIGRATION_NS, "migration-id", "m-export")
    sub(op, MIGRATION_NS, "vm-id", VM)
    with session(fab, "a-leaf1") as s:
        reply = s.rpc(op)
    return {n: text_of(reply, MIGRATION_NS, n) or "" for n in ("blob", "content-type", "sha256")}


def import_op(migration_id: str, blob: dict[str, str], kinds: tuple[str, ...]) -> Element:
    op = element(MIGRATION_NS, "import-di")
    sub(op, MIGRATION_NS, "migration-id", migration_id)
    sub(op, MIGRATION_NS, "vm-id", VM)
    for name in ("blob", "content-type", "sha256"):
        sub(op, MIGRATION_NS, name, blob[name])
    for kind in kinds:
        sub(op, MIGRATION_NS, "kind", kind)
    return op


def count(reply: Element) -> int:
    return int(text_of(reply, MIGRATION_NS, "entry-count") or -1)


def seeded(fab: Fabric, kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    """vm-web-01's seeded entries b-leaf1 holds (committed), per kind."""
    tables = fab.device("b-leaf1").learned
    return {k: sum(1 for e in tables.entries(k) if e.vm_id == VM and e.origin == "seeded") for k in kinds}


def imported(fab: Fabric, migration_id: str, blob: dict[str, str], kinds: tuple[str, ...]) -> int:
    """Import into b-leaf1 under ``migration_id`` and commit; the import's entry-count."""
    with session(fab, "b-leaf1") as s, s.locked("candidate"):
        n = count(s.rpc(import_op(migration_id, blob, kinds)))
        s.commit()
    return n


def test_withdraw_removes_only_what_the_import_created(fab: Fabric) -> None:
    blob = export(fab)
    assert seeded(fab) == dict.fromkeys(KINDS, 0)
    macs = imported(fab, "m-earlier", blob, ("mac-entry",))  # entries another migration left
    assert macs > 0 and seeded(fab)["mac-entry"] == macs
    total = imported(fab, "m-now", blob, KINDS)
    held = seeded(fab)
    assert total == sum(held.values()) and held["arp-entry"] > 0 and held["dhcp-binding"] > 0
    with session(fab, "b-leaf1") as s, s.locked("candidate"):
        removed = count(s.rpc(withdraw_op("m-now", VM)))
        s.commit()
    assert removed == total - macs  # the MAC entries were there before m-now's import: not its own
    assert seeded(fab) == {"mac-entry": macs, "arp-entry": 0, "dhcp-binding": 0}


def test_withdraw_from_a_new_session_and_twice(fab: Fabric) -> None:
    blob = export(fab)
    total = imported(fab, "m-1", blob, KINDS)
    assert total > 0 and sum(seeded(fab).values()) == total
    with session(fab, "b-leaf1") as s, s.locked("candidate"):  # not the session that imported
        assert count(s.rpc(withdraw_op("m-1", VM))) == total
        s.commit()
    assert sum(seeded(fab).values()) == 0
    with session(fab, "b-leaf1") as s, s.locked("candidate"):  # nothing of m-1 is left to remove
        assert count(s.rpc(withdraw_op("m-1", VM))) == 0
        assert count(s.rpc(withdraw_op("m-never", VM))) == 0


def test_withdraw_respects_locks_and_the_vm(fab: Fabric) -> None:
    blob = export(fab)
    total = imported(fab, "m-2", blob, KINDS)
    with session(fab, "b-leaf1") as holder, holder.locked("candidate"), session(fab, "b-leaf1") as other:
        with pytest.raises(RpcError) as locked:
            other.rpc(withdraw_op("m-2", VM))
        assert locked.value.tag == "in-use"
        with pytest.raises(RpcError) as wrong:
            holder.rpc(withdraw_op("m-2", "vm-db-01"))
        assert wrong.value.tag == "invalid-value"
        holder.discard_changes()
    assert sum(seeded(fab).values()) == total  # nothing was withdrawn


def test_imports_and_withdraws_find_entries_by_key(fab: Fabric, monkeypatch: pytest.MonkeyPatch) -> None:
    """No import-di or withdraw-di reads the device's whole seeded container (each costs its own entries),
    and the ledger still forgets a record whose entries were rolled back: its id can be used again."""
    from netconf_sim.migration import MigrationAgent

    def whole_container(self: MigrationAgent, datastore: str) -> None:
        raise AssertionError(f"{self.name} read every seeded entry of {datastore}")

    monkeypatch.setattr(MigrationAgent, "seeded_in", whole_container)
    blob = export(fab)
    macs = imported(fab, "m-earlier", blob, ("mac-entry",))
    total = imported(fab, "m-now", blob, KINDS)
    with session(fab, "b-leaf1") as s, s.locked("candidate"):
        assert count(s.rpc(withdraw_op("m-now", VM))) == total - macs
        s.commit()
    assert seeded(fab) == {"mac-entry": macs, "arp-entry": 0, "dhcp-binding": 0}
    agent = fab.device("b-leaf1").migration
    assert agent is not None
    ledger = agent.ledger
    with session(fab, "b-leaf1") as s, s.locked("candidate"):  # imported, then discarded: nothing held
        assert count(s.rpc(import_op("m-gone", blob, ("arp-entry",)))) > 0
        s.discard_changes()
    assert "m-gone" in ledger
    with session(fab, "b-leaf1") as s, s.locked("candidate"):
        assert count(s.rpc(withdraw_op("m-gone", VM))) == 0
    assert "m-gone" not in ledger  # looked up, settled, none of its entries held: forgotten


def test_an_import_checks_conflicts_by_key_without_reading_the_seeded_tables(
        fab: Fabric, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a commit the learned tables re-read every seeded entry on first use; an import's conflict
    check must not need that (a commit per import would make each import cost the device). It still
    finds a committed seeded entry of another VM at the same key."""
    from netconf_sim.learned import LearnedTables

    blob = export(fab)
    total = imported(fab, "m-first", blob, KINDS)
    assert total > 0

    def whole_table(self: LearnedTables) -> None:
        raise AssertionError("an import read every seeded entry")

    monkeypatch.setattr(LearnedTables, "_seeded_now", whole_table)
    assert imported(fab, "m-again", blob, KINDS) == total  # the same VM's entries: no conflict
    # the same entries, claimed for another VM: committed vm-web-01 entries at those keys conflict
    data = base64.b64decode(blob["blob"]).replace(f'vm-id="{VM}"'.encode(), b'vm-id="vm-db-01"')
    theirs = {**blob, "blob": base64.b64encode(data).decode(), "sha256": hashlib.sha256(data).hexdigest()}
    other = import_op("m-other", theirs, ("arp-entry",))
    other.find(f"{{{MIGRATION_NS}}}vm-id").text = "vm-db-01"  # type: ignore[union-attr]
    with session(fab, "b-leaf1") as s, s.locked("candidate"), pytest.raises(RpcError) as refused:
        s.rpc(other)
    assert refused.value.tag == "data-exists" and VM in str(refused.value), refused.value
    monkeypatch.undo()
    assert sum(seeded(fab).values()) == total

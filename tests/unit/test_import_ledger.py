"""netconf-sim's ImportLedger: which records withdraw-di still finds, and when they are forgotten."""

from __future__ import annotations

from netconf_sim.ledger import ImportLedger

MAC = ("mac-entry", ("00:00:5e:00:53:01", "2110"))
ARP = ("arp-entry", ("192.0.2.10",))


def test_records_accumulate_per_migration() -> None:
    ledger = ImportLedger()
    ledger.note("m-1", "vm-1", {MAC}, set())
    ledger.note("m-1", "vm-1", {ARP}, set())
    record = ledger.get("m-1")
    assert record is not None and record.created == {MAC, ARP} and record.vm_id == "vm-1"
    assert ledger.get("m-2") is None


def test_kept_while_held_or_pending_forgotten_when_gone_and_settled() -> None:
    ledger = ImportLedger()
    ledger.note("m-1", "vm-1", {MAC}, set())
    ledger.prune(lambda: {MAC}, settled=True)
    assert "m-1" in ledger  # running or candidate still holds its entry
    ledger.prune(lambda: set(), settled=False)
    assert "m-1" in ledger  # a confirmed commit is pending: it may bring the entry back
    ledger.prune(lambda: set(), settled=True)
    assert "m-1" not in ledger


def test_forgotten_after_the_ttl_even_when_held() -> None:
    now = [0.0]
    ledger = ImportLedger(ttl_s=3600, clock=lambda: now[0])
    ledger.note("m-1", "vm-1", set(), {ARP})
    now[0] = 3599
    ledger.prune(lambda: {ARP}, settled=True)
    assert "m-1" in ledger
    now[0] = 3601
    ledger.prune(lambda: {ARP}, settled=True)
    assert "m-1" not in ledger


def test_expire_forgets_the_oldest_first_and_stops_at_the_first_live() -> None:
    now = [0.0]
    ledger = ImportLedger(ttl_s=10, clock=lambda: now[0])
    for n in range(5):
        now[0] = float(n)
        ledger.note(f"m-{n}", "vm-1", {MAC}, set())
    ledger.note("m-0", "vm-1", {ARP}, set())  # a later import keeps the record's age
    now[0] = 12.5
    ledger.expire()
    assert [m for m in (f"m-{n}" for n in range(5)) if m in ledger] == ["m-3", "m-4"]
    assert len(ledger) == 2


def test_settle_forgets_one_record_by_key_only_when_settled_and_gone() -> None:
    ledger = ImportLedger()
    ledger.note("m-1", "vm-1", {MAC, ARP}, set())
    ledger.note("m-2", "vm-2", set(), set())
    asked: list[object] = []

    def holds(name: object) -> bool:
        asked.append(name)
        return name == ARP

    ledger.settle("m-1", holds, settled=True)
    assert "m-1" in ledger  # ARP still held
    ledger.settle("m-1", lambda name: False, settled=False)
    assert "m-1" in ledger  # pending: may come back
    ledger.settle("m-1", lambda name: False, settled=True)
    assert "m-1" not in ledger and "m-2" in ledger  # only the record asked about is looked at
    assert set(asked) <= {MAC, ARP}

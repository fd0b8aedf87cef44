"""The network-wide transaction against three simulated acme devices over SSH, with injected failures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netconf_sim.fabric import Fabric, running_fabric

from netmig.errors import MigrationRolledBackError
from netmig.feedback import DevicePhase
from netmig.netconf import DeviceSession
from netmig.settings import CommitPolicy, Credentials, DeviceEndpoint, SshPolicy, Timeouts
from netmig.transaction import DeviceChange, NetworkTransaction, Step
from netmig.xmlkit import NC_NS, Element, element, sub, to_bytes

ROOT = Path(__file__).resolve().parents[2]
FABRIC = ROOT / "examples" / "two-site" / "fabric.yaml"
ACME = "urn:acme:yang:acme-fabric"
NS = {"a": ACME}
DEVICES = ("b-leaf1", "b-fw1", "b-nat1")
FAST = Timeouts(connect_s=5, rpc_s=10, connect_attempts=2, connect_backoff_s=0.01)


@pytest.fixture(scope="module")
def fab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    with running_fabric(FABRIC, tmp_path_factory.mktemp("fabric")) as fabric:
        yield fabric


def ssh(fab: Fabric) -> SshPolicy:
    return SshPolicy(known_hosts=fab.known_hosts, allow_agent=False)


def endpoint(fab: Fabric, name: str) -> DeviceEndpoint:
    e = fab.endpoints[name]
    return DeviceEndpoint(name, e.host, e.port, Credentials(e.username, e.password))


def acme_config() -> tuple[Element, Element]:
    config = element(NC_NS, "config")
    return config, sub(config, ACME, "acme-fabric")


def expect(xpath: str, want: str, **params: str) -> Callable[[Element], list[str]]:
    """A verify callback: running must hold ``want`` at ``xpath``."""
    def verify(running: Element) -> list[str]:
        got = running.xpath(xpath, namespaces=NS, **params)
        assert isinstance(got, list)
        return [] if [str(g) for g in got] == [want] else [f"{xpath} is {got}, expected {want}"]
    return verify


def changes(fab: Fabric, tag: str, *, bad_device: str | None = None) -> list[DeviceChange]:
    """Three changes keyed by ``tag``: a port VLAN on the leaf, a policy on the firewall, a NAT mapping."""
    number = sum(map(ord, tag)) % 200 + 20
    port = f"ethernet-7/{number}"
    leaf, top = acme_config()
    p = sub(top, ACME, "port")
    sub(p, ACME, "name", port)
    sub(p, ACME, "vlan", number)
    fw, top = acme_config()
    pol = sub(sub(top, ACME, "security"), ACME, "policy")
    sub(pol, ACME, "id", f"vm-{tag}.allow")
    sub(pol, ACME, "order", number)
    sub(pol, ACME, "then", "permit")
    nat, top = acme_config()
    st = sub(sub(top, ACME, "nat"), ACME, "static")
    sub(st, ACME, "inside", f"10.77.0.{number}")
    sub(st, ACME, "outside", f"203.0.113.{number}")
    edits = {"b-leaf1": (leaf, expect("//a:port[a:name=$k]/a:vlan/text()", str(number), k=port)),
             "b-fw1": (fw, expect("//a:policy[a:id=$k]/a:order/text()", str(number), k=f"vm-{tag}.allow")),
             "b-nat1": (nat, expect("//a:static[a:inside=$k]/a:outside/text()", f"203.0.113.{number}",
                                    k=f"10.77.0.{number}"))}
    if bad_device is not None:
        bad_edit = edits[bad_device][0]
        sub(bad_edit[0][0], ACME, "no-such-leaf", "1")
    return [DeviceChange(endpoint(fab, name), edit, verify) for name, (edit, verify) in edits.items()]


def snapshot(fab: Fabric) -> dict[str, tuple[bytes, bytes]]:
    """Running and candidate of every device, read over a separate session."""
    out = {}
    for name in DEVICES:
        with DeviceSession(endpoint(fab, name), ssh=ssh(fab), timeouts=FAST) as s:
            out[name] = (to_bytes(s.get_config("running")), to_bytes(s.get_config("candidate")))
    return out


def can_lock_all(fab: Fabric) -> bool:
    for name in DEVICES:
        with DeviceSession(endpoint(fab, name), ssh=ssh(fab), timeouts=FAST) as s, s.locked("candidate"):
            pass
    return True


class Recorder:
    def __init__(self) -> None:
        self.steps: list[tuple[str, Step]] = []
        self._lock = threading.Lock()

    def __call__(self, device: str, step: Step) -> None:
        with self._lock:
            self.steps.append((device, step))

    def of(self, device: str) -> list[Step]:
        return [s for d, s in self.steps if d == device]


def test_success_on_three_devices_verified_by_an_independent_read(fab: Fabric) -> None:
    rec = Recorder()
    tx = NetworkTransaction(changes(fab, "ok"), ssh=ssh(fab), timeouts=FAST, on_step=rec)
    assert len(set(tx.persist_ids.values())) == 3
    outcomes = tx.run()
    want = [(d, True, DevicePhase.DONE) for d in DEVICES]
    assert [(o.device, o.ok, o.phase_reached) for o in outcomes] == want
    assert rec.of("b-leaf1") == [Step.CONNECT, Step.CHECK, Step.LOCK, Step.DISCARD, Step.EDIT, Step.VALIDATE,
                                 Step.COMMIT_CONFIRMED, Step.VERIFY, Step.CONFIRM, Step.UNLOCK]
    for change in changes(fab, "ok"):
        with DeviceSession(change.endpoint, ssh=ssh(fab), timeouts=FAST) as s:
            assert change.verify(s.get_config("running")) == []
    assert can_lock_all(fab)
    assert outcomes[0].timings_ms["commit-confirmed"] > 0


def test_device_rejecting_the_edit_rolls_everything_back(fab: Fabric) -> None:
    before = snapshot(fab)
    rec = Recorder()
    tx = NetworkTransaction(changes(fab, "reject", bad_device="b-nat1"), ssh=ssh(fab), timeouts=FAST,
                            on_step=rec)
    with pytest.raises(MigrationRolledBackError) as info:
        tx.run()
    outcomes = {o.device: o for o in info.value.outcomes}
    assert "unknown-element" in (outcomes["b-nat1"].error or "")
    assert not any(o.ok for o in outcomes.values())
    assert all(step is not Step.COMMIT_CONFIRMED for _, step in rec.steps)
    for device in DEVICES:  # whoever edited its candidate discarded it (not left to session close)
        if Step.EDIT in rec.of(device):
            assert Step.ROLLBACK_DISCARD in rec.of(device), device
            assert outcomes[device].phase_reached is DevicePhase.DISCARDED
    assert snapshot(fab) == before
    assert can_lock_all(fab)


def test_failure_after_commit_confirmed_cancels_everywhere(fab: Fabric) -> None:
    before = snapshot(fab)
    rec = Recorder()
    plan = changes(fab, "verify")
    liar = DeviceChange(plan[1].endpoint, plan[1].edit, lambda running: ["policy order differs"])
    tx = NetworkTransaction([plan[0], liar, plan[2]], ssh=ssh(fab), timeouts=FAST, on_step=rec)
    with pytest.raises(MigrationRolledBackError, match="policy order differs"):
        tx.run()
    for device in DEVICES:
        assert Step.COMMIT_CONFIRMED in rec.of(device)
        assert Step.CANCEL_COMMIT in rec.of(device)
        assert Step.CONFIRM not in rec.of(device)
    assert snapshot(fab) == before


def test_lost_session_is_cancelled_from_a_new_one_with_the_persist_id(fab: Fabric) -> None:
    before = snapshot(fab)
    sessions: dict[str, DeviceSession] = {}

    def factory(ep: DeviceEndpoint) -> DeviceSession:
        made = DeviceSession(ep, ssh=ssh(fab), timeouts=FAST)
        sessions.setdefault(ep.name, made)  # the transaction's own session; later ones are for rollback
        return made

    def drop_nat_session(device: str, step: Step) -> None:
        if device == "b-nat1" and step is Step.VERIFY:
            sessions["b-nat1"].close()  # the device keeps the persistent confirmed commit pending

    # running is read in the commit's flight, so b-nat1 verifies without its session; another device's
    # failed verify makes the transaction roll back, and b-nat1 must be cancelled from a new session
    plan = changes(fab, "lost")
    i = next(i for i, c in enumerate(plan) if c.endpoint.name != "b-nat1")
    plan[i] = DeviceChange(plan[i].endpoint, plan[i].edit, lambda running: ["policy order differs"])
    tx = NetworkTransaction(plan, ssh=ssh(fab), timeouts=FAST, on_step=drop_nat_session,
                            session_factory=factory)
    with pytest.raises(MigrationRolledBackError, match="policy order differs") as info:
        tx.run()
    outcomes = {o.device: o for o in info.value.outcomes}
    assert outcomes["b-nat1"].phase_reached is DevicePhase.ROLLED_BACK
    assert snapshot(fab) == before


def test_session_lost_after_the_commit_flight_is_confirmed_from_a_new_one(fab: Fabric) -> None:
    before = snapshot(fab)
    sessions: dict[str, DeviceSession] = {}

    def factory(ep: DeviceEndpoint) -> DeviceSession:
        made = DeviceSession(ep, ssh=ssh(fab), timeouts=FAST)
        sessions.setdefault(ep.name, made)
        return made

    def drop_nat_session(device: str, step: Step) -> None:
        if device == "b-nat1" and step is Step.CONFIRM:
            sessions["b-nat1"].close()  # committed (persist token) and verified; the confirm must still land

    tx = NetworkTransaction(changes(fab, "lost-late"), ssh=ssh(fab), timeouts=FAST, on_step=drop_nat_session,
                            session_factory=factory)
    outcomes = {o.device: o for o in tx.run()}
    assert all(o.ok for o in outcomes.values()), outcomes
    assert any("retrying from a new session" in n for n in (outcomes["b-nat1"].error or "").split("; "))
    assert snapshot(fab) != before
    assert all(fab.device(d).runtime.pending is None for d in DEVICES)  # confirmed for good everywhere


def test_missing_module_fails_before_anything_is_locked(fab: Fabric) -> None:
    before = snapshot(fab)
    plan = changes(fab, "caps")
    needy = DeviceChange(plan[0].endpoint, plan[0].edit, plan[0].verify, modules=("ietf-nat",))
    rec = Recorder()
    with pytest.raises(MigrationRolledBackError, match="module ietf-nat"):
        NetworkTransaction([needy, *plan[1:]], ssh=ssh(fab), timeouts=FAST, on_step=rec).run()
    assert Step.LOCK not in rec.of("b-leaf1")
    assert snapshot(fab) == before


def test_dry_run_changes_nothing(fab: Fabric) -> None:
    before = snapshot(fab)
    plan = changes(fab, "dry")
    unreachable = DeviceChange(DeviceEndpoint("nowhere", "127.0.0.1", 9, Credentials("u", "p")),
                               plan[0].edit, plan[0].verify)
    rec = Recorder()
    planned = NetworkTransaction([*plan, unreachable], ssh=ssh(fab), on_step=rec,
                                 commit=CommitPolicy(confirm_timeout_s=30)).dry_run()
    assert [p.device for p in planned] == [*DEVICES, "nowhere"]
    assert "no-such-leaf" not in planned[2].edit_xml and "10.77.0." in planned[2].edit_xml
    assert planned[0].validate == "candidate" and planned[3].address == "127.0.0.1:9"
    assert rec.steps == []
    assert snapshot(fab) == before

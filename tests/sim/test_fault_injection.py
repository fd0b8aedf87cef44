"""netconf-sim fault injection: each fault does what it says, seen by a plain ncclient client over SSH."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from ncclient.operations.errors import OperationError, TimeoutExpiredError
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import SessionCloseError, TransportError
from netconf_sim.fabricfile import FabricError, load_fabric
from netconf_sim.faults import FAKE_LOCK_SESSION, FaultRule

ACME = "urn:acme:yang:acme-fabric"
FW = "fw"
DROPPED = (TransportError, SessionCloseError, TimeoutExpiredError, EOFError, OSError)


def one_device(**extra: Any) -> dict[str, Any]:
    return {"devices": {FW: {"profile": "acme-fw", "username": "admin", "password": "admin", **extra}}}


def policy(name: str, order: int = 5) -> str:
    return (f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><acme-fabric xmlns="{ACME}">'
            f"<security><policy><id>{name}</id><order>{order}</order><then>permit</then></policy>"
            "</security></acme-fabric></config>")


def running_has(mgr: Any, name: str) -> bool:
    data = mgr.get_config(source="running").data_ele
    return bool(data.xpath("//a:policy[a:id=$n]", namespaces={"a": ACME}, n=name))


@pytest.fixture
def fab(fresh_fabric: Callable[..., Any]) -> Any:
    return fresh_fabric(one_device())


@pytest.fixture
def nc(fab: Any, nc_connect: Callable[..., Any]) -> Callable[..., Any]:
    return lambda **kw: nc_connect(fab, FW, **kw)


def test_latency_on_one_operation_only(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="latency", operation="get-config", delay_s=0.4)
    mgr = nc()
    started = time.perf_counter()
    mgr.get()
    fast = time.perf_counter() - started
    started = time.perf_counter()
    mgr.get_config(source="running")
    slow = time.perf_counter() - started
    assert slow >= 0.4 > fast


def test_latency_on_every_operation(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="latency", delay_s=0.25)
    mgr = nc()
    started = time.perf_counter()
    mgr.get()
    mgr.lock("candidate")
    assert time.perf_counter() - started >= 0.5


@pytest.mark.parametrize("operation", ["edit-config", "validate", "lock", "discard-changes"])
def test_rpc_error_with_chosen_tag(fab: Any, nc: Callable[..., Any], operation: str) -> None:
    fab.device(FW).faults.set(kind="rpc-error", operation=operation, error_tag="resource-denied",
                              message="disk full")
    mgr = nc()
    calls = {"edit-config": lambda: mgr.edit_config(target="candidate", config=policy("p1")),
             "validate": lambda: mgr.validate(source="candidate"),
             "lock": lambda: mgr.lock("candidate"),
             "discard-changes": lambda: mgr.discard_changes()}
    with pytest.raises(RPCError) as info:
        calls[operation]()
    assert info.value.tag == "resource-denied"
    assert "disk full" in str(info.value.message)
    fab.device(FW).faults.clear()
    calls[operation]()  # cleared: works again


def test_rpc_error_only_on_nth_occurrence(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="rpc-error", operation="edit-config", nth=2, error_tag="in-use")
    mgr = nc()
    mgr.edit_config(target="candidate", config=policy("p1"))
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=policy("p2"))
    assert info.value.tag == "in-use"
    mgr.edit_config(target="candidate", config=policy("p3"))
    assert fab.device(FW).faults.fired == [("rpc-error", "edit-config")]


def test_confirmed_and_confirming_commit_are_told_apart(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="rpc-error", operation="confirming-commit")
    mgr, other = nc(), nc()
    mgr.edit_config(target="candidate", config=policy("p1"))
    mgr.commit(confirmed=True, timeout="30", persist="tok")  # a confirmed commit is not hit
    assert running_has(other, "p1")
    with pytest.raises(RPCError):
        mgr.commit(persist_id="tok")                           # the confirming one is
    assert fab.device(FW).runtime.pending is not None          # still waiting to be confirmed
    with pytest.raises(RPCError):
        mgr.commit()                                           # plain commit confirms too: hit as well
    mgr.cancel_commit(persist_id="tok")
    assert not running_has(other, "p1")


def test_rpc_error_on_cancel_commit(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="rpc-error", operation="cancel-commit", error_tag="operation-failed")
    mgr = nc()
    mgr.edit_config(target="candidate", config=policy("p1"))
    mgr.commit(confirmed=True, timeout="30", persist="tok")
    with pytest.raises(RPCError):
        mgr.cancel_commit(persist_id="tok")
    assert running_has(mgr, "p1")


def test_drop_before_commit_means_not_committed(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="drop-before", operation="commit")
    mgr, other = nc(timeout=5), nc()
    mgr.edit_config(target="candidate", config=policy("p1"))
    with pytest.raises(DROPPED):
        mgr.commit()
    assert not running_has(other, "p1")


def test_drop_after_commit_means_committed_but_no_reply(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="drop-after", operation="commit")
    mgr, other = nc(timeout=5), nc()
    mgr.edit_config(target="candidate", config=policy("p1"))
    with pytest.raises(DROPPED):
        mgr.commit()
    assert running_has(other, "p1")


def test_drop_after_persistent_confirmed_commit_keeps_it_pending(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="drop-after", operation="confirmed-commit")
    mgr = nc(timeout=5)
    mgr.edit_config(target="candidate", config=policy("p1"))
    with pytest.raises(DROPPED):
        mgr.commit(confirmed=True, timeout="30", persist="tok")
    other = nc()
    assert running_has(other, "p1")
    other.commit(persist_id="tok")  # confirmable from a new session
    assert fab.device(FW).runtime.pending is None and running_has(other, "p1")


def refused(fab: Any) -> bool:
    ep = fab.endpoints[FW]
    with socket.socket() as sock:
        return sock.connect_ex((ep.host, ep.port)) != 0


def test_device_down_reboot_rolls_back_persistent_commit(fab: Any, nc: Callable[..., Any]) -> None:
    mgr = nc(timeout=5)
    mgr.edit_config(target="candidate", config=policy("p1"))
    mgr.commit(confirmed=True, timeout="60", persist="tok")
    fab.device(FW).faults.down()
    assert refused(fab)
    with pytest.raises(DROPPED):
        mgr.get_config(source="running")
    fab.device(FW).faults.up()
    other = nc()
    assert not running_has(other, "p1")
    assert fab.device(FW).runtime.pending is None


def test_device_partition_keeps_persistent_commit(fab: Any, nc: Callable[..., Any]) -> None:
    mgr = nc(timeout=5)
    mgr.edit_config(target="candidate", config=policy("p1"))
    mgr.commit(confirmed=True, timeout="60", persist="tok")
    fab.device(FW).faults.down(reboot=False)
    assert refused(fab)
    fab.device(FW).faults.up()
    other = nc()
    assert running_has(other, "p1")
    other.commit(persist_id="tok")
    assert fab.device(FW).runtime.pending is None


def test_device_down_on_rpc_and_back_up_by_itself(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="down", operation="validate", up_after_s=0.5)
    mgr = nc(timeout=5)
    mgr.edit_config(target="candidate", config=policy("p1"))
    with pytest.raises(DROPPED):
        mgr.validate(source="candidate")
    assert refused(fab)
    deadline = time.monotonic() + 5
    while refused(fab) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not refused(fab)
    assert not running_has(nc(), "p1")


def test_commit_slower_than_confirm_timeout(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="slow-reply", operation="confirmed-commit", delay_s=2.0)
    mgr, other = nc(timeout=10), nc()
    mgr.edit_config(target="candidate", config=policy("p1"))
    started = time.perf_counter()
    mgr.commit(confirmed=True, timeout="1", persist="tok")  # <ok/> arrives after the timer fired
    assert time.perf_counter() - started >= 2.0
    assert not running_has(other, "p1")
    with pytest.raises(RPCError):
        mgr.commit(persist_id="tok")  # too late: nothing is pending


def test_lock_held_by_another_session(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.hold_lock("candidate")
    mgr = nc()
    with pytest.raises(RPCError) as info:
        mgr.lock("candidate")
    assert info.value.tag == "lock-denied"
    assert str(FAKE_LOCK_SESSION) in str(info.value.info)
    with pytest.raises(RPCError) as edit:
        mgr.edit_config(target="candidate", config=policy("p1"))
    assert edit.value.tag == "in-use"
    fab.device(FW).faults.clear()
    mgr.lock("candidate")


def test_malformed_reply(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="malformed-reply", operation="get-config")
    mgr = nc(timeout=2)
    with pytest.raises((etree.XMLSyntaxError, TimeoutExpiredError, OperationError, SessionCloseError)):
        mgr.get_config(source="running")  # ncclient raises the parser's XMLSyntaxError
    assert fab.device(FW).faults.fired == [("malformed-reply", "get-config")]


def test_oversized_reply(fab: Any, nc: Callable[..., Any]) -> None:
    fab.device(FW).faults.set(kind="oversized-reply", operation="get-config", size_bytes=3_000_000)
    mgr = nc(timeout=30)
    reply = mgr.get_config(source="running")
    assert len(reply.xml) >= 3_000_000
    assert len(mgr.get().xml) < 1_000_000  # other operations are not padded


def test_faults_from_the_fabric_file(fresh_fabric: Callable[..., Any],
                                     nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric(one_device(faults=[
        {"kind": "rpc-error", "operation": "commit", "error-tag": "operation-failed", "nth": 1},
        {"kind": "lock-held", "datastore": "candidate"},
    ]))
    assert fab.device(FW).faults.rules == (FaultRule("rpc-error", "commit", nth=1),)
    mgr = nc_connect(fab, FW)
    with pytest.raises(RPCError) as info:
        mgr.lock("candidate")
    assert info.value.tag == "lock-denied"
    fab.device(FW).faults.release_lock("candidate")
    mgr.lock("candidate")
    with pytest.raises(RPCError) as commit:
        mgr.commit()
    assert commit.value.tag == "operation-failed"
    mgr.commit()  # only the first one


@pytest.mark.parametrize(("entry", "problem"), [
    ({"kind": "sparks"}, "unknown fault kind"),
    ({"kind": "rpc-error", "error-tag": "oops"}, "unknown error-tag"),
    ({"kind": "latency", "delay-s": "slow"}, "delay-s must be a number"),
    ({"kind": "rpc-error", "nth": 0}, "nth must be at least 1"),
    ({"kind": "latency", "when": "now"}, "unknown key 'when'"),
    ({"kind": "lock-held", "datastore": "nowhere"}, "lock-held takes only datastore"),
])
def test_fabric_file_fault_problems(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(FabricError) as info:
        load_fabric(one_device(faults=[entry]))
    assert f"devices.{FW}.faults[0]: " in str(info.value)
    assert problem in str(info.value)

"""DeviceSession and Capabilities against the in-process netconf-sim over real SSH on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from netconf_sim.fabric import Fabric, running_fabric

from netmig.errors import (
    AuthError,
    CapabilityError,
    ConnectError,
    DeviceTimeoutError,
    HostKeyError,
    RpcError,
)
from netmig.netconf import Capabilities, DeviceSession, subtree_filter
from netmig.netconf.session import build_commit, build_edit_config, build_get_config
from netmig.settings import Credentials, DeviceEndpoint, SshPolicy, Timeouts
from netmig.xmlkit import NC_NS, Element, element, sub, to_bytes

ROOT = Path(__file__).resolve().parents[2]
FABRIC = ROOT / "examples" / "two-site" / "fabric.yaml"
ACME = "urn:acme:yang:acme-fabric"
YLIB = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
FAST = Timeouts(connect_s=5, rpc_s=10, connect_attempts=2, connect_backoff_s=0.01)


@pytest.fixture(scope="module")
def fab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    with running_fabric(FABRIC, tmp_path_factory.mktemp("fabric")) as fabric:
        yield fabric


def endpoint(fab: Fabric, name: str, password: str | None = None) -> DeviceEndpoint:
    e = fab.endpoints[name]
    return DeviceEndpoint(name, e.host, e.port, Credentials(e.username, password or e.password))


def session(fab: Fabric, name: str = "b-leaf1") -> DeviceSession:
    ssh = SshPolicy(known_hosts=fab.known_hosts, allow_agent=False)
    return DeviceSession(endpoint(fab, name), ssh=ssh, timeouts=FAST)


def port_config(name: str, vlan: str | None = None, *, create: bool = False,
                extra: str | None = None) -> Element:
    config = element(NC_NS, "config")
    port = sub(sub(config, ACME, "acme-fabric"), ACME, "port",
               attrib={f"{{{NC_NS}}}operation": "create"} if create else None)
    sub(port, ACME, "name", name)
    if vlan is not None:
        sub(port, ACME, "vlan", vlan)
    if extra is not None:
        sub(port, ACME, extra, "1")
    return config


def port_filter(name: str) -> Element:
    top = element(ACME, "acme-fabric")
    sub(sub(top, ACME, "port"), ACME, "name", name)
    return subtree_filter(top)


def vlan_of(data: Element, port: str) -> str | None:
    found = data.xpath("a:acme-fabric/a:port[a:name=$p]/a:vlan/text()", namespaces={"a": ACME}, p=port)
    assert isinstance(found, list)
    return str(found[0]) if found else None


# ---------------------------------------------------------------------- capabilities (pure)
def test_capabilities_short_names_modules_and_yang_library() -> None:
    uris = [
        "urn:ietf:params:netconf:base:1.1",
        "urn:ietf:params:netconf:capability:candidate:1.0",
        "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
        "urn:ietf:params:netconf:capability:xpath:1.0",
        "urn:ex:a?module=ex-a&revision=2024-01-02&features=f1,f2&deviations=ex-dev",
    ]
    lib = etree.fromstring(
        f'<data xmlns="{NC_NS}"><modules-state xmlns="{YLIB}"><module-set-id>1</module-set-id>'
        "<module><name>ex-b</name><revision>2025-05-05</revision><namespace>urn:ex:b</namespace>"
        "<feature>fb</feature><conformance-type>implement</conformance-type></module>"
        "<module><name>ex-imp</name><revision>2020-01-01</revision><namespace>urn:ex:i</namespace>"
        "<conformance-type>import</conformance-type></module></modules-state></data>")
    caps = Capabilities.from_hello("dev1", uris, lib)
    assert caps.has(":candidate") and caps.has(":candidate:1.0") and caps.has(":base:1.1")
    assert caps.has(":confirmed-commit:1.1") and not caps.has(":confirmed-commit:1.0")
    assert not caps.has(":validate")
    assert caps.has_module("ex-a", "2024-01-02") and not caps.has_module("ex-a", "2099-01-01")
    assert caps.has_feature("ex-a", "f2") and not caps.has_feature("ex-a", "f3")
    assert caps.modules["ex-a"].deviations == frozenset({"ex-dev"})
    assert caps.has_feature("ex-b", "fb") and caps.modules["ex-b"].namespace == "urn:ex:b"
    assert not caps.has_module("ex-imp")
    with pytest.raises(CapabilityError) as info:
        caps.require(":candidate", ":validate:1.1", modules=["ex-a", "nope"], features=[("ex-b", "zz")])
    text = str(info.value)
    assert "dev1" in text and ":validate:1.1" in text and "module nope" in text and "feature ex-b:zz" in text
    assert ":candidate," not in text and "module ex-a" not in text


def test_request_builders_are_pure_and_refuse_bad_arguments() -> None:
    commit = build_commit(confirmed=True, timeout_s=60, persist="tok")
    assert to_bytes(commit) == (f'<commit xmlns="{NC_NS}"><confirmed/><confirm-timeout>60</confirm-timeout>'
                                "<persist>tok</persist></commit>").encode()
    with pytest.raises(ValueError):
        build_commit(timeout_s=5)
    with pytest.raises(ValueError):
        build_edit_config("candidate", port_config("x"), default_operation="bogus")
    with pytest.raises(ValueError):
        build_edit_config("nowhere", port_config("x"))


# ---------------------------------------------------------------------- session against the simulator
def test_hello_capabilities_and_yang_library(fab: Fabric) -> None:
    with session(fab) as s:
        assert s.session_id is not None and s.is_open
        caps = s.capabilities
        for name in (":candidate", ":confirmed-commit:1.1", ":validate:1.1", ":xpath", ":notification"):
            assert caps.has(name), name
        assert caps.has_module("acme-fabric")
        with pytest.raises(CapabilityError, match="module ietf-nat"):
            caps.require(":candidate", modules=["ietf-nat"])
        full = s.load_yang_library()
        assert full.has_module("acme-fabric") and s.capabilities is full
    assert not s.is_open


def test_get_and_get_config_with_filters(fab: Fabric) -> None:
    with session(fab) as s:
        running = s.get_config("running", port_filter("ethernet-1/2"))
        assert vlan_of(running, "ethernet-1/2") == "210"
        names = running.xpath("//a:port/a:name/text()", namespaces={"a": ACME})
        assert names == ["ethernet-1/2"]
        everything = s.get()
        assert vlan_of(everything, "ethernet-1/2") == "210"
        assert everything.xpath("//a:tables", namespaces={"a": ACME}), "config-false learned tables in <get>"
        assert not s.get_config("running").xpath("//a:tables", namespaces={"a": ACME})


def test_edit_validate_commit_and_discard(fab: Fabric) -> None:
    with session(fab) as s, s.locked("candidate"):
        s.edit_config("candidate", port_config("ethernet-1/5", "305"))
        s.validate("candidate")
        s.validate(port_config("ethernet-1/5", "305"))
        assert vlan_of(s.get_config("candidate", port_filter("ethernet-1/5")), "ethernet-1/5") == "305"
        assert vlan_of(s.get_config("running", port_filter("ethernet-1/5")), "ethernet-1/5") is None
        s.discard_changes()
        assert vlan_of(s.get_config("candidate", port_filter("ethernet-1/5")), "ethernet-1/5") is None
        s.edit_config("candidate", port_config("ethernet-1/5", "306"), default_operation="merge",
                      error_option="rollback-on-error")
        s.commit()
    with session(fab) as other:
        assert vlan_of(other.get_config("running", port_filter("ethernet-1/5")), "ethernet-1/5") == "306"


def test_confirmed_commit_cancel_and_confirm_from_another_session(fab: Fabric) -> None:
    with session(fab) as s:
        s.edit_config("candidate", port_config("ethernet-1/6", "316"))
        s.commit(confirmed=True, timeout_s=60, persist="tok-cancel")
        assert vlan_of(s.get_config("running", port_filter("ethernet-1/6")), "ethernet-1/6") == "316"
        s.cancel_commit("tok-cancel")
        assert vlan_of(s.get_config("running", port_filter("ethernet-1/6")), "ethernet-1/6") is None

        s.edit_config("candidate", port_config("ethernet-1/6", "317"))
        s.commit(confirmed=True, timeout_s=60, persist="tok-confirm")
    with session(fab) as t:  # the first session is gone; persist kept the commit pending
        assert vlan_of(t.get_config("running", port_filter("ethernet-1/6")), "ethernet-1/6") == "317"
        with pytest.raises(RpcError):
            t.commit(persist_id="wrong-token")
        t.commit(persist_id="tok-confirm")
        with pytest.raises(RpcError):
            t.cancel_commit("tok-confirm")  # nothing pending any more
        assert vlan_of(t.get_config("running", port_filter("ethernet-1/6")), "ethernet-1/6") == "317"


def test_pipelined_requests_answer_in_order_with_each_error_returned(fab: Fabric) -> None:
    with session(fab) as s:
        replies = s.pipeline([
            build_edit_config("candidate", port_config("ethernet-1/7", "327")),
            build_edit_config("candidate", port_config("ethernet-1/1", create=True)),  # exists: refused
            build_get_config("candidate", port_filter("ethernet-1/7")),
        ])
        assert len(replies) == 3
        assert not isinstance(replies[0], RpcError) and replies[0].find(f"{{{NC_NS}}}ok") is not None
        assert isinstance(replies[1], RpcError) and replies[1].tag == "data-exists"
        read = replies[2]
        assert not isinstance(read, RpcError)
        data = read.find(f"{{{NC_NS}}}data")
        assert data is not None and vlan_of(data, "ethernet-1/7") == "327"  # the read came after the edit
        # commit and the read of running in one flight: running as the commit left it
        running = s.commit_and_read(port_filter("ethernet-1/7"), confirmed=True, timeout_s=60,
                                    persist="tok-p")
        assert not isinstance(running, RpcError) and vlan_of(running, "ethernet-1/7") == "327"
        s.cancel_commit("tok-p")
        s.discard_changes()
        assert vlan_of(s.get_config("running", port_filter("ethernet-1/7")), "ethernet-1/7") is None


def test_threads_sharing_one_session_each_read_their_own_answer(fab: Fabric) -> None:
    """Replies are read by whichever caller waits and filed by message-id: four threads, four filters."""
    ports = ["ethernet-1/1", "ethernet-1/2", "ethernet-1/3", "ethernet-1/4"]
    wrong: list[str] = []
    with session(fab) as s:
        def reader(port: str) -> None:
            for _ in range(40):
                data = s.get_config("running", port_filter(port))
                names = data.xpath("//a:port/a:name/text()", namespaces={"a": ACME})
                if names != [port]:
                    wrong.append(f"{port}: {names}")

        threads = [threading.Thread(target=reader, args=(p,)) for p in ports]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not wrong and not any(t.is_alive() for t in threads)
        assert s.is_open


def test_commit_and_read_raises_when_the_commit_is_refused(fab: Fabric) -> None:
    with session(fab) as s, session(fab) as other:
        s.edit_config("candidate", port_config("ethernet-1/8", "328"))
        s.commit(confirmed=True, timeout_s=60, persist="tok-held")  # a pending confirmed commit ...
        try:
            other.edit_config("candidate", port_config("ethernet-1/9", "329"))
            with pytest.raises(RpcError) as info:  # ... refuses another session's confirmed commit
                other.commit_and_read(port_filter("ethernet-1/9"), confirmed=True, timeout_s=60)
            assert info.value.operation == "commit" and info.value.tag == "in-use"
            assert other.is_open  # the read's reply was consumed: the session goes on
            assert vlan_of(other.get_config("running", port_filter("ethernet-1/9")), "ethernet-1/9") is None
        finally:
            other.discard_changes()
            s.cancel_commit("tok-held")


def test_rpc_error_carries_every_field(fab: Fabric) -> None:
    with session(fab) as s:
        with pytest.raises(RpcError) as info:
            s.edit_config("candidate", port_config("ethernet-1/1", create=True))
        err = info.value
        assert err.operation == "edit-config" and err.tag == "data-exists"
        first = err.errors[0]
        assert (first.type, first.tag, first.severity) == ("application", "data-exists", "error")
        assert first.path is not None and "ethernet-1/1" in first.path and first.message
        with pytest.raises(RpcError) as info:
            s.edit_config("candidate", port_config("ethernet-1/1", extra="bogus"))
        assert info.value.tag == "unknown-element" and info.value.errors[0].info.get("bad-element") == "bogus"
        with pytest.raises(RpcError) as info:
            s.kill_session(999999)
        assert info.value.errors[0].tag == "invalid-value"
        s.discard_changes()


def test_locks_and_kill_session(fab: Fabric) -> None:
    with session(fab, "b-spine1") as holder, session(fab, "b-spine1") as other:
        holder.lock("candidate")
        with pytest.raises(RpcError) as info:
            other.lock("candidate")
        assert info.value.tag == "lock-denied"
        assert info.value.errors[0].info.get("session-id") == holder.session_id
        assert holder.session_id is not None
        other.kill_session(holder.session_id)
        with other.locked("candidate"):
            pass
        with pytest.raises(ConnectError):
            holder.get_config("running")


def test_custom_rpc_and_notifications(fab: Fabric) -> None:
    with session(fab, "b-nat1") as listener, session(fab, "b-nat1") as writer:
        listener.create_subscription()
        assert listener.next_notification(timeout_s=0.05) is None
        reply = writer.rpc(element(NC_NS, "discard-changes"))
        assert reply.find(f"{{{NC_NS}}}ok") is not None
        writer.edit_config("candidate", port_config("ethernet-9/9", "99"))
        writer.commit()
        note = listener.next_notification(timeout_s=5)
        assert note is not None and note.find(f".//{{{NCN}}}netconf-config-change") is not None


def test_wrong_password_is_auth_error_without_the_secret(fab: Fabric) -> None:
    bad = DeviceSession(endpoint(fab, "b-leaf1", password="not-the-Secret-42"),
                        ssh=SshPolicy(known_hosts=fab.known_hosts, allow_agent=False), timeouts=FAST)
    with pytest.raises(AuthError) as info:
        bad.open()
    assert "not-the-Secret-42" not in str(info.value) and "b-leaf1" in str(info.value)
    assert "not-the-Secret-42" not in repr(bad.endpoint)


def test_unknown_and_changed_host_keys_are_refused(fab: Fabric, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    s = DeviceSession(endpoint(fab, "b-leaf1"), ssh=SshPolicy(known_hosts=empty, allow_agent=False),
                      timeouts=FAST)
    with pytest.raises(HostKeyError, match="unknown host key"):
        s.open()
    # b-spine1's key filed under b-leaf1's address: the key b-leaf1 offers no longer matches.
    lines = dict(line.split(" ", 1) for line in fab.known_hosts.read_text().splitlines())
    leaf, spine = fab.endpoints["b-leaf1"], fab.endpoints["b-spine1"]
    swapped = tmp_path / "known_hosts_swapped"
    swapped.write_text(f"[{leaf.host}]:{leaf.port} {lines[f'[{spine.host}]:{spine.port}']}\n")
    s = DeviceSession(endpoint(fab, "b-leaf1"), ssh=SshPolicy(known_hosts=swapped, allow_agent=False),
                      timeouts=FAST)
    with pytest.raises(HostKeyError, match="CHANGED"):
        s.open()


def test_connection_refused_is_fast_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = DeviceSession(DeviceEndpoint("gone", "127.0.0.1", port, Credentials("u", "p")),
                      ssh=SshPolicy(known_hosts=None, allow_agent=False), timeouts=FAST)
    started = time.perf_counter()
    with pytest.raises(ConnectError, match="refused"):
        s.open()
    assert time.perf_counter() - started < 2.0


def test_silent_server_times_out_within_connect_budget() -> None:
    with socket.socket() as silent:  # accepts TCP (backlog) but never sends an SSH banner
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        s = DeviceSession(DeviceEndpoint("mute", "127.0.0.1", port, Credentials("u", "p")),
                          ssh=SshPolicy(known_hosts=None, allow_agent=False),
                          timeouts=Timeouts(connect_s=0.5, connect_attempts=1))
        started = time.perf_counter()
        with pytest.raises(DeviceTimeoutError, match="mute"):
            s.open()
        assert time.perf_counter() - started < 3.0

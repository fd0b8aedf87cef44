"""NETCONF protocol behaviour of one simulated device over real SSH on 127.0.0.1.

Clients: ncclient (host key verified against a known_hosts file written here) and a raw asyncssh
client for framing-level cases and latency, which does not pay ncclient's 100 ms poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import SSHUnknownHostError
from netconf_sim.engine import DeviceEngine
from netconf_sim.framing import FrameDecoder, encode_chunked, encode_eom
from netconf_sim.runtime import BASE_10, BASE_11, NCN_NS, NOTIF_NS, DeviceRuntime
from netconf_sim.schema import Schema, SchemaCache
from netconf_sim.server import DeviceListenSpec, DeviceServer, start_device_server

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
ACME_NS = "urn:acme:yang:acme-fabric"
T = TypeVar("T")


@functools.cache
def acme_schema() -> Schema:
    return SchemaCache().get(["acme-fabric"])


def make_engine(tmp_path: Path) -> DeviceEngine:
    initial = etree.fromstring(port_config({"ethernet-1/1": 1}))
    return DeviceEngine("leaf1", acme_schema(), tmp_path / "state", initial_config=initial)


class LoopThread:
    """An asyncio loop in a daemon thread, the way the fabric runs the simulator."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()
        return self.run(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Device:
    lt: LoopThread
    server: DeviceServer
    runtime: DeviceRuntime
    known_hosts: Path
    ssh_config: Path
    client_key: asyncssh.SSHKey

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    lt = LoopThread()
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    spec = DeviceListenSpec(name="leaf1", port=0, username="admin", password="secret",
                            authorized_keys=[client_key.export_public_key("openssh").decode()],
                            host_key_path=tmp_path / "keys" / "leaf1")
    engine = make_engine(tmp_path)
    server = lt.run(start_device_server(spec, engine))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(server.known_hosts_line() + "\n")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host *\n  UserKnownHostsFile {known_hosts}\n")
    try:
        yield Device(lt, server, server.runtime, known_hosts, ssh_config, client_key)
    finally:
        lt.run(server.stop())
        lt.stop()


@contextlib.contextmanager
def ncc(dev: Device) -> Iterator[Any]:
    m = manager.connect(host="127.0.0.1", port=dev.port, username="admin", password="secret",
                        hostkey_verify=True, ssh_config=str(dev.ssh_config), look_for_keys=False,
                        allow_agent=False, timeout=10)
    try:
        yield m
    finally:
        if m.connected:
            m.close_session()


def port_config(vlans: dict[str, int]) -> str:
    root = etree.Element(f"{{{NC}}}config", nsmap={None: NC})
    fabric = etree.SubElement(root, f"{{{ACME_NS}}}acme-fabric", nsmap={None: ACME_NS})
    for name, vlan in vlans.items():
        port = etree.SubElement(fabric, f"{{{ACME_NS}}}port")
        etree.SubElement(port, f"{{{ACME_NS}}}name").text = name
        etree.SubElement(port, f"{{{ACME_NS}}}vlan").text = str(vlan)
    return etree.tostring(root).decode()


def vlans_of(data: etree._Element) -> dict[str, int]:
    out: dict[str, int] = {}
    for port in data.iter(f"{{{ACME_NS}}}port"):
        vlan = port.findtext(f"{{{ACME_NS}}}vlan")
        if vlan is not None:
            out[port.findtext(f"{{{ACME_NS}}}name") or ""] = int(vlan)
    return out


def running(m: Any) -> dict[str, int]:
    return vlans_of(m.get_config(source="running").data_ele)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


# -- raw client ------------------------------------------------------------------------------------

class RawClient:
    """Minimal NETCONF client over asyncssh: exact bytes out, decoded messages in."""

    def __init__(self, conn: asyncssh.SSHClientConnection, writer: Any, reader: Any) -> None:
        self.conn, self.writer, self.reader = conn, writer, reader
        self.decoder = FrameDecoder()
        self.chunked = False
        self.server_hello: etree._Element | None = None

    @classmethod
    async def open(cls, dev: Device, *, caps: tuple[str, ...] = (BASE_10, BASE_11),
                   hello: bytes | None = None) -> RawClient:
        conn = await asyncssh.connect("127.0.0.1", dev.port, username="admin", password="secret",
                                      known_hosts=str(dev.known_hosts), client_keys=None)
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        client = cls(conn, writer, reader)
        client.server_hello = etree.fromstring(await client.recv_raw())
        if hello is None:
            root = etree.Element(f"{{{NC}}}hello", nsmap={None: NC})
            capabilities = etree.SubElement(root, f"{{{NC}}}capabilities")
            for cap in caps:
                etree.SubElement(capabilities, f"{{{NC}}}capability").text = cap
            hello = etree.tostring(root)
        writer.write(encode_eom(hello))
        if BASE_11 in caps:
            client.chunked = True
            client.decoder.set_chunked()
        return client

    async def recv_raw(self) -> bytes:
        while (message := self.decoder.pop()) is None:
            data = await self.reader.read(65536)
            if not data:
                raise EOFError("server closed the channel")
            self.decoder.feed(data)
        return message

    async def recv(self) -> etree._Element:
        return etree.fromstring(await self.recv_raw())

    def send(self, message: bytes) -> None:
        self.writer.write(encode_chunked(message) if self.chunked else encode_eom(message))

    async def rpc(self, body: str, message_id: str = "1") -> etree._Element:
        self.send(f'<rpc xmlns="{NC}" message-id="{message_id}">{body}</rpc>'.encode())
        return await self.recv()

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


def error_tag(reply: etree._Element) -> str | None:
    return reply.findtext(f"{{{NC}}}rpc-error/{{{NC}}}error-tag")


# -- hello, capabilities, framing ---------------------------------------------------------------

def test_hello_capabilities_and_session_ids(device: Device) -> None:
    with ncc(device) as a, ncc(device) as b:
        caps = set(a.server_capabilities)
        for short in (":candidate", ":confirmed-commit:1.1", ":validate:1.1", ":startup", ":xpath",
                      ":notification", ":interleave", ":rollback-on-error"):
            assert short in a.server_capabilities, short
        assert BASE_11 in caps and BASE_10 in caps
        assert any(c.startswith("urn:ietf:params:netconf:capability:yang-library:1.0?") for c in caps)
        assert any(c.startswith(f"{ACME_NS}?module=acme-fabric") for c in caps)
        assert any("module=ietf-netconf-monitoring" in c for c in caps)
        assert ":writable-running" not in a.server_capabilities
        assert int(a.session_id) > 0 and int(b.session_id) > 0
        assert a.session_id != b.session_id


def test_unknown_host_key_is_refused(device: Device, tmp_path: Path) -> None:
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{device.port} "
                     + asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode())
    cfg = tmp_path / "other_cfg"
    cfg.write_text(f"Host *\n  UserKnownHostsFile {other}\n")
    with pytest.raises(SSHUnknownHostError):
        manager.connect(host="127.0.0.1", port=device.port, username="admin", password="secret",
                        hostkey_verify=True, ssh_config=str(cfg), look_for_keys=False, allow_agent=False,
                        timeout=10)


def test_host_key_persists_across_restart(device: Device, tmp_path: Path) -> None:
    first = device.server.host_key.export_public_key("openssh")
    spec = DeviceListenSpec(name="leaf1", password="secret", host_key_path=tmp_path / "keys" / "leaf1")
    again = device.lt.run(start_device_server(spec, device.runtime.engine))
    try:
        assert again.host_key.export_public_key("openssh") == first
        assert (tmp_path / "keys" / "leaf1").stat().st_mode & 0o077 == 0
    finally:
        device.lt.run(again.stop())


def test_password_and_public_key_auth(device: Device) -> None:
    async def go() -> None:
        conn = await asyncssh.connect("127.0.0.1", device.port, username="admin", password=None,
                                      client_keys=[device.client_key], known_hosts=str(device.known_hosts))
        conn.close()
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", device.port, username="admin", password="wrong",
                                   client_keys=None, known_hosts=str(device.known_hosts))
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", device.port, username="root", password=None,
                                   client_keys=[device.client_key], known_hosts=str(device.known_hosts))
    device.lt.run(go())


def test_shell_and_exec_refused_pty_accepted(device: Device) -> None:
    async def go() -> None:
        async with asyncssh.connect("127.0.0.1", device.port, username="admin", password="secret",
                                    known_hosts=str(device.known_hosts)) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_session(command="id")
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_session()
            _, reader, _ = await conn.open_session(subsystem="netconf", term_type="vt100", encoding=None)
            assert b"<hello" in await reader.readuntil(b"]]>]]>")
    device.lt.run(go())


@pytest.mark.parametrize("caps", [(BASE_10,), (BASE_10, BASE_11)], ids=["eom", "chunked"])
def test_both_framings(device: Device, caps: tuple[str, ...]) -> None:
    async def go() -> None:
        client = await RawClient.open(device, caps=caps)
        reply = await client.rpc('<get-config><source><running/></source></get-config>', "7")
        assert reply.tag == f"{{{NC}}}rpc-reply" and reply.get("message-id") == "7"
        assert reply.find(f"{{{NC}}}data") is not None
        # pipelined requests in one write come back in order
        client.send(f'<rpc xmlns="{NC}" message-id="a"><discard-changes/></rpc>'.encode())
        client.send(f'<rpc xmlns="{NC}" message-id="b"><discard-changes/></rpc>'.encode())
        assert [(await client.recv()).get("message-id") for _ in range(2)] == ["a", "b"]
        await client.close()
    device.lt.run(go())


def test_hello_and_first_rpc_in_one_write(device: Device) -> None:
    hello = (f'<hello xmlns="{NC}"><capabilities><capability>{BASE_11}</capability></capabilities>'
             '</hello>').encode()
    rpc = f'<rpc xmlns="{NC}" message-id="first"><discard-changes/></rpc>'.encode()

    async def go() -> None:
        conn = await asyncssh.connect("127.0.0.1", device.port, username="admin", password="secret",
                                      known_hosts=str(device.known_hosts), client_keys=None)
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        client = RawClient(conn, writer, reader)
        await client.recv_raw()
        writer.write(b"\n" + encode_eom(hello) + encode_chunked(rpc, max_chunk=5))
        client.decoder.set_chunked()
        reply = await client.recv()
        assert reply.get("message-id") == "first" and reply.find(f"{{{NC}}}ok") is not None
        await client.close()
    device.lt.run(go())


def test_rpc_reply_copies_attributes_and_handles_bad_rpcs(device: Device) -> None:
    async def go() -> None:
        client = await RawClient.open(device)
        client.send(f'\n  <?xml version="1.0" encoding="UTF-8"?><rpc xmlns="{NC}" xmlns:ex="urn:ex" '
                    f'message-id="42" ex:user="bob"><get-config><source><running/></source></get-config>'
                    f'</rpc>'.encode())
        reply = await client.recv()
        assert reply.get("message-id") == "42" and reply.get("{urn:ex}user") == "bob"
        client.send(f'<rpc xmlns="{NC}"><discard-changes/></rpc>'.encode())
        reply = await client.recv()
        assert error_tag(reply) == "missing-attribute"
        assert reply.findtext(f".//{{{NC}}}bad-attribute") == "message-id"
        assert error_tag(await client.rpc('<frobnicate/>', "9")) == "operation-not-supported"
        assert error_tag(await client.rpc('<lock><target><bogus/></target></lock>')) == "invalid-value"
        reply = await client.rpc("<commit><confirmed/><confirm-timeout>0</confirm-timeout></commit>")
        assert error_tag(reply) == "invalid-value"
        client.send(b'<?xml version="1.0"?><!DOCTYPE rpc [<!ENTITY x "y">]><rpc message-id="1"/>')
        assert error_tag(await client.recv()) == "malformed-message"
        client.send(b"<rpc><unclosed>")
        assert error_tag(await client.recv()) == "malformed-message"
        reply = await client.rpc("<get-config><source><running/></source></get-config>", "after")
        assert reply.get("message-id") == "after" and error_tag(reply) is None
        await client.close()
    device.lt.run(go())


def test_client_hello_with_session_id_is_refused(device: Device) -> None:
    hello = (f'<hello xmlns="{NC}"><capabilities><capability>{BASE_10}</capability></capabilities>'
             f'<session-id>4</session-id></hello>').encode()

    async def go() -> None:
        client = await RawClient.open(device, caps=(BASE_10,), hello=hello)
        with pytest.raises(EOFError):
            await client.rpc("<discard-changes/>")
        await client.close()
    device.lt.run(go())


def test_chunk_framing_error_closes_session(device: Device) -> None:
    async def go() -> None:
        client = await RawClient.open(device)
        client.writer.write(b"\n#abc\n<rpc/>\n##\n")
        with pytest.raises(EOFError):
            await client.recv()
        await client.close()
    device.lt.run(go())


def test_engine_operations_and_errors_through_the_session(device: Device) -> None:
    with ncc(device) as a:
        assert "module acme-fabric" in a.get_schema("acme-fabric").data
        with pytest.raises(RPCError) as err:
            a.get_schema("no-such-module")
        assert err.value.tag == "invalid-value"
        bogus = port_config({"ethernet-1/1": 3}).replace("<vlan>3</vlan>", "<bogus>3</bogus>")
        with pytest.raises(RPCError) as err:
            a.edit_config(target="candidate", config=bogus)
        assert err.value.tag == "unknown-element"
        assert err.value.path and "ethernet-1/1" in err.value.path
        assert not device.lt.call(device.runtime.engine.candidate_dirty)
        with pytest.raises(RPCError) as err:
            a.edit_config(target="running", config=port_config({"ethernet-1/1": 7}))
        assert err.value.tag == "operation-not-supported"
        a.edit_config(target="candidate", config=port_config({"ethernet-1/1": 7}))
        a.validate(source="candidate")
        a.commit()
        a.copy_config(source="running", target="startup")
        assert vlans_of(a.get_config(source="startup").data_ele) == {"ethernet-1/1": 7}
        flt = f'<acme-fabric xmlns="{ACME_NS}"><port><name>ethernet-1/1</name></port></acme-fabric>'
        assert vlans_of(a.get(filter=("subtree", flt)).data_ele) == {"ethernet-1/1": 7}


def test_out_of_range_value_never_reaches_running(device: Device) -> None:
    with ncc(device) as a:
        before = running(a)
        with pytest.raises(RPCError) as err:
            a.edit_config(target="candidate", config=port_config({"ethernet-1/1": 5000}))
            a.commit()
        assert err.value.tag == "invalid-value"
        assert running(a) == before


# -- locks and sessions ---------------------------------------------------------------------------

def test_lock_denied_names_holder_and_blocks_others(device: Device) -> None:
    with ncc(device) as a, ncc(device) as b:
        a.lock("candidate")
        with pytest.raises(RPCError) as err:
            b.lock("candidate")
        assert err.value.tag == "lock-denied"
        assert err.value.info is not None and f"<session-id>{a.session_id}</session-id>" in \
            err.value.info.replace(f' xmlns="{NC}"', "")
        with pytest.raises(RPCError) as err:
            b.edit_config(target="candidate", config=port_config({"ethernet-1/1": 10}))
        assert err.value.tag == "in-use"
        with pytest.raises(RPCError) as err:
            b.commit()
        assert err.value.tag == "in-use"
        with pytest.raises(RPCError) as err:
            b.discard_changes()
        assert err.value.tag == "in-use"
        with pytest.raises(RPCError) as err:
            b.unlock("candidate")
        assert err.value.tag == "operation-failed"
        a.unlock("candidate")
        b.lock("candidate")
        b.unlock("candidate")


def test_lock_of_dirty_candidate_is_resource_denied(device: Device) -> None:
    with ncc(device) as a, ncc(device) as b:
        a.edit_config(target="candidate", config=port_config({"ethernet-1/1": 10}))
        with pytest.raises(RPCError) as err:
            b.lock("candidate")
        assert err.value.tag == "resource-denied"
        a.discard_changes()
        b.lock("candidate")


def test_kill_session_releases_lock(device: Device) -> None:
    with ncc(device) as a, ncc(device) as b:
        a.lock("running")
        with pytest.raises(RPCError) as err:
            b.kill_session(b.session_id)
        assert err.value.tag == "invalid-value"
        with pytest.raises(RPCError) as err:
            b.kill_session("99999")
        assert err.value.tag == "invalid-value"
        b.kill_session(a.session_id)
        b.lock("running")
        wait_for(lambda: not a.connected)


def test_locks_released_when_session_ends(device: Device) -> None:
    with ncc(device) as b:
        with ncc(device) as a:
            a.lock("candidate")
            a.edit_config(target="candidate", config=port_config({"ethernet-1/2": 20}))
        wait_for(lambda: "candidate" not in device.lt.call(lambda: dict(device.runtime.locks)))
        b.lock("candidate")  # the abandoned edit was discarded, so the candidate is clean again
        assert vlans_of(b.get_config(source="candidate").data_ele) == running(b)


# -- confirmed commit -----------------------------------------------------------------------------

def test_confirmed_commit_rolls_back_after_timeout(device: Device) -> None:
    with ncc(device) as a:
        before = running(a)
        a.edit_config(target="candidate", config=port_config({"ethernet-1/3": 30}))
        a.commit(confirmed=True, timeout="1")
        assert running(a)["ethernet-1/3"] == 30
        wait_for(lambda: running(a) == before, timeout=6)
        with pytest.raises(RPCError) as err:
            a.cancel_commit()
        assert err.value.tag == "operation-failed"


def test_confirming_commit_keeps_change(device: Device) -> None:
    with ncc(device) as a:
        a.edit_config(target="candidate", config=port_config({"ethernet-1/4": 40}))
        a.commit(confirmed=True, timeout="1")
        a.commit()
        time.sleep(1.5)
        assert running(a)["ethernet-1/4"] == 40


def test_persistent_confirmed_commit_confirmed_from_second_session(device: Device) -> None:
    with ncc(device) as a:
        a.edit_config(target="candidate", config=port_config({"ethernet-1/5": 50}))
        a.commit(confirmed=True, timeout="60", persist="mig-1")
    with ncc(device) as b:
        assert running(b)["ethernet-1/5"] == 50  # survived the end of session a
        with pytest.raises(RPCError) as err:
            b.commit(persist_id="wrong")
        assert err.value.tag == "invalid-value"
        with pytest.raises(RPCError) as err:
            b.commit()
        assert err.value.tag == "operation-failed"
        b.commit(persist_id="mig-1")
        assert device.lt.call(lambda: device.runtime.pending) is None
        assert running(b)["ethernet-1/5"] == 50


def test_cancel_commit_with_and_without_persist_id(device: Device) -> None:
    with ncc(device) as a, ncc(device) as b:
        before = running(a)
        a.edit_config(target="candidate", config=port_config({"ethernet-1/6": 60}))
        a.commit(confirmed=True, timeout="60")
        with pytest.raises(RPCError) as err:
            b.cancel_commit()
        assert err.value.tag == "in-use"
        a.cancel_commit()
        assert running(a) == before
        assert vlans_of(a.get_config(source="candidate").data_ele) == before
        a.edit_config(target="candidate", config=port_config({"ethernet-1/6": 61}))
        a.commit(confirmed=True, timeout="60", persist="p2")
        with pytest.raises(RPCError) as err:
            b.cancel_commit(persist_id="nope")
        assert err.value.tag == "invalid-value"
        b.cancel_commit(persist_id="p2")
        assert running(b) == before


def test_confirmed_commit_rolls_back_on_session_loss(device: Device) -> None:
    with ncc(device) as watcher:
        before = running(watcher)

        async def commit_and_drop() -> None:
            client = await RawClient.open(device)
            edit = port_config({"ethernet-1/8": 80})
            for body in (f"<edit-config><target><candidate/></target>{edit}</edit-config>",
                         "<commit><confirmed/><confirm-timeout>600</confirm-timeout></commit>"):
                assert error_tag(await client.rpc(body)) is None
            client.conn.abort()
        device.lt.run(commit_and_drop())
        wait_for(lambda: running(watcher) == before, timeout=5)


def test_follow_up_confirmed_commit_rolls_back_to_first_snapshot(device: Device) -> None:
    with ncc(device) as a:
        before = running(a)
        a.edit_config(target="candidate", config=port_config({"ethernet-1/9": 90}))
        a.commit(confirmed=True, timeout="60")
        a.edit_config(target="candidate", config=port_config({"ethernet-1/10": 100}))
        a.commit(confirmed=True, timeout="60")
        assert {"ethernet-1/9", "ethernet-1/10"} <= set(running(a))
        a.cancel_commit()
        assert running(a) == before


# -- notifications ----------------------------------------------------------------------------------

def test_config_change_notifications(device: Device) -> None:
    with ncc(device) as sub, ncc(device) as a:
        sub.create_subscription()
        with pytest.raises(RPCError):
            sub.create_subscription()
        a.edit_config(target="candidate", config=port_config({"ethernet-1/11": 110}))
        a.commit()
        note = sub.take_notification(block=True, timeout=5)
        assert note is not None
        root = note.notification_ele
        assert root.tag == f"{{{NOTIF_NS}}}notification"
        assert root.findtext(f"{{{NOTIF_NS}}}eventTime")
        change = root.find(f"{{{NCN_NS}}}netconf-config-change")
        assert change is not None
        assert change.findtext(f"{{{NCN_NS}}}changed-by/{{{NCN_NS}}}session-id") == str(a.session_id)
        assert change.findtext(f"{{{NCN_NS}}}datastore") == "running"
        assert change.findall(f"{{{NCN_NS}}}edit")
        a.edit_config(target="candidate", config=port_config({"ethernet-1/11": 111}))
        a.commit(confirmed=True, timeout="60")
        assert sub.take_notification(block=True, timeout=5) is not None
        a.cancel_commit()
        rollback = sub.take_notification(block=True, timeout=5)
        assert rollback is not None
        assert rollback.notification_ele.find(f".//{{{NCN_NS}}}changed-by/{{{NCN_NS}}}server") is not None


def test_subscription_with_start_time_is_refused(device: Device) -> None:
    async def go() -> None:
        client = await RawClient.open(device)
        reply = await client.rpc(f'<create-subscription xmlns="{NOTIF_NS}">'
                                 '<startTime>2026-01-01T00:00:00Z</startTime></create-subscription>')
        assert error_tag(reply) == "operation-failed"
        reply = await client.rpc(f'<create-subscription xmlns="{NOTIF_NS}"><stream>OTHER</stream>'
                                 '</create-subscription>')
        assert error_tag(reply) == "invalid-value"
        await client.close()
    device.lt.run(go())


# -- latency --------------------------------------------------------------------------------------

def test_edit_commit_round_trip_is_fast(device: Device) -> None:
    rounds = 100

    async def go() -> float:
        client = await RawClient.open(device)
        start = time.perf_counter()
        for i in range(rounds):
            edit = port_config({"ethernet-1/12": 1 + i % 4000})
            body = f"<edit-config><target><candidate/></target>{edit}</edit-config>"
            assert error_tag(await client.rpc(body, f"e{i}")) is None
            assert error_tag(await client.rpc("<commit/>", f"c{i}")) is None
        elapsed = time.perf_counter() - start
        await client.close()
        return elapsed / rounds

    per_round = device.lt.run(go(), timeout=60)
    assert per_round < 0.05, f"edit-config + commit took {per_round * 1000:.1f} ms"

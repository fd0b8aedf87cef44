"""netmig.netconf.channel over a socketpair: the channel is the real one; the other end plays a device that
answers out of order, interleaves notifications, goes quiet or misbehaves (things netconf-sim never does,
so they are scripted here; tests/sim covers the channel over SSH against the simulator)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from netmig.netconf.channel import (
    HostileReplyError,
    NetconfChannel,
    ReplyTimeout,
    SessionClosedError,
)
from netmig.netconf.framing import MessageFraming, frame
from netmig.netconf.operations import build_get_config, build_simple

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
HELLO = (f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.1</capability>'
         f"</capabilities><session-id>7</session-id></hello>").encode()
NOTE = (b'<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">'
        b"<eventTime>2026-11-24T00:00:00Z</eventTime><event xmlns='urn:x'/></notification>")


def reply(mid: str, body: str = "<ok/>") -> bytes:
    return f'<rpc-reply xmlns="{NC}" message-id="{mid}">{body}</rpc-reply>'.encode()


class Device:
    """The far end of the socketpair: reads framed requests; ``answer`` decides what goes back."""

    def __init__(self, sock: socket.socket, answer: Callable[[Device, list[str]], None]) -> None:
        self.sock, self.answer = sock, answer
        self.framing = MessageFraming(1 << 20)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def send(self, message: bytes) -> None:
        self.sock.sendall(frame(message, chunked=self.framing.chunked))

    def run(self) -> None:
        while data := self.sock.recv(65536):
            for message in self.framing.feed(data):
                if message.startswith(b"<hello"):
                    self.send(HELLO)
                    self.framing.chunked = True
                    continue
                self.answer(self, re.findall(r'message-id="([^"]+)"', message.decode()))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def opened(pair: tuple[socket.socket, socket.socket], answer: Callable[[Device, list[str]], None]
           ) -> NetconfChannel:
    Device(pair[1], answer)
    channel = NetconfChannel(pair[0], max_bytes=1 << 20)
    hello = channel.exchange_hellos(5)
    assert hello.session_id == "7"
    return channel


def test_replies_are_matched_by_message_id_in_any_order(pair: tuple[socket.socket, socket.socket]) -> None:
    held: list[str] = []

    def backwards(device: Device, mids: list[str]) -> None:
        held.extend(mids)
        if len(held) == 3:  # the third request arrived: answer all three, last first
            for mid in reversed(held):
                device.send(reply(mid, f"<data><n>{mid}</n></data>"))

    channel = opened(pair, backwards)
    ids = channel.send([build_get_config("running"), build_get_config("running"), build_simple("x")])
    answers = [channel.reply(mid, 5).findtext(f"{{{NC}}}data/{{{NC}}}n") for mid in ids]
    assert answers == ids


def test_notifications_between_replies_are_kept_for_later(pair: tuple[socket.socket, socket.socket]) -> None:
    def noisy(device: Device, mids: list[str]) -> None:
        device.send(NOTE)
        for mid in mids:
            device.send(reply(mid))
        device.send(NOTE)

    channel = opened(pair, noisy)
    (mid,) = channel.send([build_simple("discard-changes")])
    assert channel.reply(mid, 5).find(f"{{{NC}}}ok") is not None
    first, second = channel.notification(5), channel.notification(5)
    assert first is not None and second is not None and first.tag.endswith("notification")
    assert channel.notification(0.05) is None


def test_a_late_reply_is_dropped_and_the_session_goes_on(pair: tuple[socket.socket, socket.socket]) -> None:
    def slow_first(device: Device, mids: list[str]) -> None:
        for mid in mids:
            if mid == "1":
                time.sleep(0.3)
            device.send(reply(mid))

    channel = opened(pair, slow_first)
    (first,) = channel.send([build_simple("lock")])
    with pytest.raises(ReplyTimeout):
        channel.reply(first, 0.05)
    (second,) = channel.send([build_simple("unlock")])
    assert channel.reply(second, 5).find(f"{{{NC}}}ok") is not None
    assert channel.alive


@pytest.mark.parametrize(("bad", "why"), [
    (reply("999"), "no request is waiting"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><rpc-reply/>', "document type"),
    (b"<rpc-reply><unclosed></rpc-reply>", "malformed XML"),
    (f'<rpc xmlns="{NC}" message-id="1"/>'.encode(), "unexpected message"),
])
def test_a_message_no_server_may_send_ends_the_session(pair: tuple[socket.socket, socket.socket],
                                                       bad: bytes, why: str) -> None:
    channel = opened(pair, lambda device, mids: device.send(bad))
    (mid,) = channel.send([build_simple("get")])
    with pytest.raises(HostileReplyError, match=why):
        channel.reply(mid, 5)
    assert not channel.alive
    with pytest.raises(HostileReplyError, match=why):  # every later call fails the same way
        channel.send([build_simple("get")])


def test_a_reply_without_message_id_goes_to_the_oldest_request(pair: tuple[socket.socket, socket.socket]
                                                              ) -> None:
    channel = opened(pair, lambda device, mids: device.send(
        f'<rpc-reply xmlns="{NC}"><rpc-error><error-tag>malformed-message</error-tag></rpc-error>'
        f"</rpc-reply>".encode()))
    (mid,) = channel.send([build_simple("get")])
    assert channel.reply(mid, 5).find(f".//{{{NC}}}error-tag") is not None


def test_a_closed_channel_fails_every_waiter(pair: tuple[socket.socket, socket.socket]) -> None:
    channel = opened(pair, lambda device, mids: device.sock.shutdown(socket.SHUT_RDWR))
    (mid,) = channel.send([build_simple("get")])
    with pytest.raises(SessionClosedError, match="closed the session"):
        channel.reply(mid, 5)


def test_threads_sharing_a_channel_each_get_their_own_reply(pair: tuple[socket.socket, socket.socket]
                                                            ) -> None:
    def echo(device: Device, mids: list[str]) -> None:
        for mid in mids:
            device.send(reply(mid, f"<data><n>{mid}</n></data>"))

    channel = opened(pair, echo)
    wrong: list[str] = []

    def worker() -> None:
        for _ in range(200):
            (mid,) = channel.send([build_get_config("running")])
            got = channel.reply(mid, 5).findtext(f"{{{NC}}}data/{{{NC}}}n")
            if got != mid:
                wrong.append(f"{mid} got {got}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not wrong and all(not t.is_alive() for t in threads)


def test_a_hello_without_a_session_id_is_refused() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(frame(f'<hello xmlns="{NC}"><capabilities><capability>'
                             f"urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>".encode(),
                             chunked=False))
        with pytest.raises(HostileReplyError, match="session-id"):
            NetconfChannel(ours, max_bytes=1 << 20).exchange_hellos(5)

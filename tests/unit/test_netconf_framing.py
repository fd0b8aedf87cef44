"""netmig.netconf.framing: RFC 6242 deframing whatever way the bytes are split, and its refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmig.netconf.framing import FramingError, MessageFraming, frame

_MESSAGES = st.lists(st.binary(min_size=1, max_size=600).map(lambda b: b"<m>" + b.hex().encode() + b"</m>"),
                     min_size=1, max_size=8)


def _chunked(message: bytes, sizes: list[int]) -> bytes:
    """``message`` as several chunks (sizes cycled), then the end-of-chunks marker."""
    out, at, n = [], 0, 0
    while at < len(message):
        size = max(1, sizes[n % len(sizes)])
        out.append(b"\n#%d\n" % len(message[at:at + size]) + message[at:at + size])
        at, n = at + size, n + 1
    return b"".join(out) + b"\n##\n"


def _feed_in_pieces(framing: MessageFraming, wire: bytes, cuts: list[int]) -> list[bytes]:
    got, at = [], 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        got += framing.feed(wire[at:cut])
        at = cut
    return got


@settings(max_examples=150, deadline=None)
@given(_MESSAGES, st.lists(st.integers(1, 700), min_size=1, max_size=5), st.lists(st.integers(0, 10**6)))
def test_chunked_messages_survive_any_split(messages: list[bytes], sizes: list[int], cuts: list[int]) -> None:
    framing = MessageFraming(1 << 20)
    framing.chunked = True
    wire = b"".join(_chunked(m, sizes) for m in messages)
    assert _feed_in_pieces(framing, wire, cuts) == messages


@settings(max_examples=100, deadline=None)
@given(_MESSAGES, st.lists(st.integers(0, 10**6)))
def test_end_of_message_framing_survives_any_split(messages: list[bytes], cuts: list[int]) -> None:
    framing = MessageFraming(1 << 20)
    wire = b"".join(frame(m, chunked=False) for m in messages)
    assert _feed_in_pieces(framing, wire, cuts) == messages


def test_frame_is_one_chunk_or_eom() -> None:
    assert frame(b"<a/>", chunked=True) == b"\n#4\n<a/>\n##\n"
    assert frame(b"<a/>", chunked=False) == b"<a/>]]>]]>"


@pytest.mark.parametrize("wire", [b"\n#0\n", b"\n#abc\n", b"xx\n#3\nabc", b"\n#01\nx\n##\n",
                                  b"\n#12345678901\n"])
def test_broken_chunk_headers_are_refused(wire: bytes) -> None:
    framing = MessageFraming(1 << 20)
    framing.chunked = True
    with pytest.raises(FramingError, match="framing"):
        framing.feed(wire)


def test_oversized_messages_are_refused_before_they_are_held() -> None:
    chunked = MessageFraming(100)
    chunked.chunked = True
    chunked.feed(b"\n#60\n" + b"a" * 60)
    with pytest.raises(FramingError, match="100-byte limit"):
        chunked.feed(b"\n#60\n")  # the announced size alone passes the cap: refused before the bytes come
    eom = MessageFraming(100)
    eom.feed(b"b" * 100)
    with pytest.raises(FramingError, match="100-byte limit"):
        eom.feed(b"b" * 10)


def test_a_header_split_across_reads_waits_for_the_rest() -> None:
    framing = MessageFraming(1 << 20)
    framing.chunked = True
    assert framing.feed(b"\n#1") == []
    assert framing.feed(b"0\n0123456789\n#") == []
    assert framing.feed(b"#\n") == [b"0123456789"]

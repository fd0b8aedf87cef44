"""RFC 6242 framing of the simulator: end-of-message and chunked, fed byte by byte and in bulk."""

from __future__ import annotations

import pytest
from netconf_sim.framing import (
    FrameDecoder,
    FrameEncoder,
    FramingError,
    encode_chunked,
    encode_eom,
)


def drain(decoder: FrameDecoder) -> list[bytes]:
    return list(iter(decoder.pop, None))


def feed_bytewise(decoder: FrameDecoder, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(data)):
        decoder.feed(data[i:i + 1])
        out.extend(drain(decoder))
    return out


# -- encoders -------------------------------------------------------------------------------------

def test_encode_eom_appends_delimiter() -> None:
    assert encode_eom(b"<hello/>") == b"<hello/>]]>]]>"


def test_encode_eom_refuses_delimiter_inside() -> None:
    with pytest.raises(ValueError):
        encode_eom(b"<a>]]>]]></a>")


def test_encode_chunked_single_chunk_matches_rfc_example() -> None:
    assert encode_chunked(b"<rpc/>") == b"\n#6\n<rpc/>\n##\n"


def test_encode_chunked_splits_at_max_chunk() -> None:
    assert encode_chunked(b"abcdefg", max_chunk=3) == b"\n#3\nabc\n#3\ndef\n#1\ng\n##\n"


def test_encode_chunked_refuses_empty_message() -> None:
    with pytest.raises(ValueError):
        encode_chunked(b"")


def test_frame_encoder_switches_mode() -> None:
    enc = FrameEncoder()
    assert enc.encode(b"x") == b"x]]>]]>"
    enc.chunked = True
    assert enc.encode(b"x") == b"\n#1\nx\n##\n"


# -- end-of-message decoding ----------------------------------------------------------------------

def test_eom_two_messages_in_one_read() -> None:
    dec = FrameDecoder()
    dec.feed(b"<a/>]]>]]><b/>]]>]]><c")
    assert drain(dec) == [b"<a/>", b"<b/>"]
    assert dec.buffered == 2


def test_eom_delimiter_split_across_reads() -> None:
    dec = FrameDecoder()
    data = b"<hello>x</hello>]]>]]>\n<rpc/>]]>]]>"
    assert feed_bytewise(dec, data) == [b"<hello>x</hello>", b"\n<rpc/>"]


def test_eom_partial_delimiter_is_not_a_message() -> None:
    dec = FrameDecoder()
    dec.feed(b"<a>]]>]]")
    assert dec.pop() is None
    dec.feed(b"x</a>")
    assert dec.pop() is None
    dec.feed(b"]]>]]>")
    assert dec.pop() == b"<a>]]>]]x</a>"


def test_eom_size_cap() -> None:
    dec = FrameDecoder(max_message_bytes=10)
    dec.feed(b"0123456789")
    assert dec.pop() is None
    dec.feed(b"0123456789")
    with pytest.raises(FramingError):
        dec.pop()
    with pytest.raises(FramingError):
        dec.feed(b"]]>]]>")


def test_eom_message_at_cap_is_accepted() -> None:
    dec = FrameDecoder(max_message_bytes=10)
    dec.feed(b"0123456789]]>]]>")
    assert dec.pop() == b"0123456789"


def test_eom_complete_message_over_cap_is_refused() -> None:
    dec = FrameDecoder(max_message_bytes=4)
    dec.feed(b"01234]]>]]>")
    with pytest.raises(FramingError):
        dec.pop()


# -- chunked decoding -----------------------------------------------------------------------------

RFC_EXAMPLE = b"\n#4\n<rpc\n#18\n message-id=\"102\"\n\n#79\n" + (
    b"     xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\n"
    b"  <close-session/>\n</rpc>"
) + b"\n##\n"


def test_chunked_rfc_example_bulk_and_bytewise() -> None:
    expected = (b"<rpc message-id=\"102\"\n     xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\n"
                b"  <close-session/>\n</rpc>")
    dec = FrameDecoder(chunked=True)
    dec.feed(RFC_EXAMPLE)
    assert drain(dec) == [expected]
    assert feed_bytewise(FrameDecoder(chunked=True), RFC_EXAMPLE * 2) == [expected, expected]


def test_chunked_round_trip_many_chunks() -> None:
    msg = bytes(range(256)) * 50
    dec = FrameDecoder(chunked=True)
    wire = encode_chunked(msg, max_chunk=333) + encode_chunked(b"<x/>")
    for start in range(0, len(wire), 7):
        dec.feed(wire[start:start + 7])
    assert drain(dec) == [msg, b"<x/>"]
    assert dec.buffered == 0


def test_chunk_data_may_contain_header_like_bytes() -> None:
    msg = b"\n##\n]]>]]>\n#5\n"
    dec = FrameDecoder(chunked=True)
    dec.feed(encode_chunked(msg))
    assert dec.pop() == msg


@pytest.mark.parametrize("wire", [
    b"#4\nabcd\n##\n",          # missing leading LF
    b"\n4\nabcd\n##\n",         # missing hash
    b"\n#04\nabcd\n##\n",       # leading zero
    b"\n#0\n\n##\n",            # zero size
    b"\n#\nabc",                # empty size
    b"\n#4x\nabcd",             # non-digit
    b"\n#-4\nabcd",             # sign
    b"\n##\n",                  # end-of-chunks with no chunk
    b"\n#4\nabcd\n##x",         # bad end marker
    b"\n#4\nabcdX#4\n",         # data longer than announced
    b"\n#12345678901\n",        # 11 digits
    b"\n#4294967296\n",         # over the RFC maximum
])
def test_chunked_rejects_bad_framing(wire: bytes) -> None:
    dec = FrameDecoder(chunked=True, max_message_bytes=2**40)
    dec.feed(wire)
    with pytest.raises(FramingError):
        drain(dec)


def test_chunked_rejects_bad_framing_bytewise() -> None:
    dec = FrameDecoder(chunked=True)
    with pytest.raises(FramingError):
        feed_bytewise(dec, b"\n#4\nabcd\n#x")


def test_chunked_eleven_digits_detected_before_newline() -> None:
    dec = FrameDecoder(chunked=True)
    dec.feed(b"\n#1234567890")
    assert dec.pop() is None
    dec.feed(b"1")
    with pytest.raises(FramingError):
        dec.pop()


def test_chunked_size_cap_checked_at_header() -> None:
    dec = FrameDecoder(chunked=True, max_message_bytes=100)
    dec.feed(b"\n#60\n" + b"a" * 60)
    assert dec.pop() is None
    dec.feed(b"\n#41\n")
    with pytest.raises(FramingError):
        dec.pop()


def test_chunked_default_cap_is_32_mib() -> None:
    dec = FrameDecoder(chunked=True)
    dec.feed(b"\n#33554433\n")
    with pytest.raises(FramingError):
        dec.pop()
    ok = FrameDecoder(chunked=True)
    ok.feed(b"\n#33554432\n")
    assert ok.pop() is None


# -- switching after the hellos -------------------------------------------------------------------

def test_switch_to_chunked_keeps_buffered_bytes() -> None:
    dec = FrameDecoder()
    dec.feed(b"<hello/>]]>]]>\n#6\n<rpc/>\n##\n")
    assert dec.pop() == b"<hello/>"
    dec.set_chunked()
    assert dec.chunked
    assert dec.pop() == b"<rpc/>"
    assert dec.pop() is None


def test_switch_after_partial_eom_scan() -> None:
    dec = FrameDecoder()
    dec.feed(b"<hello/>]]>]]>\n#6")
    assert dec.pop() == b"<hello/>"
    dec.set_chunked()
    assert dec.pop() is None
    dec.feed(b"\n<rpc/>\n##\n")
    assert dec.pop() == b"<rpc/>"


def test_eom_bytes_after_switch_are_a_framing_error() -> None:
    dec = FrameDecoder()
    dec.feed(b"<hello/>]]>]]><rpc/>]]>]]>")
    assert dec.pop() == b"<hello/>"
    dec.set_chunked()
    with pytest.raises(FramingError):
        dec.pop()

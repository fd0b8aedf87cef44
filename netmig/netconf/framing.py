"""RFC 6242 message framing: end-of-message (base:1.0, and every hello) and chunked (base:1.1).

:class:`MessageFraming` splits the bytes read from the SSH channel into whole messages in linear time
and refuses a message larger than its cap before holding it all; :func:`frame` wraps an outgoing one.
Pure byte handling: no I/O, no XML.
"""

from __future__ import annotations

import re

__all__ = ["FramingError", "MessageFraming", "frame"]

EOM = b"]]>]]>"
_CHUNK_HEADER = re.compile(rb"\n(?:#([1-9][0-9]{0,9})|(##))\n")
_LONGEST_HEADER = 14  # "\n#" + 10 digits + "\n", with room for the byte that tells it is complete


class FramingError(ValueError):
    """The peer broke the framing, or sent a message over the size cap."""


def frame(message: bytes, *, chunked: bool) -> bytes:
    """One outgoing message, framed: a single chunk (base:1.1) or followed by ``]]>]]>`` (base:1.0)."""
    if chunked:
        return b"\n#%d\n%s\n##\n" % (len(message), message)
    return message + EOM


def _one_chunk(data: bytes, max_bytes: int) -> bytes | None:
    """``data`` is exactly one message in a single chunk: that message (stripped), else None."""
    match = _CHUNK_HEADER.match(data)
    if match is None or match.group(1) is None:
        return None
    size, start = int(match.group(1)), match.end()
    if size > max_bytes or len(data) != start + size + 4 or not data.endswith(b"\n##\n"):
        return None
    return data[start:start + size].strip()


class MessageFraming:
    """Incremental deframer: :meth:`feed` the bytes as they arrive, get back every completed message."""

    def __init__(self, max_bytes: int) -> None:
        self.chunked = False  # every session starts in end-of-message framing (the hellos)
        self._max = max_bytes
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._size = 0  # chunked: bytes of the current message so far
        self._need = 0  # chunked: bytes still owed to the current chunk

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the messages it completed (stripped; empty ones dropped)."""
        if self.chunked and not self._buf and not self._need and not self._parts:
            whole = _one_chunk(data, self._max)
            if whole is not None:  # the usual case: a reply in one chunk, in one read
                return [whole] if whole else []
        self._buf += data
        found = self._chunks() if self.chunked else self._eom()
        return [m for m in (m.strip() for m in found) if m]

    def _too_large(self) -> FramingError:
        return FramingError(f"message larger than the {self._max}-byte limit")

    def _eom(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            end = self._buf.find(EOM)
            if end < 0:
                if len(self._buf) > self._max + len(EOM):
                    raise self._too_large()
                return out
            out.append(bytes(self._buf[:end]))
            del self._buf[:end + len(EOM)]

    def _chunks(self) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        pos = 0  # consumed so far; the buffer is cut once, at the end (not once per chunk)
        try:
            while pos < len(buf):
                if self._need:
                    take = min(self._need, len(buf) - pos)
                    self._parts.append(bytes(buf[pos:pos + take]))
                    pos += take
                    self._need -= take
                    continue
                match = _CHUNK_HEADER.match(buf, pos)
                if match is None:
                    head = bytes(buf[pos:pos + _LONGEST_HEADER])
                    if (len(head) >= _LONGEST_HEADER or not head.startswith(b"\n")
                            or head[1:2] not in (b"", b"#") or b"\n" in head[1:]):
                        raise FramingError("chunked framing error")
                    return out  # a header split across reads
                size, end = match.group(1), match.group(2)
                pos = match.end()
                if end:
                    out.append(b"".join(self._parts))
                    self._parts, self._size = [], 0
                    continue
                self._need = int(size)
                self._size += self._need
                if self._size > self._max:
                    raise self._too_large()
            return out
        finally:
            del buf[:pos]

"""RFC 6242 message framing: end-of-message (base:1.0) and chunked (base:1.1).

Pure code, no I/O. :class:`FrameDecoder` takes bytes as they arrive and hands back complete messages;
its mode can switch from end-of-message to chunked between two messages, which is what a session does
once both hellos advertise base:1.1. :class:`FrameEncoder` frames outgoing messages the same way.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EOM_DELIMITER",
    "MAX_CHUNK_SIZE",
    "FrameDecoder",
    "FrameEncoder",
    "FramingError",
    "encode_chunked",
    "encode_eom",
]

EOM_DELIMITER = b"]]>]]>"
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_CHUNK_SIZE = 4294967295
_MAX_SIZE_DIGITS = 10
_END_OF_CHUNKS = b"\n##\n"
_DEFAULT_SEND_CHUNK = 1024 * 1024


class FramingError(ValueError):
    """The peer broke RFC 6242 framing or sent a message over the size cap; the session must close."""


def encode_eom(message: bytes) -> bytes:
    """Frame ``message`` for base:1.0: the message followed by ``]]>]]>``."""
    if EOM_DELIMITER in message:
        raise ValueError("message contains the end-of-message delimiter")
    return message + EOM_DELIMITER


def encode_chunked(message: bytes, *, max_chunk: int = _DEFAULT_SEND_CHUNK) -> bytes:
    """Frame ``message`` for base:1.1 as one or more chunks of at most ``max_chunk`` bytes."""
    if not message:
        raise ValueError("a chunked message needs at least one byte")
    if not 1 <= max_chunk <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
    parts: list[bytes] = []
    for start in range(0, len(message), max_chunk):
        chunk = message[start:start + max_chunk]
        parts.append(b"\n#%d\n" % len(chunk))
        parts.append(chunk)
    parts.append(_END_OF_CHUNKS)
    return b"".join(parts)


class FrameEncoder:
    """Frames outgoing messages; starts in end-of-message mode."""

    def __init__(self, *, chunked: bool = False, max_chunk: int = _DEFAULT_SEND_CHUNK) -> None:
        self.chunked = chunked
        self._max_chunk = max_chunk

    def encode(self, message: bytes) -> bytes:
        """The framed bytes of ``message`` in the current mode."""
        if self.chunked:
            return encode_chunked(message, max_chunk=self._max_chunk)
        return encode_eom(message)


class FrameDecoder:
    """Incremental RFC 6242 decoder: :meth:`feed` bytes, then :meth:`pop` messages until it returns None.

    Delimiters and chunk headers may be split across reads. A bad chunk header, a message over
    ``max_message_bytes`` or a chunk size over the RFC limit raises :class:`FramingError`; the decoder
    is unusable afterwards.
    """

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, chunked: bool = False) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self._max = max_message_bytes
        self._chunked = chunked
        self._buf = bytearray()
        self._scan_from = 0            # end-of-message mode: where the next delimiter search starts
        self._parts: list[bytes] = []  # chunked mode: chunks of the message being assembled
        self._msg_len = 0
        self._chunk_left = 0           # chunked mode: data bytes still owed by the current chunk
        self._broken = False

    @property
    def chunked(self) -> bool:
        """True once the decoder reads chunked framing."""
        return self._chunked

    def set_chunked(self) -> None:
        """Read chunked framing from the next message on (bytes already buffered included)."""
        if self._chunked:
            return
        self._scan_from = 0
        self._chunked = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a message."""
        return len(self._buf) + self._msg_len

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._broken:
            raise FramingError("decoder already failed")
        self._buf += data

    def pop(self) -> bytes | None:
        """The next complete message, or None when more bytes are needed."""
        if self._broken:
            raise FramingError("decoder already failed")
        try:
            return self._pop_chunked() if self._chunked else self._pop_eom()
        except FramingError:
            self._broken = True
            raise

    def _pop_eom(self) -> bytes | None:
        idx = self._buf.find(EOM_DELIMITER, self._scan_from)
        if idx < 0:
            if len(self._buf) > self._max + len(EOM_DELIMITER):
                raise FramingError(f"message exceeds {self._max} bytes without an end-of-message delimiter")
            self._scan_from = max(0, len(self._buf) - len(EOM_DELIMITER) + 1)
            return None
        if idx > self._max:
            raise FramingError(f"message of {idx} bytes exceeds the {self._max}-byte limit")
        message = bytes(self._buf[:idx])
        del self._buf[:idx + len(EOM_DELIMITER)]
        self._scan_from = 0
        return message

    def _pop_chunked(self) -> bytes | None:
        while True:
            if self._chunk_left:
                take = min(self._chunk_left, len(self._buf))
                if take == 0:
                    return None
                self._parts.append(bytes(self._buf[:take]))
                del self._buf[:take]
                self._chunk_left -= take
                continue
            header = self._read_header()
            if header is None:
                return None
            if header == 0:  # end-of-chunks
                message = b"".join(self._parts)
                self._parts = []
                self._msg_len = 0
                return message
            if self._msg_len + header > self._max:
                raise FramingError(f"message exceeds the {self._max}-byte limit")
            self._msg_len += header
            self._chunk_left = header

    def _read_header(self) -> int | None:
        """Consume one ``\\n#SIZE\\n`` (returns SIZE) or ``\\n##\\n`` (returns 0); None if incomplete."""
        buf = self._buf
        for pos, expected in enumerate(b"\n#"):
            if len(buf) <= pos:
                return None
            if buf[pos] != expected:
                raise FramingError(f"bad chunk header {bytes(buf[:pos + 1])!r}")
        if len(buf) < 3:
            return None
        if buf[2] == ord("#"):
            if len(buf) < 4:
                return None
            if buf[3] != ord("\n"):
                raise FramingError("bad end-of-chunks marker")
            if not self._parts:
                raise FramingError("end-of-chunks before any chunk")
            del buf[:4]
            return 0
        end = buf.find(b"\n", 2, 3 + _MAX_SIZE_DIGITS)
        digits = bytes(buf[2:end]) if end >= 0 else bytes(buf[2:3 + _MAX_SIZE_DIGITS])
        if digits and (not digits.isdigit() or digits[0] == ord("0")):
            raise FramingError(f"bad chunk size {digits!r}")
        if end < 0:
            if len(digits) > _MAX_SIZE_DIGITS:
                raise FramingError("chunk size longer than 10 digits")
            return None
        if not digits:
            raise FramingError("empty chunk size")
        size = int(digits)
        if size > MAX_CHUNK_SIZE:
            raise FramingError(f"chunk size {size} exceeds {MAX_CHUNK_SIZE}")
        del buf[:end + 1]
        return size

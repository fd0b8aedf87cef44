"""A malicious device, for tests only: replaces the reply to chosen operations with hostile XML.

Plugged in through the runtime's :class:`~netconf_sim.runtime.RpcFaults` hook (wrapping whatever hook
was there, which still sees every other rpc)::

    dev = fabric.device("a-leaf1")
    fabric.call(lambda: HostileReplies.install(dev.runtime, "xxe", {"get-config"}))

Kinds: ``xxe`` (external entity on /etc/passwd), ``xxe-late`` (the same behind a 8 KB comment, past
any "look at the first few KB" screen), ``billion-laughs``, ``deep`` (10,000 nested elements) and
``oversized`` (an rpc-reply of ``oversize_bytes`` elements and whitespace, streamed in 64 KB pieces
with flow control, so the simulator itself stays small). The hostile message is framed like any
other message of the session and written straight to the transport; the hook then waits for the client
to hang up (a client that swallowed the reply finds the session stuck and times out, which a test sees).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from .runtime import DeviceRuntime, RpcContext, RpcFaults
from .xml import Element

__all__ = ["KINDS", "HostileReplies"]

log = logging.getLogger(__name__)

KINDS = ("xxe", "xxe-late", "billion-laughs", "deep", "oversized")
_NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
_PIECE = 64 * 1024
_HIGH_WATER = 1024 * 1024
_WAIT_FOR_HANGUP_S = 30.0


def _open(mid: str) -> bytes:
    return f'<rpc-reply xmlns="{_NC}" message-id="{mid}"><data>'.encode()


_CLOSE = b"</data></rpc-reply>"


def _payload(kind: str, mid: str, oversize_bytes: int) -> Iterator[bytes]:
    if kind in ("xxe", "xxe-late"):
        pad = b"<!--" + b"x" * 8192 + b"-->\n" if kind == "xxe-late" else b""
        yield (b'<?xml version="1.0"?>\n' + pad + b'<!DOCTYPE rpc-reply [<!ENTITY xxe SYSTEM '
               b'"file:///etc/passwd">]>\n' + _open(mid) + b"<leak>&xxe;</leak>" + _CLOSE)
    elif kind == "billion-laughs":
        ents = [b'<!ENTITY lol0 "lol">'] + [
            f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">'.encode() for i in range(1, 10)]
        yield (b'<?xml version="1.0"?>\n<!DOCTYPE rpc-reply [' + b"".join(ents) + b"]>\n"
               + _open(mid) + b"<lol>&lol9;</lol>" + _CLOSE)
    elif kind == "deep":
        yield _open(mid) + b"<a>" * 10_000 + b"</a>" * 10_000 + _CLOSE
    elif kind == "oversized":
        yield _open(mid)
        piece = (b"<x>y</x>" + b" " * 56) * (_PIECE // 64)
        for _ in range(max(1, oversize_bytes // len(piece))):
            yield piece
        yield _CLOSE
    else:
        raise ValueError(f"unknown hostile reply kind {kind!r} (one of {', '.join(KINDS)})")


class HostileReplies:
    """RpcFaults hook: the replies to ``operations`` become ``kind``; everything else goes to ``inner``."""

    def __init__(self, kind: str, operations: Iterable[str], *, inner: RpcFaults | None = None,
                 oversize_bytes: int = 100 * 1024 * 1024, after: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown hostile reply kind {kind!r} (one of {', '.join(KINDS)})")
        self.kind = kind
        self.operations = frozenset(operations)
        self.inner = inner
        self.oversize_bytes = oversize_bytes
        self.after = after  # run the operation first (a commit really happens), then garble its reply
        self.sent = 0  # hostile replies written

    @classmethod
    def install(cls, runtime: DeviceRuntime, kind: str, operations: Iterable[str],
                **kwargs: Any) -> HostileReplies:
        """Wrap ``runtime``'s current hook (call on the fabric's loop: ``fabric.call(...)``)."""
        hook = cls(kind, operations, inner=runtime.faults, **kwargs)
        runtime.faults = hook
        return hook

    async def before_rpc(self, ctx: RpcContext) -> Element | bytes | None:
        if ctx.operation in self.operations and not self.after:
            await self._send_hostile(ctx)
            return None
        return await self.inner.before_rpc(ctx) if self.inner is not None else None

    async def after_rpc(self, ctx: RpcContext, reply: Element) -> Element | bytes | None:
        if ctx.operation in self.operations and self.after:
            await self._send_hostile(ctx)
            return None
        return await self.inner.after_rpc(ctx, reply) if self.inner is not None else None

    async def _send_hostile(self, ctx: RpcContext) -> None:
        session = ctx.session
        mid = ctx.rpc.get("message-id") or "0"
        chunked = bool(getattr(session, "_encoder").chunked)  # noqa: B009 - same package, test-only
        transport = session.transport
        chan = getattr(transport, "_chan", None)  # server.py's SSH channel: for flow control
        log.warning("%s: sending a hostile %s reply to %s", session.runtime.name, self.kind, ctx.operation)
        self.sent += 1
        for piece in _payload(self.kind, mid, self.oversize_bytes):
            if session.closed:
                return
            transport.write(b"\n#%d\n%s" % (len(piece), piece) if chunked else piece)
            while chan is not None and not session.closed and chan.get_write_buffer_size() > _HIGH_WATER:
                await asyncio.sleep(0.002)
        if session.closed:
            return
        transport.write(b"\n##\n" if chunked else b"]]>]]>")
        for _ in range(int(_WAIT_FOR_HANGUP_S / 0.05)):
            if session.closed:
                return
            await asyncio.sleep(0.05)
        session.abort()

"""Device-to-device transfers of the distributed modes: a small NETCONF client inside the simulator.

:func:`run_job` is one device's part of a vdp-associate. D-PUSH (S-bit): the device exports the VM's DI
and, for each partner, opens a NETCONF session to it, locks its candidate, sends ``import-di`` and a
follow-up ``commit confirmed`` with the persist-id both sides derive from the migration-id
(:func:`netconf_sim.migration_xml.persist_id_for`; from the associate's ``group-id`` when it has one: the
associates of a batch's VMs then share one pending commit per destination), then unlocks. D-PULL
(M-bit): the device fetches ``export-di`` from each source partner and imports the blob into its own
candidate the same way (over NETCONF to itself, so locks and the confirmed commit behave exactly as for
a remote peer). Every transfer is announced with a ``di-transferred`` notification and the device's part
ends with one ``migration-feedback`` notification, success or fail. The caller (netmig) confirms or
cancels.

A peer's candidate that another session holds is waited for (:class:`LockWait`): until a little before
the caller's ``feedback-deadline`` when the associate carries one, so the device's fail report, naming
the wait, arrives while the caller still listens; :data:`LOCK_WAIT_S` per lock when it does not.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import random
import time
from dataclasses import dataclass
from types import TracebackType

import asyncssh
from lxml import etree

from .framing import FrameDecoder, FrameEncoder, FramingError
from .learned import LearnedEntry
from .migration import MigrationAgent, read_blob
from .migration_xml import (
    MIGRATION_NS,
    Associate,
    Peer,
    copy_rules,
    feedback_notification,
    persist_id_for,
    transferred_notification,
)
from .runtime import BASE_10, BASE_11
from .xml import NC_NS, Element, XmlInputError, parse, qname

__all__ = ["LOCK_WAIT_S", "LockWait", "PeerClient", "TransferError", "run_job"]

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 30.0
# How long a transfer waits for a peer's candidate another session holds when the associate does not say
# how long its sender waits for feedback (other clients): well inside netmig's default of 30 s.
LOCK_WAIT_S = 20.0
# With a feedback-deadline the device gives up this much before it: a fifth of it, at least 0.5 s (its
# discard, unlock and fail report still have to travel), at most 5 s, never more than half of it.
_MARGIN_SHARE, _MARGIN_MIN_S, _MARGIN_MAX_S = 0.2, 0.5, 5.0
_BUSY_TAGS = frozenset({"lock-denied", "in-use", "resource-denied"})


class TransferError(Exception):
    """A device-to-device step failed; ``tag`` is the peer's rpc-error tag when it sent one."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag


@dataclass(frozen=True, slots=True)
class LockWait:
    """How long one device's transfers wait for a peer's candidate that another session holds.

    ``give_up_at`` (time.monotonic) ends every wait of the job, a margin before the caller's
    ``feedback_deadline_s`` measured from the job's start; None: :data:`LOCK_WAIT_S` from each lock's start.
    """

    give_up_at: float | None = None
    feedback_deadline_s: float | None = None

    @classmethod
    def from_associate(cls, op: Element, *, started: float, device: str = "device") -> LockWait:
        """The wait for ``device``'s job that ``started`` (monotonic) on the associate ``op``;
        TransferError if its ``feedback-deadline`` is not a positive number of seconds."""
        text = op.findtext(qname(MIGRATION_NS, "feedback-deadline"))
        if text is None:
            return cls()
        try:
            deadline_s = float(text.strip())
        except ValueError:
            deadline_s = math.nan
        if not math.isfinite(deadline_s) or deadline_s <= 0:
            raise TransferError(f"{device}: vdp-associate: feedback-deadline {text.strip()!r} is not a "
                                "positive number of seconds")
        margin_s = min(max(deadline_s * _MARGIN_SHARE, _MARGIN_MIN_S), _MARGIN_MAX_S, deadline_s / 2)
        return cls(started + deadline_s - margin_s, deadline_s)

    def until(self) -> float:
        """When a lock attempt starting now gives up (time.monotonic)."""
        return self.give_up_at if self.give_up_at is not None else time.monotonic() + LOCK_WAIT_S

    def bound(self) -> str:
        """What bounds the wait, for the failure message."""
        if self.feedback_deadline_s is None:
            return ""
        return f", giving up before the {self.feedback_deadline_s:g} s feedback deadline"


class PeerClient:
    """One NETCONF session from a simulated device to a peer (``async with await PeerClient.open(...)``)."""

    def __init__(self, name: str, conn: asyncssh.SSHClientConnection,
                 writer: asyncssh.SSHWriter[bytes], reader: asyncssh.SSHReader[bytes]) -> None:
        self.name = name
        self._conn = conn
        self._writer = writer
        self._reader = reader
        self._decoder = FrameDecoder()
        self._encoder = FrameEncoder()
        self._next_id = 1

    @classmethod
    async def open(cls, agent: MigrationAgent, name: str, address: str, port: int) -> PeerClient:
        login = agent.directory.login_for(address, port)
        if login is None:
            raise TransferError(f"{agent.name}: no login for {name} at {address}:{port}")
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                address, port, username=login[0], password=login[1],
                known_hosts=agent.directory.known_hosts_path, client_keys=None, agent_path=None,
                preferred_auth="password"), RPC_TIMEOUT_S)
            writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise TransferError(f"{agent.name}: cannot reach {name} at {address}:{port}: {exc}") from exc
        client = cls(name, conn, writer, reader)
        try:
            await client._hello()
        except BaseException:
            await client.close()
            raise
        return client

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        self._conn.close()
        await self._conn.wait_closed()

    async def _read_message(self) -> Element:
        while (message := self._decoder.pop()) is None:
            data = await asyncio.wait_for(self._reader.read(65536), RPC_TIMEOUT_S)
            if not data:
                raise TransferError(f"{self.name} closed the session")
            self._decoder.feed(data)
        try:
            return parse(message)
        except XmlInputError as exc:
            raise TransferError(f"{self.name} sent unreadable XML: {exc}") from exc

    async def _hello(self) -> None:
        hello = etree.Element(qname(NC_NS, "hello"), nsmap={None: NC_NS})
        caps = etree.SubElement(hello, qname(NC_NS, "capabilities"))
        for cap in (BASE_10, BASE_11):
            etree.SubElement(caps, qname(NC_NS, "capability")).text = cap
        data = etree.tostring(hello, xml_declaration=True, encoding="UTF-8")
        self._writer.write(self._encoder.encode(data))
        server = await self._read_message()
        names = {(c.text or "").strip() for c in server.iter(qname(NC_NS, "capability"))}
        if BASE_11 in names:
            self._decoder.set_chunked()
            self._encoder.chunked = True

    async def rpc(self, operation: Element) -> Element:
        """Send one operation; the rpc-reply, or TransferError carrying the first rpc-error."""
        rpc = etree.Element(qname(NC_NS, "rpc"), nsmap={None: NC_NS})
        rpc.set("message-id", str(self._next_id))
        self._next_id += 1
        rpc.append(operation)
        try:
            self._writer.write(self._encoder.encode(etree.tostring(rpc, encoding="UTF-8")))
            while True:
                reply = await self._read_message()
                if reply.tag == qname(NC_NS, "rpc-reply"):
                    break
        except (FramingError, OSError, asyncssh.Error, TimeoutError) as exc:
            raise TransferError(f"{self.name}: {etree.QName(operation).localname} failed: {exc}") from exc
        error = reply.find(qname(NC_NS, "rpc-error"))
        if error is not None:
            tag = error.findtext(qname(NC_NS, "error-tag"))
            text = error.findtext(qname(NC_NS, "error-message")) or tag or "rpc-error"
            raise TransferError(f"{self.name}: {etree.QName(operation).localname}: {text.strip()}", tag)
        return reply


def _op(ns: str, name: str, **leaves: str | None) -> Element:
    el = etree.Element(qname(ns, name), nsmap={None: ns})
    for leaf, value in leaves.items():
        if value is not None:
            etree.SubElement(el, qname(ns, leaf.replace("_", "-"))).text = value
    return el


def _datastore_op(name: str, param: str) -> Element:
    el = _op(NC_NS, name)
    holder = etree.SubElement(el, qname(NC_NS, param))
    etree.SubElement(holder, qname(NC_NS, "candidate"))
    return el


async def _lock(client: PeerClient, wait: LockWait) -> None:
    """Lock the peer's candidate; while another session holds it (another coordinator staging, another
    device importing) retry with jittered backoff until ``wait`` says stop, then fail naming the device."""
    started = time.monotonic()
    deadline = wait.until()
    delay = 0.02
    while True:
        try:
            await client.rpc(_datastore_op("lock", "target"))
            return
        except TransferError as exc:
            if exc.tag not in _BUSY_TAGS:
                raise
            if time.monotonic() + delay > deadline:
                waited_s = round(max(deadline - started, 0.0), 1)
                raise TransferError(f"{client.name}: candidate held by another session for more than "
                                    f"{waited_s:g} s (another migration?){wait.bound()}: {exc}",
                                    exc.tag) from exc
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 0.5)


async def import_and_commit(client: PeerClient, job: Associate, *, source: str, destination: str,
                            blob: str, content_type: str, sha256: str, kinds: tuple[str, ...],
                            vm_port: str | None, wait: LockWait | None = None) -> int:
    """Lock the peer's candidate (waiting as ``wait`` allows; default: :data:`LOCK_WAIT_S`), import-di,
    follow-up confirmed commit with the persist-id derived from the job's group-id, or migration-id."""
    persist = persist_id_for(job.commit_id, destination)
    await _lock(client, wait or LockWait())
    try:
        op = _op(MIGRATION_NS, "import-di", migration_id=job.migration_id, vm_id=job.vm_id, blob=blob,
                 content_type=content_type, sha256=sha256, **{"from": source})
        for kind in kinds:
            etree.SubElement(op, qname(MIGRATION_NS, "kind")).text = kind
        if vm_port is not None:
            etree.SubElement(op, qname(MIGRATION_NS, "vm-port")).text = vm_port
        copy_rules(job.rules_xml, op)
        reply = await client.rpc(op)
        count = int(reply.findtext(qname(MIGRATION_NS, "entry-count")) or "0")
        commit = _op(NC_NS, "commit", confirm_timeout=str(job.confirm_timeout_s), persist=persist,
                     persist_id=persist)
        etree.SubElement(commit, qname(NC_NS, "confirmed"))
        await client.rpc(commit)
        return count
    except BaseException:
        try:
            await client.rpc(_op(NC_NS, "discard-changes"))
        except TransferError as exc:
            log.info("%s: discard after a failed import: %s", destination, exc)
        raise
    finally:
        try:
            await client.rpc(_datastore_op("unlock", "target"))
        except TransferError as exc:
            log.info("%s: unlock: %s", destination, exc)


def _counts(entries: list[LearnedEntry], kinds: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        if not kinds or entry.kind in kinds:
            counts[entry.kind] = counts.get(entry.kind, 0) + 1
    return counts


async def _push(agent: MigrationAgent, job: Associate, peer: Peer, totals: dict[str, int],
                wait: LockWait) -> None:
    counts = _counts(agent.vm_entries(job.vm_id), peer.kinds)
    if not counts:
        return
    blob, content_type, _ = agent.export_blob(job.vm_id)
    async with await PeerClient.open(agent, peer.name, peer.address, peer.port) as client:
        await import_and_commit(client, job, source=agent.name, destination=peer.name,
                                blob=base64.b64encode(blob).decode(), content_type=content_type,
                                sha256=hashlib.sha256(blob).hexdigest(), kinds=peer.kinds,
                                vm_port=peer.vm_port, wait=wait)
    for kind, n in counts.items():
        totals[kind] = totals.get(kind, 0) + n
    agent.notify(transferred_notification(job, agent.name, peer.name, counts))


async def _pull(agent: MigrationAgent, job: Associate, peer: Peer, totals: dict[str, int],
                wait: LockWait) -> None:
    async with await PeerClient.open(agent, peer.name, peer.address, peer.port) as source:
        reply = await source.rpc(_op(MIGRATION_NS, "export-di", migration_id=job.migration_id,
                                     vm_id=job.vm_id))
    leaves = {name: (reply.findtext(qname(MIGRATION_NS, name)) or "").strip()
              for name in ("blob", "content-type", "sha256")}
    entries = read_blob(base64.b64decode(leaves["blob"]), leaves["content-type"], job.vm_id,
                        agent.shape_for_flavour)
    counts = _counts(entries, peer.kinds)
    if not counts:
        return
    address, port = agent.directory.endpoint_of(agent.name)
    async with await PeerClient.open(agent, agent.name, address, port) as me:
        await import_and_commit(me, job, source=peer.name, destination=agent.name, blob=leaves["blob"],
                                content_type=leaves["content-type"], sha256=leaves["sha256"],
                                kinds=peer.kinds, vm_port=job.own_vm_port, wait=wait)
    for kind, n in counts.items():
        totals[kind] = totals.get(kind, 0) + n
    agent.notify(transferred_notification(job, peer.name, agent.name, counts))


async def run_job(agent: MigrationAgent, job: Associate) -> None:
    """One device's part of an associate, ending with its migration-feedback notification."""
    started = time.monotonic()
    totals: dict[str, int] = {}
    reason: str | None = None
    try:
        # rules_xml is the whole associate
        wait = LockWait.from_associate(job.rules_xml, started=started, device=agent.name)
        for peer in job.partners:
            await (_push if job.push else _pull)(agent, job, peer, totals, wait)
    except TransferError as exc:
        reason = str(exc)
    except Exception as exc:  # fault barrier: a bug must still end in a fail report, not silence
        log.exception("%s: transfer failed", agent.name)
        reason = f"{agent.name}: internal error: {exc}"
    duration_ms = int((time.monotonic() - started) * 1000)
    agent.notify(feedback_notification(job, agent.name, ok=reason is None, reason=reason, counts=totals,
                                       duration_ms=duration_ms))

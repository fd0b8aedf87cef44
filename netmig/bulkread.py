"""Bulk reads for a batch: each device's relevant containers read once, every VM's filter answered locally.

A batch prepares many VMs that touch the same devices. Instead of one filtered get-config and one get
per VM per device, a :class:`BulkDevice` reads the subtrees a VM's subtree filter reaches into once
(whole: each top-level filter node's path down to where it starts selecting entries) and answers each
VM's filter from that copy (netmig.codecs.subtree.LocalData: what the device would have sent for the
same filter, in time proportional to the answer), so codecs decode the answers unchanged.

The copy is a snapshot: a batch reads before any of its commits, so nothing it reads changes meanwhile.
"""

from __future__ import annotations

import threading

from netmig.codecs.base import DeviceCodec, Element, LocalNarrowing
from netmig.codecs.subtree import LocalData, data_of, empty_data, filter_prefix, prefix_filter
from netmig.pull import ReadSession

__all__ = ["BulkDevice", "BulkReader"]


class BulkDevice:
    """One device's snapshot for a batch: per (operation, path) the subtree read once, shared by threads.

    With a ``codec`` that can narrow its config filter (:class:`~netmig.codecs.base.LocalNarrowing`,
    e.g. the IETF ACLs, named only by the port's attachment point), a VM's get-config is answered for
    the narrowed filter, so the answer holds (and copies) the VM's own entries, not the whole list.
    """

    def __init__(self, name: str, codec: DeviceCodec | None = None) -> None:
        self.name = name
        self.codec = codec
        self._data: dict[tuple[str, tuple[str, ...]], LocalData] = {}
        self._lock = threading.Lock()
        self.reads = 0  # RPCs sent for the snapshot

    def answer(self, op: str, filter: Element, session: ReadSession) -> Element:
        """What the device answers ``op`` (``get-config`` of running, or ``get``) with ``filter``
        (for a narrowed config filter: what the codec decodes to the same bundle)."""
        with self._lock:
            self._paths(op, filter, session)  # the snapshot reads the original filter's paths
            if op == "get-config" and isinstance(self.codec, LocalNarrowing):
                filter = self.codec.narrow_config_filter(filter, lambda f: self._select(op, f, session))
            return self._select(op, filter, session)

    def _paths(self, op: str, filter: Element, session: ReadSession) -> list[tuple[Element, LocalData]]:
        """Each top-level filter node with the snapshot answering it (read now when missing)."""
        tops = [f for f in filter if isinstance(f.tag, str)]
        tags = [str(f.tag) for f in tops]
        paths = [(filter_prefix(f) if tags.count(str(f.tag)) == 1 else (str(f.tag),)) for f in tops]
        missing = sorted({p for p in paths if self._held(op, p) is None})
        if missing:
            self._fetch(op, missing, session)
        found = [(f, self._held(op, p)) for f, p in zip(tops, paths, strict=True)]
        return [(f, held) for f, held in found if held is not None]

    def _held(self, op: str, path: tuple[str, ...]) -> LocalData | None:
        """The snapshot of ``path``, or of a path above it (which holds it whole)."""
        for n in range(len(path), 0, -1):
            found = self._data.get((op, path[:n]))
            if found is not None:
                return found
        return None

    def _select(self, op: str, filter: Element, session: ReadSession) -> Element:
        out = empty_data()
        for f, data in self._paths(op, filter, session):
            for part in data.select([f]):
                out.append(part)
        return out

    def _fetch(self, op: str, paths: list[tuple[str, ...]], session: ReadSession) -> None:
        flt = prefix_filter(paths)
        reply = session.get_config("running", flt) if op == "get-config" else session.get(flt)
        self.reads += 1
        for path in paths:
            self._data[(op, path)] = LocalData(data_of(reply, path[0]))


class BulkReader:
    """A :class:`~netmig.pull.ReadSession` answering filtered reads of running/state from a BulkDevice
    (through ``session`` for the snapshot's own reads); other reads go to ``session``."""

    def __init__(self, device: BulkDevice, session: ReadSession) -> None:
        self.device = device
        self.session = session

    def get_config(self, source: str, filter: Element | None = None) -> Element:
        if source != "running" or filter is None:
            return self.session.get_config(source, filter)
        return self.device.answer("get-config", filter, self.session)

    def get(self, filter: Element | None = None) -> Element:
        if filter is None:
            return self.session.get(filter)
        return self.device.answer("get", filter, self.session)

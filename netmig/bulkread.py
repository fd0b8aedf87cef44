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

from netmig.codecs.base import Element
from netmig.codecs.subtree import LocalData, data_of, empty_data, filter_prefix, prefix_filter
from netmig.pull import ReadSession

__all__ = ["BulkDevice", "BulkReader"]


class BulkDevice:
    """One device's snapshot for a batch: per (operation, path) the subtree read once, shared by threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[tuple[str, tuple[str, ...]], LocalData] = {}
        self._lock = threading.Lock()
        self.reads = 0  # RPCs sent for the snapshot

    def answer(self, op: str, filter: Element, session: ReadSession) -> Element:
        """What the device answers ``op`` (``get-config`` of running, or ``get``) with ``filter``."""
        tops = [f for f in filter if isinstance(f.tag, str)]
        tags = [str(f.tag) for f in tops]
        out = empty_data()
        with self._lock:
            paths = [(filter_prefix(f) if tags.count(str(f.tag)) == 1 else (str(f.tag),)) for f in tops]
            missing = sorted({p for p in paths if (op, p) not in self._data})
            if missing:
                self._fetch(op, missing, session)
            for f, path in zip(tops, paths, strict=True):
                for part in self._data[(op, path)].select([f]):
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

"""The files a simulated device keeps its datastores in (``STATE/devices/NAME/``).

``startup.xml`` holds a whole tree, rewritten (to a temporary file, then renamed) after each change.
Running and the candidate are each a whole tree (``running.xml``, ``candidate.xml``) plus a log of the
edit-configs applied since (``running.log``, ``candidate.log``: one appended record per edit,
``LENGTH DEFAULT-OPERATION ERROR-OPTION`` then the ``<config>``), so an edit or a commit costs its own
size on disk, not the device's. Saving a tree whole drops its log; running's is saved whole again once
its log outgrows the tree (so the log's cost stays proportional to what it records). The candidate, while
it differs from running, is ``candidate.xml`` when it was replaced whole (copy-config), else running,
plus ``candidate.log``; the engine saves it whole (none at all when it equals running) on every change of
running other than appending the committed edits. A torn last record (the process died while writing it)
is ignored.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from lxml import etree

from .xml import Element, parse

__all__ = ["CandidateEdit", "StoreFiles"]

log = logging.getLogger(__name__)

CandidateEdit = tuple[Element, str, str]  # (<config>, default-operation, error-option)


class StoreFiles:
    """Datastore files of one device under ``state_dir`` (None: nothing is kept)."""

    def __init__(self, name: str, state_dir: Path | None) -> None:
        self.name = name
        self.state_dir = state_dir
        self._sizes: dict[str, tuple[int, int]] = {}  # per store: bytes of the last whole save, of the log
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)

    def _file(self, store: str) -> Path | None:
        return self.state_dir / f"{store}.xml" if self.state_dir is not None else None

    def _log(self, store: str) -> Path | None:
        return self.state_dir / f"{store}.log" if self.state_dir is not None else None

    def load(self, store: str) -> Element | None:
        """The stored tree of ``store``, None when there is none or it cannot be read."""
        path = self._file(store)
        if path is None or not path.is_file():
            return None
        try:
            return parse(path.read_bytes())
        except ValueError as exc:
            log.warning("%s: ignoring unreadable %s: %s", self.name, path, exc)
            return None

    def save(self, store: str, tree: Element | None) -> None:
        """Write ``store``'s whole tree (None: remove its file), dropping its log of edits."""
        path = self._file(store)
        if path is None:
            return
        log_path = self._log(store)
        assert log_path is not None
        log_path.unlink(missing_ok=True)
        if tree is None:
            path.unlink(missing_ok=True)
            return
        data = etree.tostring(tree, xml_declaration=True, encoding="utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f".{store}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        self._sizes[store] = (len(data), 0)

    def append_edits(self, store: str, edits: list[CandidateEdit], tree: Element) -> None:
        """Record edit-configs applied to ``store`` (``tree`` is the result: saved whole instead when
        the log would outgrow the last whole save)."""
        path = self._log(store)
        if path is None or not edits:
            return
        body = b"".join(_record(*edit) for edit in edits)
        whole, logged = self._sizes.get(store, (0, 0))
        if store != "candidate" and logged + len(body) > max(whole, 1 << 16):
            self.save(store, tree)
            return
        with path.open("ab") as fh:
            fh.write(body)
        self._sizes[store] = (whole, logged + len(body))

    def append_edit(self, config: Element, default_operation: str, error_option: str) -> None:
        """Record one edit-config applied to the candidate (after ``candidate.xml``, or running)."""
        path = self._log("candidate")
        if path is None:
            return
        with path.open("ab") as fh:
            fh.write(_record(config, default_operation, error_option))

    def candidate_edits(self) -> list[CandidateEdit]:
        """The edits recorded since the candidate's base (whole records only)."""
        return self.edits("candidate")

    def edits(self, store: str) -> list[CandidateEdit]:
        """The edits recorded in ``store``'s log since its whole tree (whole records only)."""
        path = self._log(store)
        if path is None or not path.is_file():
            return []
        data = path.read_bytes()
        out: list[CandidateEdit] = []
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            header = data[pos:end].decode(errors="replace").split() if end >= 0 else []
            if len(header) != 3 or not header[0].isdigit() or end + 1 + int(header[0]) > len(data):
                log.warning("%s: ignoring a torn record at byte %d of %s", self.name, pos, path)
                break
            start = end + 1
            stop = start + int(header[0])
            try:
                out.append((parse(data[start:stop]), header[1], header[2]))
            except ValueError as exc:
                log.warning("%s: ignoring an unreadable record at byte %d of %s: %s", self.name, pos, path,
                            exc)
                break
            pos = stop + 1
        return out


def _record(config: Element, default_operation: str, error_option: str) -> bytes:
    body = etree.tostring(config, encoding="utf-8")
    return f"{len(body)} {default_operation} {error_option}\n".encode() + body + b"\n"

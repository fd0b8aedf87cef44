"""The files a simulated device keeps its datastores in (``STATE/devices/NAME/``).

``running.xml`` and ``startup.xml`` hold whole trees, rewritten (to a temporary file, then renamed) after
each change. The candidate, while it differs from running, is kept as ``candidate.xml`` (a whole tree,
written when the candidate is replaced: copy-config) plus ``candidate.log``: the edit-configs applied
since, appended one record each (``LENGTH DEFAULT-OPERATION ERROR-OPTION`` then the ``<config>``), so an
edit costs its own size on disk, not the device's. The log's base is ``candidate.xml`` when there is one,
else ``running.xml``: saving the candidate whole drops the log, and the engine does so on every change of
running (a commit, discard or rollback leaves no candidate file at all). A torn last record (the process
died while writing it) is ignored.
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
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)

    def _file(self, store: str) -> Path | None:
        return self.state_dir / f"{store}.xml" if self.state_dir is not None else None

    def _log(self) -> Path | None:
        return self.state_dir / "candidate.log" if self.state_dir is not None else None

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
        """Write ``store``'s whole tree (None: remove its file); saving the candidate drops its log."""
        path = self._file(store)
        if path is None:
            return
        if store == "candidate":
            log_path = self._log()
            assert log_path is not None
            log_path.unlink(missing_ok=True)
        if tree is None:
            path.unlink(missing_ok=True)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{store}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(etree.tostring(tree, xml_declaration=True, encoding="utf-8"))
        os.replace(tmp, path)

    def append_edit(self, config: Element, default_operation: str, error_option: str) -> None:
        """Record one edit-config applied to the candidate (after ``candidate.xml``, or running)."""
        path = self._log()
        if path is None:
            return
        body = etree.tostring(config, encoding="utf-8")
        with path.open("ab") as fh:
            fh.write(f"{len(body)} {default_operation} {error_option}\n".encode() + body + b"\n")

    def candidate_edits(self) -> list[CandidateEdit]:
        """The edits recorded since the candidate's base (whole records only)."""
        path = self._log()
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

"""The datastores of one simulated device and every datastore operation, with no networking.

Running, candidate and startup are lxml trees rooted at ``<data>`` in the base namespace. Running and
startup persist to ``state_dir`` (and the candidate while it differs from running) after each change:
running and the candidate as a whole tree plus the edits since (see :mod:`netconf_sim.storefiles`).
Edits go to the candidate in place under an undo journal; commit validates the candidate (skipped when
nothing changed since the last successful validation) and makes it running. Each tree keeps its keyed
list entries (:class:`~netconf_sim.entryindex.EntryIndex`) across the edits made to it, through commit's
swap (the index goes with its tree); a tree made afresh (copy, discard, restore) starts a new one.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from .editconfig import apply_edit
from .entryindex import EntryIndex
from .listindex import ListIndex
from .rpcerror import SimRpcError
from .schema import Schema
from .storefiles import StoreFiles
from .subtree import apply_subtree_filter
from .validate import validate_changes, validate_datastore
from .xml import NC_NS, YANGLIB_NS, Element, data_root, qname
from .xpathfilter import apply_xpath_filter

__all__ = ["DATASTORES", "DeviceEngine"]

log = logging.getLogger(__name__)

DATASTORES = ("running", "candidate", "startup")
_DATA = qname(NC_NS, "data")


class DeviceEngine:
    """Datastores of one device; all methods synchronous, raising SimRpcError."""

    def __init__(self, name: str, schema: Schema, state_dir: Path | None,
                 operational: Callable[..., None] | None = None,
                 initial_config: Element | None = None) -> None:
        self.name = name
        self.schema = schema
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.operational = operational
        # a hook taking (data, filter) renders only what a subtree filter may select, in subtrees of its
        # own (running has no node of them), so a subtree-filtered get needs no copy of running
        self._operational_filters = operational is not None and _takes_filter(operational)
        # per datastore: the tree a filter index was built on and the index (dropped on every change)
        self._indexes: dict[str, tuple[Element, ListIndex]] = {}
        # per tree (running's, the candidate's): its keyed list entries, kept up to date by every edit
        self._entry_indexes: list[tuple[Element, EntryIndex]] = []
        self.capabilities: list[str] = schema.module_capabilities()
        self._callbacks: list[Callable[[Element, list[str] | None], None]] = []
        self._files = StoreFiles(name, self.state_dir)
        initial = _as_data(initial_config) if initial_config is not None else data_root()
        loaded = self._load("running")
        if loaded is not None and not self._replay_on(loaded, self._files.edits("running")):
            loaded = self._load("running")  # the commits logged after it cannot be replayed: the last whole
        self._running = loaded if loaded is not None else initial
        self._startup = self._load("startup")
        if self._startup is None:
            self._startup = copy.deepcopy(self._running)
        stored_candidate = self._load("candidate")
        edits = self._files.candidate_edits()
        if edits:  # the edits since the candidate was saved whole (or since running was, without one)
            base = stored_candidate if stored_candidate is not None else copy.deepcopy(self._running)
            if self._replay_on(base, edits):
                stored_candidate = base
        # edits a swapped-in candidate still owes (see commit): applied on its first use
        self._owed: list[tuple[Element, str, str]] | None = None
        self._copy_owed = False  # the candidate is to be a copy of running, made on first use
        self._cand: Element
        self._candidate = stored_candidate if stored_candidate is not None else copy.deepcopy(self._running)
        self._dirty = stored_candidate is not None
        self._candidate_valid = not self._dirty
        self._pending_paths: list[str] = ["/"] if self._dirty else []
        # since the candidate was last known valid: nodes added and parents changed (None: walk it all)
        self._new_nodes: list[Element] | None = [] if not self._dirty else None
        self._parents: list[Element] = []
        # edits since running was last synced, replayed on running at commit instead of a deep copy
        self._replay: list[tuple[Element, str, str]] | None = [] if not self._dirty else None
        self._persist("running", self._running)
        self._persist("startup", self._startup)

    # -- persistence ----------------------------------------------------------------------------
    def _load(self, store: str) -> Element | None:
        tree = self._files.load(store)
        return _as_data(tree) if tree is not None else None

    def _persist(self, store: str, tree: Element | None) -> None:
        self._files.save(store, tree)

    def _persist_candidate(self) -> None:
        """Save the candidate whole (none while it equals running), dropping its log of edits."""
        self._persist("candidate", self._candidate if self._dirty else None)

    # -- helpers --------------------------------------------------------------------------------
    def _store(self, source: str) -> Element:
        if source == "running":
            return self._running
        if source == "candidate":
            return self._candidate
        if source == "startup":
            assert self._startup is not None
            return self._startup
        raise SimRpcError.invalid_parameter(f"unknown datastore {source!r}")

    def _index(self, store: str) -> ListIndex:
        """The subtree-filter index of a datastore's current tree (a new one after any change)."""
        tree = self._store(store)
        cached = self._indexes.get(store)
        if cached is not None and cached[0] is tree:
            return cached[1]
        index = ListIndex()
        self._indexes[store] = (tree, index)
        return index

    def _entries_of(self, tree: Element) -> EntryIndex:
        """The keyed list entries of ``tree`` (running's or the candidate's), built lazily per list."""
        for held, index in self._entry_indexes:
            if held is tree:
                return index
        index = EntryIndex()
        live = (getattr(self, "_running", None), getattr(self, "_cand", None))  # drop those of old trees
        self._entry_indexes = [(t, i) for t, i in self._entry_indexes
                               if t is live[0] or t is live[1]] + [(tree, index)]
        return index

    def list_entry(self, store: str, path: tuple[str, ...], key: dict[str, str]) -> Element | None:
        """The entry of the list at ``path`` (Clark tags from the top container down to the list; each
        container along it the first of its name) whose key leaves (local name -> value) are ``key``,
        in ``store``'s tree (the live element: read-only by convention); in time independent of the
        list's size."""
        tree = self._store(store)
        node = self.schema.root
        parent: Element | None = tree
        for tag in path[:-1]:
            node = node.children[tag]
            parent = parent.find(tag) if parent is not None else None
        if parent is None:
            return None
        lst = node.children[path[-1]]
        wanted = tuple(key.get(k.rpartition("}")[2], "").strip() for k in lst.keys)
        return self._entries_of(tree).find(parent, lst.tag, lst.keys, wanted)

    @property
    def _candidate(self) -> Element:
        """The candidate tree; a commit's swap leaves it owing the committed edits, applied here (or,
        after :meth:`commit_keeping_previous`, owing a copy of running)."""
        if self._copy_owed:
            self._copy_owed = False
            self._changed("candidate")
            self._cand = copy.deepcopy(self._running)
        if self._owed is not None:
            edits, self._owed = self._owed, None
            self._changed("candidate")
            if not self._replay_on(self._cand, edits):
                self._cand = copy.deepcopy(self._running)
        return self._cand

    @_candidate.setter
    def _candidate(self, tree: Element) -> None:
        self._owed = None
        self._copy_owed = False
        self._cand = tree

    def _changed(self, store: str) -> None:
        """A datastore's tree is about to change in place: its filter index is stale."""
        self._indexes.pop(store, None)

    def _filtered(self, data: Element, filter: Element | None, *, owned: bool,
                  index: ListIndex | None = None) -> Element:
        if filter is None:
            return data if owned else copy.deepcopy(data)
        ftype = filter.get("type", "subtree")
        if ftype == "subtree":
            return apply_subtree_filter(data, filter, self.schema, index)
        if ftype == "xpath":
            select = filter.get("select")
            if select is None:
                raise SimRpcError("protocol", "missing-attribute", message="xpath filter without select",
                                  info={"bad-attribute": "select", "bad-element": "filter"})
            return apply_xpath_filter(data, select, _nsmap_of(filter), self.schema)
        raise SimRpcError.bad_attribute("type", "filter", message=f"unknown filter type {ftype!r}")

    # -- reading --------------------------------------------------------------------------------
    def get_config(self, source: str, filter: Element | None = None) -> Element:
        """A ``<data>`` copy of ``source``, filtered when ``filter`` (a ``<filter>`` element) is given."""
        index = self._index(source) if filter is not None else None
        return self._filtered(self._store(source), filter, owned=False, index=index)

    def get(self, filter: Element | None = None) -> Element:
        """Running plus the operational hook's config-false data and the YANG library, filtered."""
        if (filter is not None and filter.get("type", "subtree") == "subtree"
                and (self.operational is None or self._operational_filters)):
            return self._get_subtree(filter)
        data = copy.deepcopy(self._running)
        if self.operational is not None:
            self.operational(data)
        if filter is None or _mentions(filter, YANGLIB_NS):
            data.append(self.schema.yang_library())
            data.append(self.schema.modules_state())
        return self._filtered(data, filter, owned=True)

    def _get_subtree(self, filter: Element) -> Element:
        """A subtree-filtered ``<get>`` in time proportional to the answer: filter running (indexed, no
        copy), add the operational data the filter may select (all of it for a hook that cannot narrow)
        and the YANG library if asked, then filter that small tree again. The second pass gives what
        filtering the whole tree would: the first kept every running node the filter's matches rely on,
        and a filter-aware hook puts its config-false data in subtrees of its own (creating their
        containers when missing); a hook taking only the tree gets the whole of running instead."""
        data = apply_subtree_filter(self._running, filter, self.schema, self._index("running"))
        if self.operational is not None:
            self.operational(data, filter)
        if _mentions(filter, YANGLIB_NS):
            data.append(self.schema.yang_library())
            data.append(self.schema.modules_state())
        return apply_subtree_filter(data, filter, self.schema)

    # -- writing --------------------------------------------------------------------------------
    def edit_config(self, target: str, config: Element, *, default_operation: str = "merge",
                    test_option: str = "test-then-set", error_option: str = "stop-on-error") -> None:
        """Apply an edit to the candidate; running and startup are not writable directly."""
        if target != "candidate":
            self._store(target)
            raise SimRpcError.operation_not_supported(f"{target} is not writable; edit the candidate")
        if test_option not in ("test-then-set", "set", "test-only"):
            raise SimRpcError.invalid_parameter(f"bad test-option {test_option!r}")
        self._changed("candidate")
        tree = self._candidate
        journal = apply_edit(tree, config, self.schema, default_operation=default_operation,
                             error_option=error_option, index=self._entries_of(tree))
        if test_option != "set" and journal:
            errors = validate_changes(self.schema, self._candidate, journal.new_nodes, journal.parents,
                                      syntax_only=True)
            if errors:
                journal.rollback()
                raise SimRpcError.combine(errors)
        if test_option == "test-only":
            journal.rollback()
            self._raise_collected(journal.errors)
            return
        if error_option == "rollback-on-error" and journal.errors:  # pragma: no cover - apply_edit raised
            journal.rollback()
        if journal:
            self._dirty = True
            self._candidate_valid = False
            self._pending_paths.extend(journal.changed)
            if self._new_nodes is not None:
                self._new_nodes.extend(journal.new_nodes)
                self._parents.extend(journal.parents)
            if self._replay is not None:
                self._replay.append((config, default_operation, error_option))
            self._files.append_edit(config, default_operation, error_option)  # the edit, not the tree
        self._raise_collected(journal.errors)

    @staticmethod
    def _raise_collected(errors: list[SimRpcError]) -> None:
        if errors:
            raise SimRpcError.combine(errors)

    def copy_config(self, target: str, source: str | Element) -> None:
        """Copy a datastore or an inline ``<config>`` to candidate, startup (or running: not allowed)."""
        if target == "running":
            raise SimRpcError.operation_not_supported("running is not writable; use the candidate and commit")
        self._store(target)
        if isinstance(source, str):
            if source == target:
                raise SimRpcError.invalid_parameter("source and target are the same datastore")
            tree = copy.deepcopy(self._store(source))
        else:
            tree = _as_data(copy.deepcopy(source))
            errors = validate_datastore(self.schema, tree, syntax_only=True)
            if errors:
                raise SimRpcError.combine(errors)
        if target == "candidate":
            self._candidate = tree
            self._dirty = True
            self._candidate_valid = False
            self._new_nodes = None
            self._replay = None
            self._pending_paths.append("/")
            self._persist_candidate()
        else:
            self._startup = tree
            self._persist("startup", tree)

    def delete_config(self, target: str) -> None:
        """Only startup can be deleted (emptied)."""
        if target != "startup":
            self._store(target)
            raise SimRpcError.operation_not_supported(f"delete-config of {target} is not allowed")
        self._startup = data_root()
        self._persist("startup", self._startup)

    def validate(self, source: str | Element) -> None:
        """Full validation of a datastore or an inline ``<config>``; raises every error found."""
        if isinstance(source, str):
            if source == "candidate" and self._candidate_valid:
                return
            tree = self._store(source)
        else:
            tree = _as_data(copy.deepcopy(source))
        if tree is self._candidate and self._new_nodes is not None:
            errors = validate_changes(self.schema, tree, self._new_nodes, self._parents)
        else:
            errors = validate_datastore(self.schema, tree)
        if errors:
            raise SimRpcError.combine(errors)
        if tree is self._candidate:
            self._candidate_valid = True
            self._new_nodes = []
            self._parents = []

    def commit(self) -> list[str]:
        """Validate the candidate and make it running; returns the paths changed since the last commit."""
        return self._commit(keep_previous=False)[0]

    def commit_keeping_previous(self) -> tuple[list[str], Element]:
        """:meth:`commit`, also returning the running tree from before it, which no one changes from then
        on: a confirmed commit's rollback snapshot for no copy (the new candidate is copied from running
        on its first use instead, off the commit's path). Nothing to commit: a copy of running."""
        changed, previous = self._commit(keep_previous=True)
        return changed, previous if previous is not None else copy.deepcopy(self._running)

    def _commit(self, *, keep_previous: bool) -> tuple[list[str], Element | None]:
        if not self._dirty:
            return [], None
        self.validate("candidate")
        committed = self._candidate
        previous = self._running
        if keep_previous:
            # The old running is the caller's now; the candidate is copied from the new running when
            # next used (as after a commit without the swap, but lazily).
            self._running = committed
            self._copy_owed = True
            self._owed = None
        elif self._replay is not None:
            # Swap: the validated candidate becomes running as it is (no copy, no replay on the commit's
            # path); the old running becomes the candidate and owes it the same edits, replayed on its
            # first use (the next edit or read of the candidate, usually the next migration's).
            old_running, owed = self._running, self._replay
            self._running = committed
            self._candidate = old_running
            self._owed = owed
        else:
            self._running = committed
            self._candidate = copy.deepcopy(self._running)
        self._changed("running")
        committed_edits, self._replay = self._replay, []
        changed = list(dict.fromkeys(self._pending_paths))
        self._pending_paths = []
        self._dirty = False
        if committed_edits is not None:  # running on disk is the old one plus these: append them
            self._files.append_edits("running", committed_edits, self._running)
        else:
            self._persist("running", self._running)
        self._persist_candidate()
        self._notify(changed)
        return changed, previous if keep_previous else None

    def _replay_on(self, tree: Element, edits: list[tuple[Element, str, str]]) -> bool:
        """Apply ``edits`` (each once applied to the candidate) to ``tree``; False if that fails."""
        try:
            for config, default_operation, error_option in edits:
                apply_edit(tree, config, self.schema, default_operation=default_operation,
                           error_option=error_option, index=self._entries_of(tree))
        except SimRpcError:
            log.warning("%s: replaying committed edits failed; copying running", self.name)
            return False
        return True

    def discard_changes(self) -> None:
        """candidate := running."""
        if self._dirty:
            self._candidate = copy.deepcopy(self._running)
            self._reset_tracking()
            self._persist_candidate()

    def _reset_tracking(self) -> None:
        self._dirty = False
        self._candidate_valid = True
        self._pending_paths = []
        self._new_nodes = []
        self._parents = []
        self._replay = []

    def candidate_dirty(self) -> bool:
        return self._dirty

    def snapshot_running(self) -> Element:
        """A deep copy of running, for a confirmed-commit rollback."""
        return copy.deepcopy(self._running)

    def restore_running(self, snap: Element) -> None:
        """running := snap and candidate := snap (confirmed-commit rollback or cancel)."""
        self._running = copy.deepcopy(snap)
        self._candidate = copy.deepcopy(snap)
        self._reset_tracking()
        self._persist("running", self._running)
        self._persist_candidate()
        self._notify()

    def running_view(self) -> Element:
        """The live running tree (read-only by convention): no copy, for fast internal readers."""
        return self._running

    # -- schema and callbacks ---------------------------------------------------------------------
    def get_schema(self, identifier: str, version: str | None = None, fmt: str = "yang") -> str:
        """Module source text for RFC 6022 get-schema."""
        if fmt not in ("yang", "ncm:yang"):
            raise SimRpcError.invalid_value(f"format {fmt!r} not supported", error_type="rpc")
        text = self.schema.module_source(identifier, version or None)
        if text is None:
            wanted = f"{identifier} {version or ''}".strip()
            raise SimRpcError("rpc", "invalid-value", message=f"no schema {wanted}")
        return text

    def on_commit(self, cb: Callable[[Element, list[str] | None], None]) -> None:
        """Call ``cb(running, changed)`` after every commit (``changed``: the paths the commit changed)
        and restore (``changed`` None: anything may have changed)."""
        self._callbacks.append(cb)

    def _notify(self, changed: list[str] | None = None) -> None:
        for cb in self._callbacks:
            cb(self._running, changed)


def _as_data(tree: Element) -> Element:
    """Re-root ``<config>`` (or any wrapper) children under a fresh ``<data>``; ``<data>`` is kept."""
    if tree.tag == _DATA:
        return tree
    out = data_root()
    for child in list(tree):
        if isinstance(child.tag, str):
            out.append(child)
    return out


def _mentions(filter: Element, namespace: str) -> bool:
    """Whether a filter may select data in ``namespace`` (unqualified subtree elements match any)."""
    if filter.get("type") == "xpath":
        return namespace in filter.nsmap.values() or namespace in (filter.get("select") or "")
    for el in filter.iterdescendants():
        if isinstance(el.tag, str) and etree.QName(el).namespace in (namespace, None, NC_NS):
            return True
    return False


def _takes_filter(hook: Callable[..., None]) -> bool:
    """Whether an operational hook accepts the request's filter as a second argument."""
    try:
        params = list(inspect.signature(hook).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _nsmap_of(filter: Element) -> dict[str, str]:
    return {k: v for k, v in filter.nsmap.items() if k}

"""Named quirk profiles: what a NETCONF server needs netmig to do differently, as data.

A device's topology entry picks a profile by name (``quirks: {profile: yuma123-netconfd}``) and may
override single fields next to it; code can use :func:`quirk_profile`. The transaction reads the
profile's fields and nothing else, so a new server with known oddities needs a new entry here, not new
``if`` statements (docs/interop.md lists the measured behaviour behind each field).

Also here: the bounded wait on ``in-use`` / ``lock-denied`` a device answers while another session's
lock or confirmed commit holds it (:class:`BusyRetry`: one call retried, or a whole multi-device attempt
given back and started over), and :func:`drop_duplicate_entries`, which removes
the identical list entries a subtree filter with several selections for one list can produce.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from lxml import etree

from netmig.errors import RpcError
from netmig.settings import QuirkProfile
from netmig.xmlkit import NC_NS, Element, qualify

__all__ = [
    "BUSY_TAGS",
    "PROFILES",
    "BusyRetry",
    "drop_duplicate_entries",
    "quirk_profile",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

PROFILES: Mapping[str, QuirkProfile] = {
    # RFC 6241 as written: validate the candidate, timers run regardless of traffic, commits not blocked.
    "rfc6241": QuirkProfile(),
    # yuma123 netconfd 2.13 (Debian 12), measured by tests/interop (FACTS.md quirks 1-3):
    # <validate> of the candidate then <commit> loses the edit (validate the edit inline instead);
    # confirmed-commit timers fire only after 1 s with no traffic on any session; a pending confirmed
    # commit makes other sessions' <commit> fail with in-use.
    "yuma123-netconfd": QuirkProfile(validate="inline", confirmed_timer_needs_quiet_s=1,
                                     commit_blocked_while_confirm_pending=True),
}


def quirk_profile(name: str, **overrides: object) -> QuirkProfile:
    """The named profile, with single fields overridden (``validate="skip"``).

    Raises:
        KeyError: no profile has that name (the message lists the known ones).
    """
    try:
        base = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown quirk profile {name!r} (known: {', '.join(sorted(PROFILES))})") from None
    if not overrides:
        return base
    fields: dict[str, object] = {
        "validate": base.validate,
        "confirmed_timer_needs_quiet_s": base.confirmed_timer_needs_quiet_s,
        "commit_blocked_while_confirm_pending": base.commit_blocked_while_confirm_pending,
    }
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise KeyError(f"unknown quirk field(s) {unknown}")
    fields.update(overrides)
    return QuirkProfile(**fields)  # type: ignore[arg-type]


# rpc-error tags a device answers while it is busy with someone else's lock or pending confirmed commit.
BUSY_TAGS = frozenset({"in-use", "lock-denied", "resource-denied"})


@dataclass(frozen=True, slots=True)
class BusyRetry:
    """Wait, bounded, while a device answers ``in-use``/``lock-denied`` because another session holds it.

    Only for devices whose profile says ``commit_blocked_while_confirm_pending``: there another
    migration's pending confirmed commit blocks ours until it is confirmed or rolled back, which takes
    seconds, so failing at once would fail migrations that merely overlap. Between attempts we stay
    silent for longer than the device's ``confirmed_timer_needs_quiet_s``: polling it faster would keep
    its confirm timer from ever firing (FACTS.md quirk 2) and so prolong the very block we wait for.
    ``max_wait_s`` bounds the whole wait; then the last error is raised.
    """

    max_wait_s: float = 30.0
    min_interval_s: float = 0.5

    def interval_s(self, quirks: QuirkProfile) -> float:
        quiet = quirks.confirmed_timer_needs_quiet_s
        return max(self.min_interval_s, quiet + 0.5) if quiet else self.min_interval_s

    def run(self, quirks: QuirkProfile, action: Callable[[], T], *, what: str = "",
            abort: Callable[[], bool] | None = None, always: bool = False) -> T:
        """``action()``, retried on a busy rpc-error while the profile says the device blocks (or
        ``always``: e.g. a candidate lock, which another session's lock blocks on every server)."""
        if not (always or quirks.commit_blocked_while_confirm_pending):
            return action()
        deadline = time.monotonic() + self.max_wait_s
        interval = self.interval_s(quirks)
        attempt = 0
        while True:
            attempt += 1
            try:
                return action()
            except RpcError as exc:
                tag = getattr(exc, "tag", None)
                left = deadline - time.monotonic()
                if tag not in BUSY_TAGS or left < interval or (abort is not None and abort()):
                    if tag in BUSY_TAGS and attempt > 1:
                        log.warning("%s: still busy after %d attempts in %.1f s", what, attempt,
                                    self.max_wait_s - left)
                    raise
                log.info("%s: device busy (%s), retrying in %.1f s", what, tag, interval)
                time.sleep(interval)

    def again(self, attempt: Callable[[], T], *, busy: Callable[[Exception], bool], what: str = "",
              first_pause_s: float = 0.05, max_pause_s: float = 1.0) -> T:
        """``attempt()`` as a whole, repeated while it failed only because another coordinator held a
        device (``busy(exc)``), after a jittered pause that doubles each time, for ``max_wait_s`` in all;
        then the last error is raised.

        For work that takes several devices: ``attempt`` must give back everything it took (locks,
        pending confirmed commits) before it raises, so two coordinators that each hold part of the
        other's devices never wait on each other; the jitter lets one of them through first.
        """
        deadline = time.monotonic() + self.max_wait_s
        pause = first_pause_s
        attempts = 0
        while True:
            attempts += 1
            try:
                return attempt()
            except Exception as exc:
                left = deadline - time.monotonic()
                if not busy(exc) or left <= 0:
                    if attempts > 1:
                        log.warning("%s: gave up after %d attempts in %.1f s", what, attempts,
                                    self.max_wait_s - left)
                    raise
                nap = min(left, pause * random.uniform(0.5, 1.0))
                log.info("%s: a device is busy (%s); starting over in %.2f s", what, exc, nap)
                time.sleep(nap)
                pause = min(pause * 2, max_pause_s)


_FILTER = qualify(NC_NS, "filter")


def selections_may_repeat(operation: Element) -> bool:
    """Whether a reply to ``operation`` can hold :func:`drop_duplicate_entries`' copies: its subtree filter
    has two sibling selections with one name (or it is an XPath filter, which cannot be told apart).
    No filter, or one selection per node: no copies, and the walk over the reply is skipped."""
    for filt in operation:
        if filt.tag != _FILTER:
            continue
        if filt.get("type") == "xpath":
            return True
        for el in filt.iter():
            tags = [kid.tag for kid in el]
            if len(tags) != len(set(tags)):
                return True
    return False


def drop_duplicate_entries(data: Element) -> Element:
    """Remove sibling elements that are exact copies of an earlier sibling (in place; returns ``data``).

    yuma123 netconfd answers a subtree filter holding two selections for one list (e.g. ``<static>`` by
    ``owner`` and ``<static>`` by ``inside``) with the matching entry once per selection; RFC 6241
    filtering yields each node once. Identical copies carry no information, so dropping them is safe for
    every server; entries that differ are left alone (the model layer reports them as duplicates).
    """
    stack = [data]
    while stack:
        el = stack.pop()
        # copies share their tag and first child (a list entry's first key); only siblings that share
        # both are compared canonically
        firsts: dict[tuple[object, object, object], list[tuple[Element, bytes | None]]] = {}
        for kid in list(el):
            if not isinstance(kid.tag, str) or not len(kid):
                continue
            head = kid[0]
            group = firsts.setdefault((kid.tag, head.tag, head.text), [])
            if group:
                key = etree.tostring(kid, method="c14n")
                for i, (other, other_key) in enumerate(group):
                    if other_key is None:
                        other_key = etree.tostring(other, method="c14n")
                        group[i] = (other, other_key)
                    if other_key == key:
                        el.remove(kid)
                        break
                else:
                    group.append((kid, key))
                    stack.append(kid)
                continue
            group.append((kid, None))
            stack.append(kid)
    return data

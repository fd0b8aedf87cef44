"""netmig.quirks.drop_duplicate_entries: exact copies of a sibling go, anything that differs stays."""

from __future__ import annotations

from lxml import etree

from netmig.quirks import drop_duplicate_entries
from netmig.xmlkit import parse

NS = "urn:example"


def _data(body: str) -> etree._Element:
    return parse(f'<data xmlns="{NS}">{body}</data>'.encode())


def _names(data: etree._Element) -> list[str]:
    return [etree.tostring(e, method="c14n").decode() for e in data.iter(f"{{{NS}}}entry")]


def test_exact_copies_are_dropped_at_every_level() -> None:
    entry = "<entry><name>a</name><sub><x>1</x></sub></entry>"
    data = drop_duplicate_entries(_data(f"<list>{entry}{entry}<entry><name>b</name></entry></list>"
                                        f"<list>{entry}</list>"))
    lists = data.findall(f"{{{NS}}}list")
    assert [len(lst) for lst in lists] == [2, 1]


def test_entries_that_differ_only_below_their_leaves_are_kept() -> None:
    body = ("<entry><name>a</name><sub><x>1</x></sub></entry>"
            "<entry><name>a</name><sub><x>2</x></sub></entry>"
            "<entry><name>a</name><sub><x>1</x></sub></entry>")
    data = drop_duplicate_entries(_data(f"<list>{body}</list>"))
    assert len(_names(data)) == 2
    assert [e.findtext(f"{{{NS}}}sub/{{{NS}}}x") for e in data.iter(f"{{{NS}}}entry")] == ["1", "2"]


def test_entries_with_different_leaves_are_kept_and_order_is_preserved() -> None:
    body = "".join(f"<entry><name>{n}</name><v>{n}</v></entry>" for n in "cab")
    data = drop_duplicate_entries(_data(f"<list>{body}</list>"))
    assert [e.findtext(f"{{{NS}}}name") for e in data.iter(f"{{{NS}}}entry")] == ["c", "a", "b"]

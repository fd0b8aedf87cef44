"""The group commit's pure XML checks: what running still holds of a group's undo (recovery's check that
a compensated device holds none of the group)."""

from __future__ import annotations

from netmig.batch_merge import missing_from, still_present
from netmig.xmlkit import parse

NS = 'xmlns="urn:x" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"'


def test_still_present_finds_each_removed_entry_running_keeps() -> None:
    running = parse(f'<data {NS}><top><e><k>1</k><v>a</v></e><e><k>2</k><v>b</v></e>'
                    f'<port><name>p1</name><vlan>7</vlan></port></top></data>'.encode())
    undo = parse(f'<nc:config {NS}><top><e nc:operation="remove"><k>1</k></e>'
                 f'<e nc:operation="remove"><k>3</k></e>'
                 f'<port><name>p1</name><vlan nc:operation="remove"/></port></top></nc:config>'.encode())
    problems = still_present(running, undo)
    assert len(problems) == 2, problems
    assert any("/top/e[k=1]" in p for p in problems) and any("/top/port/vlan" in p for p in problems)
    gone = parse(f'<data {NS}><top><e><k>2</k><v>b</v></e><port><name>p1</name></port></top></data>'.encode())
    assert still_present(gone, undo) == []
    assert still_present(parse(f"<data {NS}/>".encode()), undo) == []  # no container: nothing in it
    keyless = parse(f'<nc:config {NS}><top><port><vlan nc:operation="remove"/></port></top>'
                    f'</nc:config>'.encode())
    assert still_present(running, keyless) == ["/top/port/vlan[]: still in running"]


def test_missing_from_is_importable_from_the_batch_module_as_before() -> None:
    from netmig.batch import missing_from as from_batch

    assert from_batch is missing_from

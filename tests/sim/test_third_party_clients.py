"""Third-party NETCONF clients against netconf-sim: ncclient, scrapli-netconf, yangcli, netconf-console2.

Host key checking is ON wherever the client can do it: ncclient and netconf-console2 read the fabric's
``ssh_config`` (which names its known_hosts), scrapli-netconf's system transport runs OpenSSH with
``auth_strict_key`` and the fabric's known_hosts. yangcli (yuma123, libssh2) has no known_hosts option and
does not check host keys at all, so its test runs without host key checking by necessity.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient.operations import RPCError
from ncclient.transport.errors import TransportError
from netconf_sim.profiles import ACME_NS, IF_NS, NMD_NS

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
ACL_NS = "urn:ietf:params:xml:ns:yang:ietf-access-control-list"
YANGLIB_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
NS = {"if": IF_NS, "nmd": NMD_NS, "acme": ACME_NS, "acl": ACL_NS, "nc": NC, "yl": YANGLIB_NS}
IFACE_FILTER = f'<interfaces xmlns="{IF_NS}"><interface><name>eth3</name></interface></interfaces>'


def _xml(reply: Any) -> etree._Element:
    return etree.fromstring(reply.xml.encode())


def _vals(root: etree._Element, path: str) -> list[str]:
    return [str(v) for v in root.xpath(path, namespaces=NS)]


def _config(*children: str) -> str:
    return f'<config xmlns="{NC}" xmlns:nc="{NC}">{"".join(children)}</config>'


def _iface(body: str, op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    return f'<interfaces xmlns="{IF_NS}"><interface{attr}>{body}</interface></interfaces>'


def _running_ifaces(mgr: Any) -> list[str]:
    return _vals(_xml(mgr.get_config(source="running")), "//if:interface/if:name/text()")


# -- ncclient: reading ---------------------------------------------------------------------------------
def test_ncclient_get_and_get_config_with_filters(two_site_fabric: Any,
                                                  nc_connect: Callable[..., Any]) -> None:
    mgr = nc_connect(two_site_fabric, "a-leaf1")
    for source in ("running", "candidate", "startup"):
        sub = _xml(mgr.get_config(source=source, filter=("subtree", IFACE_FILTER)))
        assert _vals(sub, "//if:interface/if:name/text()") == ["eth3"], source
        assert _vals(sub, "//if:interface/nmd:access-vlan/text()") == ["110"]
        assert sub.xpath("//acl:acls", namespaces=NS) == []
        xp = _xml(mgr.get_config(source=source, filter=(
            "xpath", ({"nmd": NMD_NS, "if": IF_NS},
                      "/if:interfaces/if:interface[nmd:vm-id='vm-web-01']/nmd:qos"))))
        assert _vals(xp, "//nmd:qos/nmd:rate-bps/text()") == ["200000000"]
        assert _vals(xp, "//if:interface/if:name/text()") == ["eth3"]  # ancestors keep their keys
    got = _xml(mgr.get(filter=("subtree", f'<dynamic-info xmlns="{NMD_NS}"><learned><arp-entry/></learned>'
                                          "</dynamic-info>")))
    assert _vals(got, "//nmd:arp-entry/nmd:ip/text()") == ["10.1.10.11"]
    assert got.xpath("//nmd:mac-entry", namespaces=NS) == []
    got = _xml(mgr.get(filter=("xpath", ({"nmd": NMD_NS}, "/nmd:dynamic-info/nmd:learned/nmd:mac-entry"))))
    assert _vals(got, "//nmd:mac-entry/nmd:vlan/text()") == ["110"]


def test_ncclient_get_schema_and_yang_library(two_site_fabric: Any, nc_connect: Callable[..., Any]) -> None:
    mgr = nc_connect(two_site_fabric, "b-leaf1")
    text = mgr.get_schema("acme-fabric").data
    assert "module acme-fabric" in text and "container acme-fabric" in text
    with pytest.raises(RPCError) as info:
        mgr.get_schema("no-such-module")
    assert info.value.tag == "invalid-value"
    lib = _xml(mgr.get(filter=("subtree", f'<yang-library xmlns="{YANGLIB_NS}"/>')))
    assert "acme-fabric" in _vals(lib, "//yl:module-set/yl:module/yl:name/text()")
    state = _xml(mgr.get(filter=("subtree", f'<modules-state xmlns="{YANGLIB_NS}"/>')))
    assert "acme-fabric" in _vals(state, "//yl:modules-state/yl:module/yl:name/text()")


# -- ncclient: writing ---------------------------------------------------------------------------------
def test_ncclient_edit_config_operations(fresh_fabric: Callable[..., Any],
                                         nc_connect: Callable[..., Any]) -> None:
    mgr = nc_connect(fresh_fabric(), "a-leaf1")
    # merge
    mgr.edit_config(target="candidate", config=_config(_iface(
        f'<name>eth4</name><access-vlan xmlns="{NMD_NS}">140</access-vlan>')))
    # create (new entry) and create of an existing entry -> data-exists
    mgr.edit_config(target="candidate", config=_config(_iface(
        "<name>eth9</name><type xmlns:ianaift='urn:ietf:params:xml:ns:yang:iana-if-type'>"
        "ianaift:ethernetCsmacd</type>", op="create")))
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=_config(_iface(
            "<name>eth1</name><type xmlns:ianaift='urn:ietf:params:xml:ns:yang:iana-if-type'>"
            "ianaift:ethernetCsmacd</type>", op="create")))
    assert info.value.tag == "data-exists"
    # delete existing / delete missing -> data-missing / remove missing is fine
    mgr.edit_config(target="candidate", config=_config(_iface("<name>eth8</name>", op="delete")))
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=_config(_iface("<name>eth77</name>", op="delete")))
    assert info.value.tag == "data-missing"
    mgr.edit_config(target="candidate", config=_config(_iface("<name>eth77</name>", op="remove")))
    mgr.edit_config(target="candidate", config=_config(_iface("<name>eth7</name>", op="remove")))
    # replace: eth2 loses its description-less state and gets exactly what is given
    mgr.edit_config(target="candidate", config=_config(_iface(
        "<name>eth2</name><description>replaced</description>"
        "<type xmlns:ianaift='urn:ietf:params:xml:ns:yang:iana-if-type'>ianaift:ethernetCsmacd</type>",
        op="replace")))
    assert _running_ifaces(mgr) == [f"eth{i}" for i in range(1, 9)]  # nothing committed yet
    mgr.validate(source="candidate")
    mgr.commit()
    running = _xml(mgr.get_config(source="running"))
    names = _vals(running, "//if:interface/if:name/text()")
    assert names == ["eth1", "eth2", "eth3", "eth4", "eth5", "eth6", "eth9"]
    assert _vals(running, "//if:interface[if:name='eth4']/nmd:access-vlan/text()") == ["140"]
    assert _vals(running, "//if:interface[if:name='eth2']/if:description/text()") == ["replaced"]
    assert _vals(running, "//if:interface[if:name='eth2']/if:enabled/text()") == []


def test_ncclient_copy_delete_config_and_discard(fresh_fabric: Callable[..., Any],
                                                 nc_connect: Callable[..., Any]) -> None:
    mgr = nc_connect(fresh_fabric(), "b-leaf1")
    mgr.edit_config(target="candidate", config=_config(
        f'<acme-fabric xmlns="{ACME_NS}"><port><name>ethernet-1/5</name><vlan>55</vlan></port>'
        "</acme-fabric>"))
    mgr.discard_changes()
    cand = _xml(mgr.get_config(source="candidate"))
    assert _vals(cand, "//acme:port[acme:name='ethernet-1/5']/acme:vlan/text()") == []
    mgr.edit_config(target="candidate", config=_config(
        f'<acme-fabric xmlns="{ACME_NS}"><port><name>ethernet-1/5</name><vlan>55</vlan></port>'
        "</acme-fabric>"))
    mgr.commit()
    startup = _xml(mgr.get_config(source="startup"))
    assert _vals(startup, "//acme:port[acme:name='ethernet-1/5']/acme:vlan/text()") == []
    mgr.copy_config(source="running", target="startup")
    startup = _xml(mgr.get_config(source="startup"))
    assert _vals(startup, "//acme:port[acme:name='ethernet-1/5']/acme:vlan/text()") == ["55"]
    mgr.delete_config(target="startup")
    startup = _xml(mgr.get_config(source="startup"))
    assert startup.xpath("//acme:port", namespaces=NS) == []
    with pytest.raises(RPCError):
        mgr.delete_config(target="running")


def test_ncclient_lock_denied_and_kill_session(fresh_fabric: Callable[..., Any],
                                               nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric()
    first, second = nc_connect(fab, "a-spine1"), nc_connect(fab, "a-spine1")
    first.lock(target="candidate")
    with pytest.raises(RPCError) as info:
        second.lock(target="candidate")
    assert info.value.tag == "lock-denied"
    assert info.value.info is not None and str(first.session_id) in info.value.info
    with pytest.raises(RPCError) as info:
        second.edit_config(target="candidate", config=_config(_iface("<name>swp4</name>", op="delete")))
    assert info.value.tag == "in-use"
    first.unlock(target="candidate")
    second.lock(target="candidate")
    second.unlock(target="candidate")
    first.lock(target="candidate")
    second.kill_session(first.session_id)
    second.lock(target="candidate")  # the killed session's lock was released
    deadline = time.monotonic() + 10
    while first.connected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not first.connected
    with pytest.raises((TransportError, Exception)):
        first.get_config(source="running")


def test_ncclient_confirmed_commit_rolls_back_after_timeout(fresh_fabric: Callable[..., Any],
                                                            nc_connect: Callable[..., Any]) -> None:
    mgr = nc_connect(fresh_fabric(), "a-spine1")
    mgr.edit_config(target="candidate", config=_config(_iface("<name>swp4</name>", op="delete")))
    mgr.commit(confirmed=True, timeout="1")
    assert "swp4" not in _running_ifaces(mgr)
    deadline = time.monotonic() + 15
    while "swp4" not in _running_ifaces(mgr) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "swp4" in _running_ifaces(mgr)
    cand = _xml(mgr.get_config(source="candidate"))
    assert "swp4" in _vals(cand, "//if:interface/if:name/text()")


def test_ncclient_persistent_confirmed_commit_and_cancel(fresh_fabric: Callable[..., Any],
                                                         nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric()
    first, second = nc_connect(fab, "a-spine1"), nc_connect(fab, "a-spine1")
    first.edit_config(target="candidate", config=_config(_iface("<name>swp4</name>", op="delete")))
    first.commit(confirmed=True, timeout="60", persist="mig-1")
    first.close_session()
    time.sleep(0.3)
    assert "swp4" not in _running_ifaces(second)  # persist: survives its session
    with pytest.raises(RPCError):
        second.commit(persist_id="wrong")
    second.commit(persist_id="mig-1")
    time.sleep(0.3)
    assert "swp4" not in _running_ifaces(second)
    # cancel-commit puts running back
    second.edit_config(target="candidate", config=_config(_iface("<name>swp3</name>", op="delete")))
    second.commit(confirmed=True, timeout="60")
    assert "swp3" not in _running_ifaces(second)
    second.cancel_commit()
    assert "swp3" in _running_ifaces(second)
    with pytest.raises(RPCError):
        second.cancel_commit()


def test_ncclient_subscription_gets_config_change(fresh_fabric: Callable[..., Any],
                                                  nc_connect: Callable[..., Any]) -> None:
    fab = fresh_fabric()
    listener, writer = nc_connect(fab, "b-nat1"), nc_connect(fab, "b-nat1")
    listener.create_subscription()
    writer.edit_config(target="candidate", config=_config(
        f'<acme-fabric xmlns="{ACME_NS}"><nat><static><inside>10.2.10.32</inside>'
        "<outside>203.0.113.32</outside></static></nat></acme-fabric>"))
    writer.commit()
    note = listener.take_notification(block=True, timeout=10)
    assert note is not None
    root = etree.fromstring(note.notification_xml.encode())
    change = root.find("{urn:ietf:params:xml:ns:yang:ietf-netconf-notifications}netconf-config-change")
    assert change is not None
    assert str(writer.session_id) in etree.tostring(change).decode()


# -- ncclient: invalid edits -----------------------------------------------------------------------------
BAD_EDITS = [
    ("bad-enum", "a-fw1", f'<firewall xmlns="{NMD_NS}"><rule><name>x.r</name><action>allow</action></rule>'
     "</firewall>", "invalid-value", ":action"),
    ("out-of-range", "a-leaf1", _iface(f'<name>eth3</name><qos xmlns="{NMD_NS}"><dscp>99</dscp></qos>'),
     "invalid-value", ":dscp"),
    ("missing-key", "a-leaf1", _iface(f'<access-vlan xmlns="{NMD_NS}">5</access-vlan>'), "missing-element",
     ":interface"),
    ("unknown-element", "a-leaf1", _iface(f'<name>eth3</name><bogus xmlns="{IF_NS}">1</bogus>'),
     "unknown-element", "if:interface[if:name='eth3']"),
]


@pytest.mark.parametrize(("case", "device", "body", "tag", "path_part"), BAD_EDITS,
                         ids=[c[0] for c in BAD_EDITS])
def test_ncclient_invalid_edit_is_refused_and_changes_nothing(
        two_site_fabric: Any, nc_connect: Callable[..., Any], case: str, device: str, body: str, tag: str,
        path_part: str) -> None:
    mgr = nc_connect(two_site_fabric, device)
    before = (mgr.get_config(source="candidate").xml, mgr.get_config(source="running").xml)
    with pytest.raises(RPCError) as info:
        mgr.edit_config(target="candidate", config=_config(body))
    assert info.value.tag == tag, info.value
    assert info.value.path is not None and path_part in info.value.path, info.value.path
    after = (mgr.get_config(source="candidate").xml, mgr.get_config(source="running").xml)
    assert [_strip_ids(x) for x in after] == [_strip_ids(x) for x in before]


def _strip_ids(reply_xml: str) -> bytes:
    root = etree.fromstring(reply_xml.encode())
    return etree.tostring(root[0], method="c14n")


def test_ncclient_dangling_leafref_fails_validate_and_commit(fresh_fabric: Callable[..., Any],
                                                             nc_connect: Callable[..., Any]) -> None:
    mgr = nc_connect(fresh_fabric(), "a-leaf1")
    running = mgr.get_config(source="running").xml
    mgr.edit_config(target="candidate", config=_config(
        f'<acls xmlns="{ACL_NS}"><attachment-points><interface><interface-id>eth99</interface-id>'
        "</interface></attachment-points></acls>"))
    for call in (lambda: mgr.validate(source="candidate"), mgr.commit):
        with pytest.raises(RPCError) as info:
            call()
        assert info.value.tag == "data-missing"
        assert "interface-id" in (info.value.path or "")
    assert _strip_ids(mgr.get_config(source="running").xml) == _strip_ids(running)
    mgr.discard_changes()


# -- scrapli-netconf --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_scrapli_netconf_get_edit_commit(fresh_fabric: Callable[..., Any], version: str) -> None:
    from scrapli_netconf.driver import NetconfDriver

    fab = fresh_fabric()
    ep = fab.endpoints["b-leaf1"]
    conn = NetconfDriver(host=ep.host, port=ep.port, auth_username=ep.username, auth_password=ep.password,
                         auth_strict_key=True, ssh_known_hosts_file=str(fab.known_hosts), transport="system",
                         preferred_netconf_version=version, timeout_ops=30)
    conn.open()
    try:
        assert conn.netconf_version.value == version
        got = conn.get_config(source="running", filter_=f'<acme-fabric xmlns="{ACME_NS}"><port><name>'
                                                      "ethernet-1/2</name></port></acme-fabric>")
        assert not got.failed and "vm-app-01" in got.result
        edit = conn.edit_config(target="candidate", config=_config(
            f'<acme-fabric xmlns="{ACME_NS}"><port><name>ethernet-1/6</name><vlan>66</vlan></port>'
            "</acme-fabric>"))
        assert not edit.failed, edit.result
        assert not conn.commit().failed
        after = conn.get_config(source="running", filter_=f'<acme-fabric xmlns="{ACME_NS}"><port><name>'
                                                        "ethernet-1/6</name></port></acme-fabric>")
        assert "<vlan>66</vlan>" in after.result
    finally:
        conn.close()


# -- yangcli (yuma123) ------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("yangcli") is None, reason="yangcli (Debian package yangcli) not installed")
def test_yangcli_connects_and_reads(two_site_fabric: Any, tmp_path: Path) -> None:
    ep = two_site_fabric.endpoints["a-leaf1"]
    run = subprocess.run(
        ["yangcli", f"--server={ep.host}", f"--ncport={ep.port}", f"--user={ep.username}",
         f"--password={ep.password}", "--batch-mode", "--run-command=sget /interfaces", "--timeout=30",
         f"--yuma-home={tmp_path}", "--log-level=info"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
    out = run.stdout + run.stderr
    assert "eth3" in out and "vm-web-01" in out, out[-3000:]


# -- netconf-console2 --------------------------------------------------------------------------------------
def _console(fab: Any, device: str, *args: str) -> subprocess.CompletedProcess[str]:
    ep = fab.endpoints[device]
    exe = shutil.which("netconf-console2")
    command = [exe] if exe else [sys.executable, "-m", "netconf_console2"]
    return subprocess.run([*command, "--host", ep.host, "--port", str(ep.port), "-u", ep.username,
                           "-p", ep.password, "--ssh-config", str(fab.ssh_config), "--hostkey-verify", *args],
                          capture_output=True, text=True, timeout=60)


def test_netconf_console2_get_config_and_edit(fresh_fabric: Callable[..., Any], tmp_path: Path) -> None:
    fab = fresh_fabric()
    run = _console(fab, "b-nat1", "--get-config")
    assert run.returncode == 0, run.stderr
    assert "203.0.113.31" in run.stdout
    edit = tmp_path / "edit.xml"
    edit.write_text(f'<acme-fabric xmlns="{ACME_NS}"><nat><static><inside>10.2.10.40</inside>'
                    "<outside>203.0.113.40</outside></static></nat></acme-fabric>")
    run = _console(fab, "b-nat1", "--db", "candidate", "--edit-config", str(edit), "--commit")
    assert run.returncode == 0, run.stdout + run.stderr
    run = _console(fab, "b-nat1", "--ns", f"acme={ACME_NS}", "--get-config", "-x",
                   "/acme:acme-fabric/acme:nat")
    assert "203.0.113.40" in run.stdout and "203.0.113.31" in run.stdout, run.stdout + run.stderr
    # with another device's known_hosts entry for this address the host key check must fail
    wrong = tmp_path / "known_hosts"
    port = fab.endpoints["b-nat1"].port
    other = next(x for x in fab.known_hosts.read_text().splitlines()
                 if not x.startswith(f"[127.0.0.1]:{port} "))
    wrong.write_text(f"[127.0.0.1]:{port} {' '.join(other.split()[1:])}\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n  UserKnownHostsFile {wrong}\n")
    ep = fab.endpoints["b-nat1"]
    run = subprocess.run([shutil.which("netconf-console2") or "netconf-console2", "--host", ep.host, "--port",
                          str(port), "-u", ep.username, "-p", ep.password, "--ssh-config", str(config),
                          "--hostkey-verify", "--get-config"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "203.0.113" not in run.stdout

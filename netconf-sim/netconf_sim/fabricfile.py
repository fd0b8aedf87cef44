"""Fabric file: the YAML that describes a fabric of simulated devices, loaded and validated.

Format (keys are YAML mapping keys; ``?`` marks optional ones)::

    devices:                       # required, mapping device name -> device
      a-leaf1:
        profile: ietf-leaf         # ietf-leaf|ietf-spine|ietf-fw|acme-leaf|acme-spine|acme-fw|acme-nat
        port?: 0                   # TCP port on 127.0.0.1, 0 (default) = ephemeral
        username: admin            # the device's primary login (devices.json, Endpoint); optional
        password: admin            #   when users: is given (then the first user is primary)
                                   # or  password-env: NAME_OF_ENV_VAR  (exactly one of the two)
        users?:                    # more accounts (password auth); primary first in DeviceSpec.users
          - {username: netmig, password: s3cret, groups: [netmig]}   # or password-env; groups for NACM
        nacm?: {...}               # RFC 8341 access control, see netconf_sim.nacm (absent: none)
        authorized-keys?: [keys/admin.pub]        # OpenSSH public key files, relative to the fabric file
        features?: {netmig-device: [firewall]}    # per-module feature list, replaces the profile's
        deviations?: [yang/a-leaf1-deviations.yang]   # deviation modules (files relative to the fabric file,
                                                  # named MODULE.yang or MODULE@REV.yang), implemented too
        config?: config/a-leaf1.xml               # initial config: XML file path or an inline XML string,
                                                  # root <config> or <data> in the NETCONF base namespace
        ports?: [eth1, eth2]       # port names; the profile's default config makes one interface each
        vms?:                      # VMs whose traffic this device sees (learned state seed)
          - vm-id: vm-web-01
            port?: eth3            # attachment port (must be listed in ports)
            tenant?: blue
            vlan?: 110             # 1..4094
            macs?: [52:54:00:10:00:01]
            ips?: [10.1.10.11]     # IPv4 and IPv6 addresses
            nat-address?: 203.0.113.11    # external address used by NAT sessions
            learned?: {mac-entry: 1, arp-entry: 1, nd-entry: 0, dhcp-binding: 1,
                       nat-session: 2, firewall-session: 2}   # counts; defaults come from the profile
        faults?:                   # injected faults (netconf_sim.faults), also settable at run time
          - {kind: rpc-error, operation: confirming-commit, error-tag: operation-failed, nth: 1}
          - {kind: latency, delay-s: 0.05}          # kind, operation?, error-tag?, nth?, delay-s?,
          - {kind: lock-held, datastore: candidate} # size-bytes?, up-after-s?, reboot?, message?
    hosts?:                        # hypervisor hosts -> the device ports they hang off (informational)
      host-a1: [{device: a-leaf1, port: eth3}]

Every problem is reported as one line ``FILE:LINE: path.to.key: problem``; all problems of a file are
collected and raised together as one :class:`FabricError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from netconf_sim.fabriccheck import FabricChecker, Located
from netconf_sim.fabricspec import (
    DI_KINDS,
    DeviceSpec,
    FabricError,
    FabricSpec,
    HostAttachment,
    UserSpec,
    VmSeed,
)

__all__ = [
    "DI_KINDS",
    "DeviceSpec",
    "FabricError",
    "FabricSpec",
    "HostAttachment",
    "UserSpec",
    "VmSeed",
    "load_fabric",
]


def _locate(loader: yaml.SafeLoader, node: yaml.Node, source: str, problems: list[str]) -> Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str | int):
                problems.append(f"{source}:{knode.start_mark.line + 1}: (key): keys must be strings")
                continue
            if str(key) in out:
                problems.append(f"{source}:{knode.start_mark.line + 1}: {key}: duplicate key")
            child = _locate(loader, vnode, source, problems)
            child.line = knode.start_mark.line + 1  # report against the key's line
            out[str(key)] = child
        return Located(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Located([_locate(loader, n, source, problems) for n in node.value], line)
    return Located(loader.construct_object(node, deep=True), line)


def _locate_plain(value: Any) -> Located:
    if isinstance(value, Mapping):
        return Located({str(k): _locate_plain(v) for k, v in value.items()}, 0)
    if isinstance(value, list | tuple):
        return Located([_locate_plain(v) for v in value], 0)
    return Located(value, 0)


def load_fabric(source: str | Path | Mapping[str, Any], *,
                profiles: frozenset[str] | None = None) -> FabricSpec:
    """Load and validate a fabric file (a path) or an already parsed mapping; raises FabricError."""
    if profiles is None:
        from netconf_sim.profiles import PROFILES
        profiles = frozenset(PROFILES)
    if isinstance(source, Mapping):
        return FabricChecker("<dict>", Path.cwd(), profiles).check(_locate_plain(source))
    path = Path(source)
    name = str(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FabricError([f"{name}:0: (file): cannot read: {exc.strerror or exc}"]) from exc
    problems: list[str] = []
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            root = _locate(loader, node, name, problems) if node is not None else Located(None, 1)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise FabricError([f"{name}:{line}: (yaml): {exc.problem or 'syntax error'}"]) from exc
    except yaml.YAMLError as exc:
        raise FabricError([f"{name}:0: (yaml): {exc}".replace("\n", " ")]) from exc
    checker = FabricChecker(name, path.parent, profiles)
    checker.problems.extend(problems)
    return checker.check(root)

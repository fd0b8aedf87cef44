"""Fabric file validation: walk the YAML tree with its line numbers, collect every problem, build the spec.

A :class:`Located` value is a YAML value with the line it came from; :class:`FabricChecker` checks
one located tree against the format documented in :mod:`netconf_sim.fabricfile`, collects each
problem as ``FILE:LINE: path.to.key: problem`` and either raises them all as one
:class:`~netconf_sim.fabricspec.FabricError` or returns the :class:`~netconf_sim.fabricspec.FabricSpec`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from lxml import etree

from netconf_sim.fabricspec import (
    DI_KINDS,
    DeviceSpec,
    FabricError,
    FabricSpec,
    HostAttachment,
    UserSpec,
    VmSeed,
)
from netconf_sim.faults import FaultRule, rule_from_mapping
from netconf_sim.nacm import NacmConfig, nacm_from_mapping
from netconf_sim.xml import NC_NS, XmlInputError, data_root, parse

__all__ = ["FabricChecker", "Located", "plain"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_DEVICE_KEYS = {"profile", "port", "username", "password", "password-env", "authorized-keys", "features",
                "config", "ports", "vms", "deviations", "faults", "users", "nacm"}
_USER_KEYS = {"username", "password", "password-env", "groups"}
_VM_KEYS = {"vm-id", "port", "tenant", "vlan", "macs", "ips", "nat-address", "learned"}


class Located:
    """A YAML value with the line it came from; mapping and sequence children are Located too."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


class FabricChecker:
    """Walks the located tree, collects problems and builds the spec."""

    def __init__(self, source: str, base_dir: Path, profiles: frozenset[str]) -> None:
        self.source = source
        self.base_dir = base_dir
        self.profiles = profiles
        self.problems: list[str] = []

    def problem(self, node: Located | None, path: str, text: str) -> None:
        line = node.line if node is not None else 0
        self.problems.append(f"{self.source}:{line}: {path}: {text}")

    def mapping(self, node: Located, path: str, allowed: set[str] | None = None) -> dict[str, Located]:
        if not isinstance(node.value, dict):
            self.problem(node, path, "must be a mapping")
            return {}
        if allowed is not None:
            for key in sorted(set(node.value) - allowed):
                self.problem(node.value[key], f"{path}.{key}", "unknown key")
        return dict(node.value)

    def seq(self, node: Located | None, path: str) -> list[Located]:
        if node is None:
            return []
        if not isinstance(node.value, list):
            self.problem(node, path, "must be a list")
            return []
        return list(node.value)

    def string(self, node: Located | None, path: str, *, parent: Located | None = None,
               pattern: re.Pattern[str] | None = None) -> str | None:
        if node is None:
            if parent is not None:
                self.problem(parent, path, "missing")
            return None
        if not isinstance(node.value, str) or not node.value:
            self.problem(node, path, "must be a non-empty string")
            return None
        if pattern is not None and not pattern.match(node.value):
            self.problem(node, path, f"{node.value!r} is not a valid name")
            return None
        return node.value

    def integer(self, node: Located | None, path: str, low: int, high: int) -> int | None:
        if node is None:
            return None
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            self.problem(node, path, "must be an integer")
            return None
        if not low <= node.value <= high:
            self.problem(node, path, f"{node.value} is out of range {low}..{high}")
            return None
        return int(node.value)

    def check(self, root: Located) -> FabricSpec:
        top = self.mapping(root, "(top)", {"devices", "hosts"})
        devices: list[DeviceSpec] = []
        if "devices" not in top:
            self.problem(root, "devices", "missing")
        else:
            for name, dnode in self.mapping(top["devices"], "devices").items():
                dev = self.device(str(name), dnode)
                if dev is not None:
                    devices.append(dev)
        hosts = self.hosts(top.get("hosts"), {d.name: d for d in devices})
        if self.problems:
            start = len(self.source) + 1
            raise FabricError(sorted(self.problems, key=lambda p: int(p[start:].split(":", 1)[0])))
        return FabricSpec(tuple(devices), hosts, self.source)

    def device(self, name: str, node: Located) -> DeviceSpec | None:
        path = f"devices.{name}"
        before = len(self.problems)
        if not _NAME_RE.match(name):
            self.problem(node, path, f"{name!r} is not a valid device name")
        fields = self.mapping(node, path, _DEVICE_KEYS)
        profile = self.string(fields.get("profile"), f"{path}.profile", parent=node)
        if profile is not None and profile not in self.profiles:
            self.problem(fields["profile"], f"{path}.profile",
                         f"unknown profile {profile!r} (known: {', '.join(sorted(self.profiles))})")
        port = self.integer(fields.get("port"), f"{path}.port", 0, 65535)
        users = self.users(fields.get("users"), f"{path}.users")
        username: str | None
        password: str | None
        if users and "username" not in fields and "password" not in fields and "password-env" not in fields:
            username, password = users[0].username, users[0].password
        else:
            username = self.string(fields.get("username"), f"{path}.username", parent=node)
            password = self.password(fields, path, node)
            if users and username is not None and password is not None:
                users = [UserSpec(username, password), *users]
        if len({u.username for u in users}) != len(users):
            self.problem(fields["users"], f"{path}.users", "duplicate username")
        nacm: NacmConfig | None = None
        if "nacm" in fields:
            try:
                nacm = nacm_from_mapping(plain(fields["nacm"]))
            except ValueError as exc:
                self.problem(fields["nacm"], f"{path}.nacm", str(exc))
        key_nodes = self.seq(fields.get("authorized-keys"), f"{path}.authorized-keys")
        keys = tuple(self.existing_file(k, f"{path}.authorized-keys[{i}]") for i, k in enumerate(key_nodes))
        features = self.features(fields.get("features"), f"{path}.features")
        deviations = tuple(self.yang_file(d, f"{path}.deviations[{i}]")
                           for i, d in enumerate(self.seq(fields.get("deviations"), f"{path}.deviations")))
        config = self.config(fields.get("config"), f"{path}.config")
        ports = tuple(p for i, pn in enumerate(self.seq(fields.get("ports"), f"{path}.ports"))
                      if (p := self.string(pn, f"{path}.ports[{i}]")) is not None)
        if len(set(ports)) != len(ports):
            self.problem(fields["ports"], f"{path}.ports", "duplicate port names")
        vms = tuple(self.vm(v, f"{path}.vms[{i}]", ports)
                    for i, v in enumerate(self.seq(fields.get("vms"), f"{path}.vms")))
        ids = [v.vm_id for v in vms]
        if len(set(ids)) != len(ids):
            self.problem(fields["vms"], f"{path}.vms", "duplicate vm-id")
        faults, locks_held = self.faults(fields.get("faults"), f"{path}.faults")
        if len(self.problems) > before or profile is None or username is None or password is None:
            return None
        return DeviceSpec(name=name, profile=profile, username=username, password=password, port=port or 0,
                          authorized_keys=tuple(k for k in keys if k is not None), features=features,
                          config=config, ports=ports, vms=vms,
                          deviations=tuple(d for d in deviations if d is not None),
                          faults=faults, locks_held=locks_held, users=tuple(users), nacm=nacm)

    def users(self, node: Located | None, path: str) -> list[UserSpec]:
        out: list[UserSpec] = []
        for i, unode in enumerate(self.seq(node, path)):
            upath = f"{path}[{i}]"
            fields = self.mapping(unode, upath, _USER_KEYS)
            name = self.string(fields.get("username"), f"{upath}.username", parent=unode)
            password = self.password(fields, upath, unode)
            groups = tuple(g for j, gn in enumerate(self.seq(fields.get("groups"), f"{upath}.groups"))
                           if (g := self.string(gn, f"{upath}.groups[{j}]")) is not None)
            if name is not None and password is not None:
                out.append(UserSpec(name, password, groups))
        return out

    def password(self, fields: dict[str, Located], path: str, node: Located) -> str | None:
        if "password" in fields and "password-env" in fields:
            self.problem(fields["password-env"], f"{path}.password-env",
                         "give password or password-env, not both")
            return None
        if "password-env" in fields:
            var = self.string(fields["password-env"], f"{path}.password-env")
            if var is None:
                return None
            value = os.environ.get(var)
            if not value:
                self.problem(fields["password-env"], f"{path}.password-env",
                             f"environment variable {var} is not set")
            return value
        if "password" not in fields:
            self.problem(node, f"{path}.password", "missing (give password or password-env)")
            return None
        raw = fields["password"].value
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return str(raw)
        return self.string(fields["password"], f"{path}.password")

    def existing_file(self, node: Located, path: str) -> Path | None:
        text = self.string(node, path)
        if text is None:
            return None
        file = (self.base_dir / text).resolve()
        if not file.is_file():
            self.problem(node, path, f"no such file {text!r}")
            return None
        return file

    def yang_file(self, node: Located, path: str) -> Path | None:
        file = self.existing_file(node, path)
        if file is not None and file.suffix != ".yang":
            self.problem(node, path, f"{file.name!r} is not a .yang file")
            return None
        return file

    def faults(self, node: Located | None, path: str) -> tuple[tuple[FaultRule, ...], tuple[str, ...]]:
        rules: list[FaultRule] = []
        locks: list[str] = []
        for i, fnode in enumerate(self.seq(node, path)):
            raw = {k: v.value for k, v in self.mapping(fnode, f"{path}[{i}]").items()}
            if raw.get("kind") == "lock-held":
                store = raw.get("datastore", "candidate")
                if set(raw) - {"kind", "datastore"} or store not in ("candidate", "running", "startup"):
                    self.problem(fnode, f"{path}[{i}]", "lock-held takes only datastore: candidate, "
                                 "running or startup")
                else:
                    locks.append(store)
                continue
            try:
                rules.append(rule_from_mapping(raw))
            except ValueError as exc:
                self.problem(fnode, f"{path}[{i}]", str(exc))
        return tuple(rules), tuple(locks)

    def features(self, node: Located | None, path: str) -> dict[str, tuple[str, ...]]:
        if node is None:
            return {}
        out: dict[str, tuple[str, ...]] = {}
        for module, fnode in self.mapping(node, path).items():
            items = self.seq(fnode, f"{path}.{module}")
            names = [self.string(f, f"{path}.{module}[{i}]") for i, f in enumerate(items)]
            out[str(module)] = tuple(n for n in names if n is not None)
        return out

    def config(self, node: Located | None, path: str) -> etree._Element | None:
        text = self.string(node, path)
        if text is None or node is None:
            return None
        if text.lstrip().startswith("<"):
            raw, where = text.encode(), "inline XML"
        else:
            file = (self.base_dir / text).resolve()
            if not file.is_file():
                self.problem(node, path, f"no such file {text!r}")
                return None
            raw, where = file.read_bytes(), text
        try:
            root = parse(raw)
        except XmlInputError as exc:
            self.problem(node, path, f"{where}: {exc}".replace("\n", " "))
            return None
        if root.tag not in (f"{{{NC_NS}}}config", f"{{{NC_NS}}}data"):
            self.problem(node, path, f"{where}: root must be <config> or <data> in {NC_NS}")
            return None
        data = data_root()
        data.extend(list(root))
        return data

    def vm(self, node: Located, path: str, ports: tuple[str, ...]) -> VmSeed:
        fields = self.mapping(node, path, _VM_KEYS)
        vm_id = self.string(fields.get("vm-id"), f"{path}.vm-id", parent=node, pattern=_NAME_RE) or "?"
        port = self.string(fields.get("port"), f"{path}.port")
        if port is not None and port not in ports:
            self.problem(fields["port"], f"{path}.port", f"port {port!r} is not in the device's ports")
        macs: list[str] = []
        for i, m in enumerate(self.seq(fields.get("macs"), f"{path}.macs")):
            mac = self.string(m, f"{path}.macs[{i}]")
            if mac is not None and not _MAC_RE.match(mac):
                self.problem(m, f"{path}.macs[{i}]", f"{mac!r} is not a MAC address")
            elif mac is not None:
                macs.append(mac.lower())
        ips = [ip for i, n in enumerate(self.seq(fields.get("ips"), f"{path}.ips"))
               if (ip := self.address(n, f"{path}.ips[{i}]", any_family=True)) is not None]
        nat = self.address(fields.get("nat-address"), f"{path}.nat-address", any_family=False)
        learned: dict[str, int] = {}
        lnode = fields.get("learned")
        if lnode is not None:
            for kind, cnode in self.mapping(lnode, f"{path}.learned", set(DI_KINDS)).items():
                count = self.integer(cnode, f"{path}.learned.{kind}", 0, 10000)
                if count is not None:
                    learned[str(kind)] = count
        return VmSeed(vm_id=vm_id, port=port, tenant=self.string(fields.get("tenant"), f"{path}.tenant"),
                      vlan=self.integer(fields.get("vlan"), f"{path}.vlan", 1, 4094), macs=tuple(macs),
                      ips=tuple(ips), nat_address=nat, learned=learned)

    def address(self, node: Located | None, path: str, *, any_family: bool) -> str | None:
        text = self.string(node, path)
        if text is None:
            return None
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            self.problem(node, path, f"{text!r} is not an IP address")
            return None
        if not any_family and addr.version != 4:
            self.problem(node, path, f"{text!r} is not an IPv4 address")
            return None
        return str(addr)

    def hosts(self, node: Located | None, devices: dict[str, DeviceSpec]) -> tuple[HostAttachment, ...]:
        if node is None:
            return ()
        out: list[HostAttachment] = []
        for host, links in self.mapping(node, "hosts").items():
            for i, link in enumerate(self.seq(links, f"hosts.{host}")):
                lpath = f"hosts.{host}[{i}]"
                fields = self.mapping(link, lpath, {"device", "port"})
                dev = self.string(fields.get("device"), f"{lpath}.device", parent=link)
                port = self.string(fields.get("port"), f"{lpath}.port", parent=link)
                if dev is None or port is None:
                    continue
                if dev not in devices:
                    self.problem(fields["device"], f"{lpath}.device", f"unknown device {dev!r}")
                elif port not in devices[dev].ports:
                    self.problem(fields["port"], f"{lpath}.port", f"device {dev} has no port {port!r}")
                else:
                    out.append(HostAttachment(str(host), dev, port))
        return tuple(out)


def plain(node: Located) -> Any:
    """The plain YAML value under a located node."""
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [plain(v) for v in node.value]
    return node.value

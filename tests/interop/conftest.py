"""Interop tier fixtures: real third-party NETCONF devices, described by an endpoints JSON file.

The tier is endpoint-agnostic. ``NETMIG_INTEROP_ENDPOINTS`` names a JSON file (a list of endpoint
objects, or an object with an ``endpoints`` list) and ``NETMIG_INTEROP_KNOWN_HOSTS`` the known_hosts file
with the devices' SSH host keys (unset: ``~/.ssh/known_hosts``). Without ``NETMIG_INTEROP_ENDPOINTS`` the
session starts our own yuma123 netconfd fabric with ``scripts/netconfd-fabric.sh`` (once per machine even
under pytest-xdist, guarded by a file lock and a list of the pytest processes using it) and stops it when
the last of them is done, but only if pytest started it. If netconfd is not installed the tier is
skipped, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "netconfd-fabric.sh"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Endpoint:
    """One NETCONF device of the tier."""

    name: str
    host: str
    port: int
    username: str
    password: str | None
    key_file: str | None
    model: str  # "acme" (acme-fabric) or "ietf" (ietf-interfaces + netmig-device)
    role: str  # "source" or "destination"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Endpoint:
        return cls(
            name=str(raw["name"]),
            host=str(raw.get("host", "127.0.0.1")),
            port=int(raw.get("port", 830)),
            username=str(raw["username"]),
            password=raw.get("password"),
            key_file=raw.get("key_file"),
            model=str(raw["model"]),
            role=str(raw.get("role", "source")),
        )


@dataclass(frozen=True)
class Fabric:
    """The endpoints of this session and how to verify their host keys."""

    endpoints: tuple[Endpoint, ...]
    known_hosts: Path | None  # None: ~/.ssh/known_hosts
    ssh_config: Path | None  # an ssh_config whose UserKnownHostsFile is known_hosts (ncclient reads it)
    harness: bool  # True when the devices are our netconfd fabric (the script's state dir)

    def pick(self, model: str | None = None, role: str | None = None) -> list[Endpoint]:
        return [
            e
            for e in self.endpoints
            if (model is None or e.model == model) and (role is None or e.role == role)
        ]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing_tool(what: str) -> NoReturn:
    """A missing third-party tool: skip locally, fail under CI=true (a skip is not a pass in CI)."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: the interop tier must run)", pytrace=False)
    pytest.skip(what)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.interop)


def _state_dir() -> Path:
    return Path(os.environ.get("NETMIG_NC_STATE", "/tmp/netmig-netconfd"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _script_ok(*args: str, timeout: float = 120) -> str:
    proc = _run_script(*args, timeout=timeout)
    if proc.returncode != 0:
        what = f"netconfd-fabric.sh {' '.join(args)} failed ({proc.returncode})"
        pytest.fail(f"{what}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


class HarnessUsers:
    """Pytest processes using our netconfd fabric, kept in STATE/.pytest-users under STATE/../.lock."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.lock = state.parent / (state.name + ".lock")
        self.users = state / ".pytest-users"
        self.marker = state / ".started-by-pytest"

    def _read(self) -> set[int]:
        try:
            pids = {int(x) for x in self.users.read_text().split()}
        except (FileNotFoundError, ValueError):
            return set()
        return {p for p in pids if _alive(p)}

    def _write(self, pids: set[int]) -> None:
        self.users.write_text("".join(f"{p}\n" for p in sorted(pids)))

    def acquire(self) -> None:
        with file_lock(self.lock):
            users = self._read()
            if _run_script("status").returncode != 0:
                if os.geteuid() == 0:
                    _script_ok("install", timeout=300)  # idempotent: apt only if a tool is missing
                _script_ok("start")
                _script_ok("wait", "60")
                self.marker.write_text(f"{os.getpid()}\n")
                users = set()
            self._write(users | {os.getpid()})

    def release(self) -> None:
        with file_lock(self.lock):
            users = self._read() - {os.getpid()}
            self._write(users)
            if not users and self.marker.exists():
                _run_script("stop")
                self.marker.unlink()


@pytest.fixture(scope="session")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    listed = os.environ.get("NETMIG_INTEROP_ENDPOINTS")
    users: HarnessUsers | None = None
    if listed:
        endpoints_file = Path(listed)
        kh = os.environ.get("NETMIG_INTEROP_KNOWN_HOSTS")
        known_hosts = Path(kh) if kh else None
        state = _state_dir()
        harness = endpoints_file.resolve() == (state / "endpoints.json").resolve()
    else:
        for tool in ("netconfd", "/usr/sbin/sshd", "ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                missing_tool(f"{tool} is not installed (apt-get install netconfd yangcli openssh-server)")
        state = _state_dir()
        users = HarnessUsers(state)
        users.acquire()
        endpoints_file = state / "endpoints.json"
        known_hosts = state / "known_hosts"
        harness = True
    raw = json.loads(endpoints_file.read_text(encoding="utf-8"))
    items = raw["endpoints"] if isinstance(raw, dict) else raw
    ssh_config: Path | None = None
    if known_hosts is not None:
        ssh_config = tmp_path_factory.mktemp("interop-ssh") / "ssh_config"
        ssh_config.write_text(f"Host *\n    UserKnownHostsFile {known_hosts}\n", encoding="utf-8")
    try:
        yield Fabric(tuple(Endpoint.from_json(i) for i in items), known_hosts, ssh_config, harness)
    finally:
        if users is not None:
            users.release()


def connect(fabric: Fabric, ep: Endpoint, *, sock: socket.socket | None = None, timeout: float = 15) -> Any:
    """An ncclient manager to ``ep`` with host key verification on, against the fabric's known_hosts."""
    from ncclient import manager

    kwargs: dict[str, Any] = {}
    if fabric.ssh_config is not None:
        kwargs["ssh_config"] = str(fabric.ssh_config)
    if sock is None:  # ncclient never sets TCP_NODELAY: connect ourselves (FACTS.md)
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return manager.connect(
        host=ep.host,
        port=ep.port,
        username=ep.username,
        password=ep.password,
        key_filename=ep.key_file,
        allow_agent=False,
        look_for_keys=False,
        hostkey_verify=True,
        timeout=timeout,
        sock=sock,
        **kwargs,
    )


@contextlib.contextmanager
def device_lock(ep: Endpoint) -> Iterator[None]:
    """Serialise tests on one device across xdist workers: a pending confirmed commit blocks everyone else."""
    path = Path(tempfile.gettempdir()) / "netmig-interop-locks" / f"{ep.host}_{ep.port}.lock"
    with file_lock(path):
        yield

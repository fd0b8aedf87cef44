"""A running fabric: one DeviceEngine, runtime and SSH listener per device of a fabric file, in one loop.

The fabric file format is documented in :mod:`netconf_sim.fabricfile` (``FabricError``, ``load_fabric``
are re-exported here). The state directory holds::

    STATE/keys/NAME          persistent host key of each device (so known_hosts survives restarts)
    STATE/devices/NAME/      the device's datastores (running.xml, startup.xml, candidate.xml)
    STATE/known_hosts        "[127.0.0.1]:PORT keytype key" per device, for ncclient/paramiko/OpenSSH
    STATE/devices.json       name, host, port, username, password, profile per device
    STATE/ssh_config         "Host *" with UserKnownHostsFile=STATE/known_hosts: hand it to ncclient's
                             ``manager.connect(ssh_config=...)`` (its only way to name a known_hosts file)

:func:`running_fabric` runs a fabric on a background thread's event loop for tests and embedding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from netconf_sim.engine import DeviceEngine
from netconf_sim.fabricfile import DeviceSpec, FabricError, FabricSpec, load_fabric
from netconf_sim.faults import DeviceFaults
from netconf_sim.learned import LearnedTables
from netconf_sim.migration import MigrationAgent
from netconf_sim.nacm import Nacm
from netconf_sim.profiles import PROFILES, Profile, populate
from netconf_sim.runtime import DeviceRuntime
from netconf_sim.schema import SchemaCache, SchemaLoadError
from netconf_sim.server import DeviceListenSpec, DeviceServer, start_device_server

__all__ = ["Endpoint", "Fabric", "FabricError", "SimDevice", "load_fabric", "running_fabric"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How a client reaches one device."""

    name: str
    host: str
    port: int
    username: str
    password: str
    profile: str


class SimDevice:
    """One simulated device: its spec, profile, engine, learned tables, runtime and (once started) server.

    ``faults`` (:class:`netconf_sim.faults.DeviceFaults`) injects faults at run time:
    ``fabric.device("b-fw1").faults.set(kind="rpc-error", operation="commit")``, ``.down()``, ``.up()``.
    """

    def __init__(self, spec: DeviceSpec, profile: Profile, engine: DeviceEngine, learned: LearnedTables,
                 runtime: DeviceRuntime) -> None:
        self.spec = spec
        self.profile = profile
        self.engine = engine
        self.learned = learned
        self.runtime = runtime
        self.server: DeviceServer | None = None
        self.migration: MigrationAgent | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.faults = DeviceFaults(spec.name, runtime, self)
        runtime.faults = self.faults
        self.faults.set(*spec.faults)
        for datastore in spec.locks_held:
            self.faults.hold_lock(datastore)

    async def power_off(self, *, reboot: bool) -> None:
        """Device down: listener closed, sessions dropped (see netconf_sim.faults for ``reboot``)."""
        if self.server is not None and self.server.listening:
            log.info("device %s down (%s)", self.name, "reboot" if reboot else "partition")
            await self.server.stop(reboot=reboot)

    async def power_on(self) -> None:
        """Device back up on the same port and host key."""
        if self.server is not None and not self.server.listening:
            await self.server.start()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def port(self) -> int:
        """The bound TCP port (after the fabric started)."""
        if self.server is None:
            raise RuntimeError(f"device {self.name} is not started")
        return self.server.port


class Fabric:
    """All devices of a fabric; build it, ``await start()``, ``await stop()`` (or use running_fabric)."""

    def __init__(self, spec: FabricSpec, state_dir: Path | str, *, host: str = "127.0.0.1",
                 ephemeral: bool = False, schemas: SchemaCache | None = None) -> None:
        self.spec = spec
        self.state_dir = Path(state_dir)
        self.host = host
        self.ephemeral = ephemeral
        self.loop: asyncio.AbstractEventLoop | None = None
        schemas = schemas if schemas is not None else SchemaCache()
        self.devices: dict[str, SimDevice] = {}
        for dev in spec.devices:
            self.devices[dev.name] = self._build(dev, schemas)

    def _build(self, dev: DeviceSpec, schemas: SchemaCache) -> SimDevice:
        profile = PROFILES[dev.profile]
        deviations = tuple(p.stem.split("@", 1)[0] for p in dev.deviations)
        try:
            schema = schemas.get((*profile.modules, *deviations), profile.merged_features(dev.features),
                                 extra_dirs=[p.parent for p in dev.deviations])
        except SchemaLoadError as exc:
            key = "deviations" if deviations else "profile"
            raise FabricError([f"{self.spec.source}:0: devices.{dev.name}.{key}: {exc}"]) from exc
        tables = profile.new_tables()
        for vm in dev.vms:
            populate(tables, vm)
        initial = dev.config if dev.config is not None else profile.default_config(dev.ports)
        engine = DeviceEngine(dev.name, schema, self.state_dir / "devices" / dev.name,
                              operational=profile.operational_hook(tables), initial_config=initial)
        seeded_hook = profile.commit_hook(tables, engine.running_view)
        engine.on_commit(seeded_hook)
        seeded_hook(engine.running_view(), None)  # seeded DI committed in an earlier run
        runtime = DeviceRuntime(engine, name=dev.name)
        if dev.nacm is not None:
            runtime.nacm = Nacm(dev.nacm, schema, {u.username: u.groups for u in dev.accounts})
        device = SimDevice(dev, profile, engine, tables, runtime)
        # netmig-migration RPCs (middle and distributed modes); the fabric is the agents' directory
        device.migration = runtime.migration = MigrationAgent(dev.name, profile, tables, runtime, self)
        return device

    def device(self, name: str) -> SimDevice:
        """The device called ``name``."""
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no device {name!r} in this fabric") from None

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    # -- migration.Directory: what a device needs to reach its partners (device-to-device transfers) --
    def agent(self, name: str) -> MigrationAgent | None:
        dev = self.devices.get(name)
        return None if dev is None else dev.migration

    def login_for(self, address: str, port: int) -> tuple[str, str] | None:
        for dev in self.devices.values():
            if dev.server is not None and dev.port == port and address in (self.host, "localhost"):
                return (dev.spec.username, dev.spec.password) if dev.spec.password is not None else None
        return None

    def endpoint_of(self, name: str) -> tuple[str, int]:
        return self.host, self.device(name).port

    @property
    def known_hosts_path(self) -> str:
        return str(self.known_hosts)

    @property
    def devices_json(self) -> Path:
        return self.state_dir / "devices.json"

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        """name -> Endpoint for every started device, in fabric order."""
        return {d.name: Endpoint(d.name, self.host, d.port, d.spec.username, d.spec.password, d.spec.profile)
                for d in self.devices.values() if d.server is not None}

    async def start(self) -> None:
        """Start every device's listener, then write known_hosts and devices.json."""
        self.loop = asyncio.get_running_loop()
        try:
            for dev in self.devices.values():
                keys = [line for path in dev.spec.authorized_keys
                        for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                listen = DeviceListenSpec(name=dev.name, host=self.host,
                                          port=0 if self.ephemeral else dev.spec.port,
                                          username=dev.spec.username, password=dev.spec.password,
                                          authorized_keys=keys,
                                          users={u.username: u.password for u in dev.spec.accounts},
                                          host_key_path=self.state_dir / "keys" / dev.name)
                dev.server = await start_device_server(listen, dev.engine, dev.runtime)
                dev.loop = self.loop
        except OSError as exc:
            await self.stop()
            where = f"{self.spec.source}:0: devices.{dev.name}.port"
            problem = f"cannot listen on {self.host}:{dev.spec.port}: {exc.strerror or exc}"
            raise FabricError([f"{where}: {problem}"]) from exc
        self._write_state_files()

    async def stop(self) -> None:
        """Stop every listener; pending confirmed commits roll back."""
        for dev in self.devices.values():
            if dev.server is not None:
                await dev.server.stop()
                dev.server = None

    def _write_state_files(self) -> None:
        lines = [d.server.known_hosts_line() for d in self.devices.values() if d.server is not None]
        _write_atomic(self.known_hosts, "".join(f"{line}\n" for line in lines))
        records = [{"name": e.name, "host": e.host, "port": e.port, "username": e.username,
                    "password": e.password, "profile": e.profile} for e in self.endpoints.values()]
        _write_atomic(self.devices_json, json.dumps({"devices": records}, indent=2) + "\n")
        known = self.known_hosts.resolve()
        _write_atomic(self.ssh_config, f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n")

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the fabric's event loop thread and return its result (for engine access)."""
        if self.loop is None:
            return fn()
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed back to the caller's thread
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def running_fabric(source: str | Path | Mapping[str, Any] | FabricSpec, state_dir: Path | str, *,
                   ephemeral: bool = True, schemas: SchemaCache | None = None) -> Iterator[Fabric]:
    """Run a fabric on an event loop in a background thread; ports are ephemeral unless told otherwise."""
    spec = source if isinstance(source, FabricSpec) else load_fabric(source)
    fabric = Fabric(spec, state_dir, ephemeral=ephemeral, schemas=schemas)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="netconf-sim-fabric", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fabric.start(), loop).result(timeout=120)
        yield fabric
    finally:
        try:
            asyncio.run_coroutine_threadsafe(fabric.stop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()

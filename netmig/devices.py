"""Devices of one migration: topology entries turned into endpoints, codecs and open sessions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from netmig.codecs.base import DeviceCodec
from netmig.codecs.registry import get_codec
from netmig.netconf.session import DeviceSession
from netmig.settings import Credentials, DeviceEndpoint, SshPolicy, Timeouts
from netmig.topology.model import Device, Topology, resolve_password

__all__ = ["DeviceHandle", "handles_for", "open_sessions", "ssh_policy_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceHandle:
    """One device of the topology with how to reach it and how to read its model."""

    device: Device
    endpoint: DeviceEndpoint
    codec: DeviceCodec

    @property
    def name(self) -> str:
        return self.device.name


def endpoint_for(device: Device, environ: Mapping[str, str] | None = None) -> DeviceEndpoint:
    """The endpoint of ``device``; its password is read from the environment variable it names."""
    creds = device.credentials
    password = resolve_password(creds, environ) if creds.password_env else None
    return DeviceEndpoint(device.name, device.address, device.port,
                          Credentials(creds.username, password, creds.key_file), device.quirks)


def handles_for(devices: Iterable[Device],
                environ: Mapping[str, str] | None = None) -> dict[str, DeviceHandle]:
    """A handle per device, by name."""
    return {d.name: DeviceHandle(d, endpoint_for(d, environ), get_codec(d.codec.value)) for d in devices}


def ssh_policy_for(topology: Topology, base: SshPolicy) -> SshPolicy:
    """The SSH policy with the topology's known_hosts when the caller gave none."""
    if base.known_hosts is not None or topology.known_hosts is None:
        return base
    return SshPolicy(known_hosts=topology.known_hosts, verify_host_keys=base.verify_host_keys,
                     look_for_keys=base.look_for_keys, allow_agent=base.allow_agent)


@contextmanager
def open_sessions(handles: Iterable[DeviceHandle], *, ssh: SshPolicy,
                  timeouts: Timeouts) -> Iterator[dict[str, DeviceSession]]:
    """Open a session to every device in parallel; close them all on exit (also when one fails)."""
    sessions = {h.name: DeviceSession(h.endpoint, ssh=ssh, timeouts=timeouts) for h in handles}
    try:
        if sessions:
            with ThreadPoolExecutor(max_workers=min(16, len(sessions))) as pool:
                futures = [pool.submit(s.open) for s in sessions.values()]
                errors = [f.exception() for f in futures]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
        yield sessions
    finally:
        for session in sessions.values():
            session.close()

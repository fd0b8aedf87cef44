"""Shared fixtures: the two-site example fabric served by netconf-sim on 127.0.0.1 ephemeral ports.

- ``two_site_fabric`` (session): one running fabric for read-mostly tests; tests that change a device's
  state must put it back or use ``fresh_fabric``.
- ``fresh_fabric`` (function): a factory ``fresh_fabric(source=EXAMPLE) -> Fabric`` giving a private
  fabric in this test's tmp_path, stopped after the test.
- ``nc_connect`` (function): ``nc_connect(fabric, "a-leaf1") -> ncclient Manager`` with host key
  verification ON against the fabric's known_hosts; closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_FABRIC = Path(__file__).resolve().parents[1] / "examples" / "two-site" / "fabric.yaml"


@pytest.fixture(autouse=True)
def _private_netmig_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own NETMIG_HOME, so the CLI's default journal is never shared between tests."""
    monkeypatch.setenv("NETMIG_HOME", str(tmp_path_factory.mktemp("netmig-home")))


@pytest.fixture(scope="session")
def fabricgen() -> Any:
    """benchmarks/fabricgen.py (generated many-VM fabrics and topologies), loaded once per session."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fabricgen.py"
    spec = importlib.util.spec_from_file_location("netmig_bench_fabricgen", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def schema_cache() -> Any:
    """One SchemaCache for the whole run: each profile's YANG is loaded once."""
    from netconf_sim.schema import SchemaCache

    return SchemaCache()


@pytest.fixture(scope="session")
def two_site_fabric(tmp_path_factory: pytest.TempPathFactory, schema_cache: Any) -> Iterator[Any]:
    """The examples/two-site fabric, running for the whole test session."""
    from netconf_sim.fabric import running_fabric

    state = tmp_path_factory.mktemp("two-site-state")
    with running_fabric(EXAMPLE_FABRIC, state, schemas=schema_cache) as fab:
        yield fab


@pytest.fixture
def fresh_fabric(tmp_path: Path, schema_cache: Any) -> Iterator[Callable[..., Any]]:
    """Factory for private fabrics (state in tmp_path) that are stopped when the test ends."""
    from netconf_sim.fabric import running_fabric

    with ExitStack() as stack:
        count = 0

        def start(source: Any = EXAMPLE_FABRIC) -> Any:
            nonlocal count
            count += 1
            state = tmp_path / f"fabric-state-{count}"
            return stack.enter_context(running_fabric(source, state, schemas=schema_cache))

        yield start


def connect_manager(fabric: Any, device: str, **kwargs: Any) -> Any:
    """An ncclient manager to ``device`` with host key checking against the fabric's known_hosts."""
    from ncclient import manager

    ep = fabric.endpoints[device]
    options: dict[str, Any] = {"host": ep.host, "port": ep.port, "username": ep.username,
                               "password": ep.password, "hostkey_verify": True,
                               "ssh_config": str(fabric.ssh_config), "allow_agent": False,
                               "look_for_keys": False, "timeout": 30}
    options.update(kwargs)
    return manager.connect(**options)


@pytest.fixture
def nc_connect() -> Iterator[Callable[..., Any]]:
    """``nc_connect(fabric, device, **kw)``: ncclient managers closed at the end of the test."""
    opened: list[Any] = []

    def connect(fabric: Any, device: str, **kwargs: Any) -> Any:
        mgr = connect_manager(fabric, device, **kwargs)
        opened.append(mgr)
        return mgr

    yield connect
    for mgr in opened:
        if mgr.connected:
            with suppress(Exception):  # the session may have been killed by the test
                mgr.close_session()

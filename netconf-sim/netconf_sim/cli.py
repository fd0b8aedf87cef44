"""``netconf-sim`` command line: serve a fabric of simulated NETCONF devices, or check a fabric file.

    netconf-sim serve FABRIC --state-dir DIR [--ephemeral] [-v]
        prints ``ready NAME HOST:PORT profile=PROFILE`` per device, then serves until SIGINT/SIGTERM
    netconf-sim check FABRIC
        validates the fabric file and every device's initial configuration against its YANG modules

Exit codes: 0 ok, 2 invalid fabric (one ``FILE:LINE: path: problem`` line each on stderr), 1 other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from netconf_sim.fabric import Fabric
from netconf_sim.fabricfile import FabricError, FabricSpec, load_fabric
from netconf_sim.rpcerror import SimRpcError

__all__ = ["main"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netconf-sim", description="Simulated NETCONF devices over SSH.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the devices of a fabric file")
    serve.add_argument("fabric", type=Path)
    serve.add_argument("--state-dir", type=Path, required=True,
                       help="host keys, datastores, known_hosts and devices.json live here")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--ephemeral", action="store_true", help="ignore the file's ports, bind free ones")
    check = sub.add_parser("check", help="validate a fabric file and its devices' initial configs")
    check.add_argument("fabric", type=Path)
    return parser


async def _serve(spec: FabricSpec, args: argparse.Namespace) -> None:
    fabric = Fabric(spec, args.state_dir, host=args.host, ephemeral=args.ephemeral)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fabric.start()
    try:
        for ep in fabric.endpoints.values():
            print(f"ready {ep.name} {ep.host}:{ep.port} profile={ep.profile}", flush=True)
        print(f"known_hosts {fabric.known_hosts}", flush=True)
        await stop.wait()
    finally:
        await fabric.stop()
        print("stopped", flush=True)


def _check(spec: FabricSpec) -> list[str]:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="netconf-sim-check-") as tmp:
        fabric = Fabric(spec, tmp)
        for dev in fabric.devices.values():
            try:
                dev.engine.validate("running")
            except SimRpcError as exc:
                where = f" at {exc.path}" if exc.path else ""
                text = f"{exc.tag}{where}: {exc.message or ''}".replace("\n", " ")
                problems.append(f"{spec.source}:0: devices.{dev.name}.config: {text}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netconf-sim`` console script."""
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec = load_fabric(args.fabric)
        if args.command == "check":
            problems = _check(spec)
            if problems:
                raise FabricError(problems)
            print(f"ok {args.fabric}: {len(spec.devices)} devices")
            return 0
        asyncio.run(_serve(spec, args))
        return 0
    except FabricError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI boundary: one line, no traceback
        log.debug("failure", exc_info=True)
        print(f"netconf-sim: error: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

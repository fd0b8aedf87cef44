"""netconf-sim under load: edit-config + commit round trip with 1 busy device and with 50 busy devices.

The simulator runs as ``netconf-sim serve`` in its own process (a generated fabric of N leaves, both
flavours, ephemeral ports on 127.0.0.1); the clients run in separate worker processes so their CPU does
not share the simulator's GIL. Two clients, neither paying ncclient's 100 ms poll: netmig's
``DeviceSession`` (SSH set up by ncclient, replies read by the caller, TCP_NODELAY) and a bare asyncssh client
(base:1.0 framing, no XML parsing of replies); both verify host keys against the fabric's known_hosts.
Each busy device has one session doing edit-config (candidate) + commit back to back for ``--seconds``;
the table shows round-trip percentiles, throughput and the simulator's CPU time per RPC
(from /proc, user + system). On demand, not collected by pytest::

    python benchmarks/bench_sim.py [--devices 50] [--seconds 5] [--client-procs 2] [--client both]

Machine load matters: on a 2-CPU box the clients and the simulator share the cores, so with 50 busy
devices the round trip is mostly queueing (Little's law: busy devices / pairs per second).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
NMD_NS = "urn:netmig:yang:netmig-device"
ACME_NS = "urn:acme:yang:acme-fabric"


def fabric_yaml(count: int) -> str:
    """A fabric of ``count`` leaves alternating IETF and acme flavour, one attached VM each."""
    lines = ["devices:"]
    for i in range(count):
        ietf = i % 2 == 0
        ports = ["eth1", "eth2", "eth3"] if ietf else ["ethernet-1/1", "ethernet-1/2", "ethernet-1/3"]
        lines += [f"  leaf{i:02d}:", f"    profile: {'ietf-leaf' if ietf else 'acme-leaf'}",
                  "    username: admin", f"    password: pw{i}", f"    ports: [{', '.join(ports)}]",
                  "    vms:", f"      - vm-id: vm-{i:02d}", f"        port: {ports[0]}",
                  f"        vlan: {100 + i}", f'        macs: ["52:54:00:00:10:{i:02x}"]',
                  f"        ips: [10.9.{i}.10]"]
    return "\n".join(lines) + "\n"


def edit_body(index: int, vlan: int) -> bytes:
    if index % 2 == 0:
        inner = (f'<interfaces xmlns="{IF_NS}"><interface><name>eth2</name>'
                 f'<access-vlan xmlns="{NMD_NS}">{vlan}</access-vlan></interface></interfaces>')
    else:
        inner = (f'<acme-fabric xmlns="{ACME_NS}"><port><name>ethernet-1/2</name><vlan>{vlan}</vlan>'
                 "</port></acme-fabric>")
    return f'<config xmlns="{NC_NS}">{inner}</config>'.encode()


@dataclass(frozen=True)
class Target:
    index: int
    name: str
    port: int
    password: str


def _client(target: Target, known_hosts: str, ready: Any, go: Any, seconds: float,
            out: list[float], errors: list[str]) -> None:
    from lxml import etree

    from netmig.netconf import DeviceSession
    from netmig.settings import Credentials, DeviceEndpoint, SshPolicy

    endpoint = DeviceEndpoint(target.name, "127.0.0.1", target.port, Credentials("admin", target.password))
    try:
        with DeviceSession(endpoint, ssh=SshPolicy(known_hosts=Path(known_hosts), allow_agent=False)) as s:
            configs = [etree.fromstring(edit_body(target.index, 1000 + v)) for v in range(50)]
            s.edit_config("candidate", configs[0])
            s.commit()  # warm-up
            ready.release()
            go.wait()
            deadline = time.monotonic() + seconds
            n = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                s.edit_config("candidate", configs[n % len(configs)])
                s.commit()
                out.append((time.perf_counter() - started) * 1000)
                n += 1
    except Exception as exc:  # reported by the main process
        errors.append(f"{target.name}: {type(exc).__name__}: {exc}")
        ready.release()


EOM = b"]]>]]>"
HELLO = (f'<hello xmlns="{NC_NS}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability>'
         "</capabilities></hello>").encode() + EOM


async def _raw_client(target: Target, known_hosts: str, ready: Any, go: Any, seconds: float,
                      out: list[float]) -> None:
    """A bare asyncssh NETCONF client (base:1.0 framing): the cheapest possible client per RPC."""
    import asyncio

    import asyncssh

    async with asyncssh.connect("127.0.0.1", target.port, username="admin", password=target.password,
                                known_hosts=known_hosts, client_keys=None, agent_path=None) as conn:
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        buf = b""

        async def message() -> bytes:
            nonlocal buf
            while EOM not in buf:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"{target.name}: session closed")
                buf += chunk
            msg, _, buf = buf.partition(EOM)
            return msg

        writer.write(HELLO)
        await message()
        msg_id = 0

        async def rpc(body: bytes) -> None:
            nonlocal msg_id
            msg_id += 1
            writer.write(f'<rpc xmlns="{NC_NS}" message-id="{msg_id}">'.encode() + body + b"</rpc>" + EOM)
            reply = await message()
            if b"<ok/>" not in reply and b":ok/>" not in reply:
                raise RuntimeError(f"{target.name}: {reply[:300]!r}")

        commit = b"<commit/>"
        edits = [b"<edit-config><target><candidate/></target>" + edit_body(target.index, 1000 + v)
                 + b"</edit-config>" for v in range(50)]
        await rpc(edits[0])
        await rpc(commit)
        ready()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await rpc(edits[n % len(edits)])
            await rpc(commit)
            out.append((time.perf_counter() - started) * 1000)
            n += 1


def _raw_worker(targets: list[Target], known_hosts: str, ready_q: Any, go: Any, seconds: float,
                result_q: Any) -> None:
    import asyncio

    samples: list[float] = []
    errors: list[str] = []

    async def run() -> None:
        left = len(targets)

        def ready() -> None:
            nonlocal left
            left -= 1
            if left == 0:
                ready_q.put(len(targets))

        results = await asyncio.gather(*(_raw_client(t, known_hosts, ready, go, seconds, samples)
                                         for t in targets), return_exceptions=True)
        for t, r in zip(targets, results, strict=True):
            if isinstance(r, BaseException):
                errors.append(f"{t.name}: {type(r).__name__}: {r}")
        if errors and left:
            ready_q.put(len(targets))

    asyncio.run(run())
    result_q.put((samples, errors))


def _worker(targets: list[Target], known_hosts: str, ready_q: Any, go: Any, seconds: float,
            result_q: Any) -> None:
    ready = threading.Semaphore(0)
    samples: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(t, known_hosts, ready, go, seconds, samples, errors))
               for t in targets]
    for th in threads:
        th.start()
    for _ in targets:
        ready.acquire()
    ready_q.put(len(targets))
    for th in threads:
        th.join()
    result_q.put((samples, errors))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(client: str, targets: list[Target], known_hosts: str, server_pid: int, seconds: float,
              procs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready_q, result_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = max(1, min(procs, len(targets)))
    shares = [targets[i::procs] for i in range(procs)]
    fn = _raw_worker if client == "asyncssh" else _worker
    workers = [ctx.Process(target=fn, args=(share, known_hosts, ready_q, go, seconds, result_q))
               for share in shares]
    for w in workers:
        w.start()
    for _ in workers:
        ready_q.get(timeout=120)
    cpu0, t0 = _cpu_s(server_pid), time.monotonic()
    go.set()
    results = [result_q.get(timeout=seconds + 120) for _ in workers]
    cpu1, t1 = _cpu_s(server_pid), time.monotonic()
    for w in workers:
        w.join(30)
    samples = [x for r in results for x in r[0]]
    errors = [e for r in results for e in r[1]]
    if errors or not samples:
        raise SystemExit("benchmark failed:\n" + "\n".join(errors or ["no samples"]))
    rpcs = 2 * len(samples)
    return {"client": client, "busy": len(targets), "pairs": len(samples), "p50": statistics.median(samples),
            "p90": _pct(samples, 0.9), "p99": _pct(samples, 0.99), "rate": len(samples) / (t1 - t0),
            "cpu_ms_rpc": (cpu1 - cpu0) * 1000 / rpcs, "server_cpu": (cpu1 - cpu0) / (t1 - t0)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def start_server(state: Path, count: int) -> tuple[subprocess.Popen[str], list[Target]]:
    fabric = state / "fabric.yaml"
    fabric.write_text(fabric_yaml(count))
    proc = subprocess.Popen([sys.executable, "-m", "netconf_sim.cli", "serve", str(fabric), "--state-dir",
                             str(state / "st"), "--ephemeral"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for _ in range(count):
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            proc.kill()
            raise SystemExit(f"netconf-sim did not start: {line!r}")
    records = json.loads((state / "st" / "devices.json").read_text())["devices"]
    targets = [Target(int(r["name"][4:]), r["name"], int(r["port"]), r["password"]) for r in records]
    return proc, sorted(targets, key=lambda t: t.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="busy time per phase")
    parser.add_argument("--client-procs", type=int, default=2, help="client worker processes, N-device phase")
    parser.add_argument("--client", choices=["netmig", "asyncssh", "both"], default="both")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, targets = start_server(Path(tmp), args.devices)
        known_hosts = str(Path(tmp) / "st" / "known_hosts")
        try:
            clients = ["netmig", "asyncssh"] if args.client == "both" else [args.client]
            rows = [run_phase(c, chosen, known_hosts, proc.pid, args.seconds, procs)
                    for c in clients
                    for chosen, procs in ((targets[:1], 1), (targets, args.client_procs))]
        finally:
            proc.terminate()
            proc.wait(30)
    head = ("client", "busy devices", "edit+commit p50 ms", "p90 ms", "p99 ms", "pairs/s",
            "server CPU ms/RPC", "server CPU use")
    table = [head] + [(r["client"], str(r["busy"]), f"{r['p50']:.2f}", f"{r['p90']:.2f}", f"{r['p99']:.2f}",
                       f"{r['rate']:.0f}", f"{r['cpu_ms_rpc']:.2f}", f"{r['server_cpu'] * 100:.0f}%")
                      for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"({args.devices} devices in one netconf-sim process, {args.seconds:g} s per phase, "
          f"{args.client_procs} client processes for the {args.devices}-device phase, {os.cpu_count()} CPUs)")
    print("client netmig = netmig DeviceSession (ncclient + wake-up fix), asyncssh = bare asyncssh, base:1.0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

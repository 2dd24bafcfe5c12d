"""A far-away network on loopback, for the site bench: delaying TCP proxies and black holes.

Reads a JSON spec and serves it until stdin closes (or SIGTERM):

- ``proxies``: ``{"host": "127.1.0.1", "port": 2222, "to": ["127.0.0.1", 40022],
  "delay_ms": 180}`` listens on host:port and forwards every connection to ``to``, each
  byte held ``delay_ms / 2`` in each direction (so a round trip takes ``delay_ms`` longer),
  in order, without limiting throughput: a WAN link's latency, not its bandwidth.
- ``blackholes``: ``{"host": "127.0.0.1", "port": 40100}``: a listening socket whose accept
  queue is kept full and never accepted, so the kernel drops every new SYN: a connect there
  times out, as to a host that went silent.

Prints ``READY`` once every socket listens. Used when network namespaces with netem
cannot be had (netem is a kernel module many VMs and containers lack).

    .venv/bin/python bench/netsim.py spec.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import Any


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def pump_out() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    out = asyncio.create_task(pump_out())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                break
        await out
    except (ConnectionError, OSError):
        out.cancel()
    finally:
        writer.close()


def _proxy(to: tuple[str, int], delay: float) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*to)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay), return_exceptions=True
        )

    return handle


def _blackhole(host: str, port: int) -> list[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(0)
    fillers = []
    for _ in range(2):  # backlog 0 holds one; the second makes sure it is full
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((host, port))
        fillers.append(filler)
    return [listener, *fillers]


async def serve(spec: dict[str, Any]) -> None:
    servers = []
    for p in spec.get("proxies", []):
        handler = _proxy((p["to"][0], int(p["to"][1])), p["delay_ms"] / 2000)
        servers.append(await asyncio.start_server(handler, p["host"], p["port"], backlog=1024))
    held = [s for b in spec.get("blackholes", []) for s in _blackhole(b["host"], b["port"])]
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read(1) or done.set())
    await done.wait()
    for server in servers:
        server.close()
    for s in held:
        s.close()


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    # Two sockets per proxied connection plus a listener per endpoint: past 1024 soon.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A light HTTP/1.1 load generator: ``concurrency`` keep-alive connections on one asyncio loop, each
sending the same pre-encoded request as soon as its previous answer is in (a closed loop, like wrk).

Not httpx: a thread per connection with httpx costs about a millisecond of client CPU per request,
which on a 2-core machine is CPU taken from the server under test and shows up as server slowness.
Here a request costs the client one write and two reads of bytes it already framed.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

__all__ = ["closed_loop"]


async def _connection(host: str, port: int, request: bytes, remaining: list[int], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while remaining[0] > 0:
            remaining[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def closed_loop(url: str, path: str, body: bytes, concurrency: int, total: int) -> tuple[list[float], float]:
    """POST ``body`` (JSON) to ``url + path`` ``total`` times over ``concurrency`` connections; returns the
    sorted latencies in seconds and the wall time."""
    parts = urlsplit(url)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    remaining = [total]  # requests not yet sent, shared by the connections (one loop: no lock needed)

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(parts.hostname or "127.0.0.1", parts.port or 80, request, remaining, latencies)
                for _ in range(concurrency)
            )
        )
        return time.perf_counter() - start

    wall = asyncio.run(run())
    return sorted(latencies), wall

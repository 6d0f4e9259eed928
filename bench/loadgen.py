"""The load generator: its own process (``python -m bench.loadgen``), HTTP/1.1 keep-alive over loopback.

One generator for every target (bare aiohttp, the receiver, the sandbox API, the real kube-apiserver), so ratios
compare servers, not clients. Requests are built (and webhooks signed) before the clock starts and written to a
JSON-lines file; the generator sends them as pre-encoded bytes on raw asyncio streams (uvloop when installed) and
reads each answer's status line, headers and body (length-delimited or chunked). Two modes:

- closed loop (``--concurrency C``): C connections, one request in flight on each: the ceiling;
- open loop (``--rate R``): request *i* is due at ``t0 + i/R``; its latency counts from when it was due, so a
  server that falls behind is not flattered by the client waiting (no coordinated omission).

Every run is bounded by the number of requests and by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stats import latency_summary

TOKEN_ENV = "BENCH_LOADGEN_TOKEN"  # a bearer token for the server (the sandbox Kubernetes API), if it needs one


def encode(host: str, method: str, path: str, headers: dict[str, str], body: str) -> bytes:
    data = body.encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding" and value.strip().lower() == b"chunked":
            return status, await read_chunked(reader)  # Go's net/http (the real kube-apiserver), bodies > 2 KiB
    return status, await reader.readexactly(length) if length else b""


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # the chunk's CRLF
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
        pass
    return bytes(body)


def outcome_of(status: int, body: bytes) -> str:
    """The receiver's ``outcome`` field, or ``HTTP <status>`` for other servers."""
    if body.startswith(b"{") and b'"outcome"' in body:
        try:
            return str(json.loads(body).get("outcome"))
        except ValueError:
            pass
    return f"HTTP {status}"


async def run(url: str, requests: list[dict[str, Any]], *, concurrency: int, rate: float | None, duration: float,
              count: int | None = None, token: str | None = None) -> dict[str, Any]:
    """Send ``count`` requests (cycling through ``requests``; default: each once)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False  # loopback only; the sandbox's own CA
        context.verify_mode = ssl.CERT_NONE
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    wire = [encode(f"{host}:{port}", r.get("method", "POST"), r["path"], {**auth, **r.get("headers", {})},
                   r.get("body", "")) for r in requests]
    expected = [r.get("expect") for r in requests]
    total = count or len(wire)

    latencies: list[float] = []
    sent_at: list[float | None] = [None] * total  # wall clock when each request was due (open loop) or sent
    done_at: list[float | None] = [None] * total
    outcomes: Counter[str] = Counter()
    unexpected = 0
    next_index = 0
    clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution
    connections = [await asyncio.open_connection(host, port, ssl=context) for _ in range(concurrency)]
    t0 = clock()
    wall0 = time.time()
    deadline = t0 + duration

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_index, unexpected
        while next_index < total:
            index = next_index
            next_index += 1
            due = t0 + index / rate if rate else clock()
            if due > deadline:
                return
            if rate and due > clock():
                await asyncio.sleep(due - clock())
            started = due if rate else clock()
            writer.write(wire[index % len(wire)])
            status, body = await read_answer(reader)
            finished = clock()
            latencies.append(finished - started)
            sent_at[index] = wall0 + (started - t0)
            done_at[index] = wall0 + (finished - t0)
            outcome = outcome_of(status, body)
            outcomes[outcome] += 1
            want = expected[index % len(wire)]
            unexpected += want is not None and want not in (outcome, f"HTTP {status}")

    await asyncio.gather(*(worker(r, w) for r, w in connections))
    wall = clock() - t0
    for _, writer in connections:
        writer.close()
    return {**latency_summary(latencies, wall), "concurrency": concurrency, "rate": rate,
            "outcomes": dict(outcomes), "unexpected": unexpected,
            "sent_at": sent_at, "done_at": done_at}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="http(s)://host:port of the server (paths come with the requests)")
    parser.add_argument("requests", type=Path, help="JSON lines: method, path, headers, body, expect")
    parser.add_argument("out", type=Path, help="where the JSON result is written")
    parser.add_argument("--concurrency", type=int, default=1, help="connections (one request in flight on each)")
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="stop sending after this many seconds")
    parser.add_argument("--count", type=int, default=None, help="requests to send, cycling (default: each once)")
    args = parser.parse_args(argv)
    requests = [json.loads(line) for line in args.requests.read_text().splitlines() if line]
    try:
        import uvloop  # type: ignore[import-not-found]
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args.url, requests, concurrency=args.concurrency, rate=args.rate, duration=args.duration,
                        count=args.count, token=os.environ.get(TOKEN_ENV)))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

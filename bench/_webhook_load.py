"""Child process of bench_webhooks: the load generator, in its own process (no GIL shared with
the server measured).

    python _webhook_load.py '{"url": ..., "events": "events.json", "secret": ..., "concurrency": 8,
                              "max_seconds": 10, "max_count": 5000, "cycle": false}'

Sends each event of the file (psp_mock's own events, as JSON bodies), signed at send time like
psp_mock signs them, over ``concurrency`` keep-alive connections (one asyncio task each), until
every event was sent (``cycle``: round and round until the count or time bound), and prints one
JSON line: counts by status, the ids answered 200, elapsed seconds and this process's CPU seconds
(to tell whether the load generator itself was the limit).

The HTTP client is a minimal keep-alive HTTP/1.1 client on asyncio streams, not httpx: with
httpx.AsyncClient the generator used about 1 ms of CPU per request and capped the bare endpoint
at the generator's own speed; this one uses a small fraction of that (the CPU figure printed
shows it), so the bare endpoint, not the client, is the limit.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from payweave.plugins.psp_mock.webhooks import SIGNATURE_HEADER, signature


class Connection:
    """One keep-alive HTTP/1.1 connection: pre-encoded requests, Content-Length responses.

    Deliberately minimal (no TLS, no chunked bodies, no redirects) so the load generator spends
    as little CPU per request as possible and the server, not the client, is the limit."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{head}content-length: {len(body)}\r\n\r\n"
                          .encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding":
                raise ValueError("chunked responses are not supported by this load generator")
        if length:
            await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def load(spec: dict[str, Any]) -> dict[str, Any]:
    with open(spec["events"]) as f:
        events = json.load(f)
    bodies = [(e["id"], json.dumps(e, separators=(",", ":"), sort_keys=True).encode()) for e in events]
    secret = spec["secret"]
    total = spec["max_count"] if spec.get("cycle") else min(spec["max_count"], len(bodies))
    statuses: Counter[int] = Counter()
    ok_ids: list[str] = []
    errors: Counter[str] = Counter()
    next_index = 0
    url = urlsplit(spec["url"])
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    deadline = start + spec["max_seconds"]

    async def worker() -> None:
        nonlocal next_index
        conn = Connection(url.hostname or "127.0.0.1", url.port or 80)
        try:
            while next_index < total and time.perf_counter() < deadline:
                event_id, body = bodies[next_index % len(bodies)]
                next_index += 1
                t = int(time.time())
                headers = {"content-type": "application/json", SIGNATURE_HEADER: f"t={t},v1={signature(secret, t, body)}"}
                try:
                    status = await conn.post(url.path, body, headers)
                except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    await conn.close()
                    continue
                statuses[status] += 1
                if status == 200:
                    ok_ids.append(event_id)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"elapsed": elapsed, "sent": sum(statuses.values()) + sum(errors.values()), "statuses": dict(statuses),
            "errors": dict(errors), "ok_ids": ok_ids, "cpu_seconds": cpu}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(load(json.loads(sys.argv[1])))), flush=True)

"""Web benchmark: the preference page and one-click unsubscribe under a local load generator.

Run from the repository root: `python bench/bench_web.py` (add `--json` for JSON;
`--requests`, `--concurrency`, `--subscribers` to change the load).

Setup, not measured: a temporary folder with a SQLite database, N active subscribers
(`upsert_subscribers`), and `newsletter serve` started as its own process (one uvicorn
worker, as the README recommends), so the load generator does not share its CPU time.

Measured, from an asyncio httpx client keeping `--concurrency` requests in flight over
keep-alive connections:
1. `GET /preferences/{token}` for random subscribers (database read, CSRF token, page);
2. `POST /unsubscribe/{token}` with `List-Unsubscribe=One-Click`, each for a different
   subscriber, so every request really unsubscribes (a write and a consent row).
Reported: requests per second, p50 and p99 latency in milliseconds, and non-200 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import subscribers as people
from newsletter import issues
from newsletter.config import load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def load(urls: list[tuple[str, str]], concurrency: int) -> dict[str, Any]:
    """Send every (method, url), `concurrency` at a time; latencies in ms."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(urls))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal failures
            while queue:
                method, url = queue.pop()
                started = time.perf_counter()
                if method == "POST":
                    response = await client.post(
                        url, content=b"List-Unsubscribe=One-Click",
                        headers={"content-type": "application/x-www-form-urlencoded"},
                    )
                else:
                    response = await client.get(url)
                latencies.append((time.perf_counter() - started) * 1000)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2], 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "non_200": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.requests > args.subscribers:
        parser.error("--requests may not exceed --subscribers (each one-click request unsubscribes someone new)")

    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        port = free_port()
        config = Path(folder) / "newsletter.toml"
        config.write_text(
            f'[site]\nbase_url = "http://127.0.0.1:{port}"\n[database]\nurl = "sqlite:///{folder}/bench.db"\n'
            f'[delivery]\noutbox_dir = "{folder}/outbox"\n',
            encoding="utf-8",
        )
        settings = load_settings(config, environ={})
        engine = issues.open_database(settings)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            people.upsert_subscribers(
                conn, (people.NewSubscriber(f"reader{n}@example.com", ("news",)) for n in range(args.subscribers)), now=now
            )
            tokens = list(conn.execute(people.subscribers.select().with_only_columns(people.subscribers.c.token)).scalars())
        engine.dispose()

        env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench-secret-key-0123456789"}
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit("newsletter serve did not start") from None
                    time.sleep(0.1)
            rng = random.Random(1)
            # A short warm-up: templates compiled, connections open.
            asyncio.run(load([("GET", f"{base}/preferences/{rng.choice(tokens)}") for _ in range(100)], args.concurrency))
            preferences = asyncio.run(
                load([("GET", f"{base}/preferences/{rng.choice(tokens)}") for _ in range(args.requests)], args.concurrency)
            )
            chosen = rng.sample(tokens, args.requests)
            one_click = asyncio.run(load([("POST", f"{base}/unsubscribe/{t}") for t in chosen], args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)

    result = {
        "subscribers": args.subscribers,
        "concurrency": args.concurrency,
        "database": "sqlite",
        "cpus": os.cpu_count(),
        "preference_page": preferences,
        "one_click_unsubscribe": one_click,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.subscribers:,} subscribers, {args.concurrency} requests in flight, SQLite, {os.cpu_count()} CPUs")
    for name in ("preference_page", "one_click_unsubscribe"):
        r = result[name]
        print(
            f"{name:24} {r['requests']:>6} requests  {r['requests_per_second']:>8.1f} req/s  "
            f"p50 {r['p50_ms']:>6.1f} ms  p99 {r['p99_ms']:>6.1f} ms  non-200: {r['non_200']}"
        )


if __name__ == "__main__":
    main()

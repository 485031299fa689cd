"""Enumeration benchmark: does the subscribe answer's timing tell who is subscribed?

Run from the repository root: `python bench/bench_enumeration.py` (add `--json` for JSON;
`--per-state` to change the number of posts per state, `--pause` the seconds between
posts, `--postgres URL` to use a new schema on a PostgreSQL server instead of SQLite).

Setup, not measured: a temporary folder with a SQLite database holding `--per-state`
addresses in each state an attacker might want to tell apart: pending (asked, not
confirmed), active, unsubscribed, suppressed (bounced, on the suppression list), erased
after being active, erased after bouncing; and as many addresses never seen ("new").
`newsletter serve` runs as its own process (one uvicorn worker), with the per-IP limit
raised so the bench is not refused.

Measured: every address is posted once to `POST /subscribe` as a browser's form would,
one request at a time over one keep-alive connection, in a shuffled order of the states
(so drift on the machine spreads over all of them), with `--pause` seconds between
requests so the work a subscribe does after its answer has finished before the next one is
timed. Reported per state: the median and p90 of the time from sending the request to
having read the whole answer, and the status codes seen. The goal (issue 16, part 4):
every state's median within 10% of every other's, and the same status and body for all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import subscribers as people
from bench_send import scratch_database
from bench_web import free_port
from newsletter import issues
from newsletter.config import load_settings

STATES = ("new", "pending", "active", "unsubscribed", "suppressed", "erased-active", "erased-bounced")


def prepare(engine: Any, per_state: int) -> dict[str, list[str]]:
    """Addresses in each state, stored as the product stores them."""
    now = datetime.now(UTC)
    addresses = {state: [f"{state}-{n}@example.com" for n in range(per_state)] for state in STATES}
    with engine.begin() as conn:
        stored = [a for state in STATES if state != "new" for a in addresses[state]]
        people.upsert_subscribers(conn, (people.NewSubscriber(a, ("news",), name="Reader") for a in stored), now=now)
        for address in addresses["pending"]:
            people.set_status(conn, people.get_subscriber(conn, address).id, people.Status.PENDING, now=now)
        for address in addresses["unsubscribed"]:
            people.set_status(conn, people.get_subscriber(conn, address).id, people.Status.UNSUBSCRIBED, now=now)
        for address in addresses["suppressed"] + addresses["erased-bounced"]:
            people.set_status(conn, people.get_subscriber(conn, address).id, people.Status.BOUNCED, now=now)
            people.suppress(conn, address, reason="bounced", now=now)
        for address in addresses["erased-active"] + addresses["erased-bounced"]:
            people.erase(conn, address, now=now)
    return addresses


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-state", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--postgres", metavar="URL", help="Use this PostgreSQL server (a new schema) instead of SQLite.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with scratch_database("bench-enum-", args.postgres) as (folder, database_url):
        port = free_port()
        config = Path(folder) / "newsletter.toml"
        config.write_text(
            f'[site]\nbase_url = "http://127.0.0.1:{port}"\n[database]\nurl = "{database_url}"\n'
            f'[delivery]\noutbox_dir = "{folder}/outbox"\n[web]\nsubscribe_per_ip = 1000000\n',
            encoding="utf-8",
        )
        settings = load_settings(config, environ={})
        engine = issues.open_database(settings)
        addresses = prepare(engine, args.per_state)
        engine.dispose()
        posts = [(state, address) for state in STATES for address in addresses[state]]
        random.Random(1).shuffle(posts)

        env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench-secret-key-0123456789"}
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        timings: dict[str, list[float]] = {state: [] for state in STATES}
        statuses: dict[str, set[int]] = {state: set() for state in STATES}
        bodies: dict[str, set[int]] = {state: set() for state in STATES}
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise SystemExit("newsletter serve did not start") from None
                        time.sleep(0.1)
                # A warm-up: templates compiled, the connection and the database open.
                for n in range(50):
                    client.post("/subscribe", data={"email": f"warm-{n}@example.com", "name": "Warm"})
                    time.sleep(args.pause)
                for state, address in posts:
                    started = time.perf_counter()
                    answer = client.post("/subscribe", data={"email": address, "name": "Reader", "sections": "news"})
                    timings[state].append((time.perf_counter() - started) * 1000)
                    statuses[state].add(answer.status_code)
                    bodies[state].add(len(answer.content))
                    time.sleep(args.pause)
        finally:
            server.terminate()
            server.wait(timeout=10)
        # What the posts did, to show the work after the answer really ran: the new and
        # erased-active addresses asked for a confirmation; the others were left alone.
        confirmations = sum(1 for _ in Path(folder, "outbox").rglob("*.eml"))
        engine = issues.open_database(settings)
        with engine.connect() as conn:
            counts = {str(status): n for status, n in people.count_by_status(conn).items()}
        engine.dispose()

    medians = {state: statistics.median(timings[state]) for state in STATES}
    spread = max(medians.values()) / min(medians.values()) - 1
    result = {
        "per_state": args.per_state,
        "pause_seconds": args.pause,
        "database": "postgresql" if args.postgres else "sqlite",
        "cpus": os.cpu_count(),
        "states": {
            state: {
                "median_ms": round(medians[state], 3),
                "p90_ms": round(quantile(timings[state], 0.9), 3),
                "statuses": sorted(statuses[state]),
                "body_lengths": sorted(bodies[state]),
            }
            for state in STATES
        },
        "confirmation_emails": confirmations,
        "subscribers_by_status": counts,
        "largest_median_over_smallest": round(1 + spread, 3),
        "goal_met": spread <= 0.10 and len({tuple(r) for r in statuses.values()}) == 1,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"POST /subscribe, {args.per_state} addresses per state, one at a time, "
          f"{result['database']}, {os.cpu_count()} CPUs")
    print(f"{'state':16} {'median ms':>10} {'p90 ms':>8}  status  body bytes")
    for state, row in result["states"].items():  # type: ignore[union-attr]
        print(f"{state:16} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f}  "
              f"{','.join(map(str, row['statuses'])):6}  {','.join(map(str, row['body_lengths']))}")
    print(f"confirmation emails written: {confirmations}; subscribers by status: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"largest median / smallest: {result['largest_median_over_smallest']:.3f} "
          f"(goal: at most 1.10) -> {'met' if result['goal_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()

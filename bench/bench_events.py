"""Event Webhook benchmark: events taken in per second, in signed batches of 1,000, and
the time of the statistics query with millions of events stored.

Run from the repository root: `python bench/bench_events.py --subscribers 100000 --stored 5000000`
(add `--json` for JSON, `--postgres URL` to use PostgreSQL instead of the embedded SQLite).

Setup, not measured: the 21-article, 64-segment issue of `bench_send.py` sent to N
subscribers through the SendGrid transport and the stand-in, so the send ledger holds
every recipient with their batch.

Measured:
1. Ingest: `--ingest` events (default 200,000) for those recipients, as SendGrid reports
   them (processed, delivered, opens, clicks on the issue's articles, a few bounces and
   unsubscribes), posted in batches of 1,000 over HTTP to `POST /webhooks/sendgrid` of
   `newsletter serve` (one uvicorn worker, its own process, started for the run), one
   request after another on one keep-alive connection (`--concurrency N`: N in flight), each batch signed with a P-256 key
   made for the run: signature check, JSON parsing, storing, aggregates, effects and
   commit. The bodies are encoded and signed before the clock starts; the server's own CPU
   time is read from /proc.
2. Stored events: the raw event table is then filled up to `--stored` rows (default
   5,000,000) with one bulk INSERT … SELECT (not measured, not through the webhook), all
   attributed to the issue, so every index the query could touch is that large.
3. Statistics: `stats.issue_stats` for the issue (what `newsletter stats` prints),
   `--repeat` times (default 5); the median and the slowest are reported.
4. Pruning: `events.prune_events` deleting every stored raw event, once.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_send import StandIn, add_subscribers, prepare_issue, scratch_database  # noqa: E402
from bench_web import free_port, wait_for  # noqa: E402
from newsletter import issues, stats  # noqa: E402
from newsletter.config import Settings  # noqa: E402
from newsletter.events import prune_events  # noqa: E402
from newsletter.models import Issue  # noqa: E402
from newsletter.tables import articles, deliveries, delivery_events, issue_articles  # noqa: E402

BATCH = 1000


class Signer:
    """Signs a body as SendGrid's Signed Event Webhook does."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        signature = self.key.sign(stamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode("ascii"),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


def make_events(engine: Engine, issue: Issue, count: int, *, now: datetime) -> list[dict[str, Any]]:
    """`count` events for the issue's recipients, in the order SendGrid would send them."""
    rng = random.Random(5)
    with engine.connect() as conn:
        recipients = conn.execute(
            select(deliveries.c.subscriber_id, deliveries.c.batch_id).where(deliveries.c.issue_id == issue.id)
        ).all()
        urls = list(conn.execute(
            select(articles.c.url).join(issue_articles, issue_articles.c.article_id == articles.c.id)
            .where(issue_articles.c.issue_id == issue.id)
        ).scalars())
    start = int(now.timestamp())
    out: list[dict[str, Any]] = []

    def event(kind: str, subscriber: int, batch: int, offset: int, **extra: Any) -> None:
        out.append({
            "email": f"reader{subscriber - 1:07d}@example.com", "event": kind, "timestamp": start + offset,
            "sg_event_id": uuid.uuid4().hex, "sg_message_id": f"bench{batch}.filter0001.{subscriber}.0",
            "issue_id": str(issue.id), "batch_id": str(batch), "subscriber_id": str(subscriber), **extra,
        })

    while len(out) < count:
        for subscriber, batch in recipients:
            event("processed", subscriber, batch, 0)
            roll = rng.random()
            if roll < 0.01:
                event("bounce", subscriber, batch, 30, type="bounce", reason="550 5.1.1 unknown user")
                continue
            event("delivered", subscriber, batch, 20)
            if roll < 0.6:
                event("open", subscriber, batch, rng.randrange(60, 72 * 3600))
            if roll < 0.25:
                event("click", subscriber, batch, rng.randrange(120, 72 * 3600), url=rng.choice(urls))
            if roll > 0.998:
                event("group_unsubscribe", subscriber, batch, 4000, asm_group_id=1)
            if len(out) >= count:
                break
    return out[:count]


def signed_batches(signer: Signer, events: list[dict[str, Any]]) -> list[tuple[bytes, dict[str, str]]]:
    """The events as request bodies of 1,000, each with its signature headers."""
    out = []
    for start in range(0, len(events), BATCH):
        body = json.dumps(events[start : start + BATCH]).encode("utf-8")
        out.append((body, signer.headers(body)))
    return out


def post_all(base_url: str, batches: list[tuple[bytes, dict[str, str]]], *, concurrency: int = 1) -> list[float]:
    """Post the signed batches, `concurrency` requests in flight (each on its own
    keep-alive connection, taking the next batch when its answer is in); the seconds
    each request took."""
    times: list[float] = []
    pending = iter(enumerate(batches))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            while True:
                with lock:
                    number, (body, headers) = next(pending, (-1, (b"", {})))
                if number < 0:
                    return
                began = time.perf_counter()
                answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
                times.append(time.perf_counter() - began)
                if answer.status_code != 200:
                    raise SystemExit(f"batch {number}: {answer.status_code} {answer.text[:300]}")

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return times


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(folder: Path, environ: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`newsletter serve` (one worker) on a free port; the process and its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(folder / "newsletter.toml"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **environ}, cwd=folder,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/healthz", process)
    return process, base


def fill_events(engine: Engine, issue: Issue, total: int, *, now: datetime) -> float:
    """Bulk-insert synthetic raw events until the table holds `total` rows; seconds taken."""
    began = time.perf_counter()
    with engine.begin() as conn:
        have = conn.execute(select(func.count()).select_from(delivery_events)).scalar_one()
        missing = total - have
        if missing <= 0:
            return 0.0
        kinds = "CASE n % 4 WHEN 0 THEN 'delivered' WHEN 1 THEN 'opened' WHEN 2 THEN 'processed' ELSE 'clicked' END"
        stamp = now.replace(tzinfo=None).isoformat(sep=" ")
        if conn.dialect.name == "postgresql":
            numbers = f"SELECT generate_series(1, {missing}) AS n"
            stamp_sql = f"TIMESTAMPTZ '{stamp}+00'"
        else:
            numbers = f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {missing}) SELECT n FROM seq"
            stamp_sql = f"'{stamp}'"
        conn.execute(text(
            "INSERT INTO delivery_events (event_key, kind, provider_event, issue_id, batch_id, subscriber_id, known, "
            "occurred_at, received_at, url, reason) "
            f"SELECT 'fill-' || n, {kinds}, 'filler', {issue.id}, 1 + n % 100, 1 + n % 100000, TRUE, "
            f"{stamp_sql}, {stamp_sql}, '', '' FROM ({numbers}) AS numbers"
        ))
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE delivery_events"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


def time_stats(engine: Engine, issue: Issue, settings: Settings, repeat: int) -> tuple[list[float], stats.IssueStats]:
    """`stats.issue_stats` run `repeat` times on fresh connections; the seconds of each."""
    times: list[float] = []
    result = None
    for _ in range(repeat):
        began = time.perf_counter()
        with engine.connect() as conn:
            result = stats.issue_stats(conn, issue, section_names=settings.section_names())
        times.append(time.perf_counter() - began)
    assert result is not None
    return times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100_000, help="Recipients of the issue (default 100,000).")
    parser.add_argument("--ingest", type=int, default=200_000, help="Events posted through the webhook (default 200,000).")
    parser.add_argument("--stored", type=int, default=5_000_000, help="Raw events stored for the statistics query (default 5,000,000).")
    parser.add_argument("--repeat", type=int, default=5, help="Runs of the statistics query (default 5).")
    parser.add_argument("--postgres", metavar="URL", help="Use this PostgreSQL server (a new schema) instead of SQLite.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    parser.add_argument("--concurrency", type=int, default=1, help="Requests in flight at once (default 1: one after another).")
    parser.add_argument("--py-spy", metavar="FILE", dest="py_spy",
                        help="Sample the server's threads with py-spy while posting (pip install py-spy), collapsed stacks to FILE.")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)
    standin = StandIn(50)
    try:
        with scratch_database("bench-events-", args.postgres) as (folder, database_url):
            return run(args, folder, database_url, standin, console)
    finally:
        standin.stop()


def run(args: argparse.Namespace, folder: Path, database_url: str, standin: StandIn, console: Console) -> int:
    now = datetime.now(UTC)
    began = time.perf_counter()
    settings, engine, built = prepare_issue(folder, database_url, standin.url, now=now)
    add_subscribers(engine, args.subscribers, now=now)
    transport = issues.make_transport(settings)
    report = issues.send_pending(engine, settings, built.issue, transport=transport)
    transport.close()
    issue = issues.find_issue(engine, built.issue.slug)
    signer = Signer()
    events = make_events(engine, issue, args.ingest, now=now)
    server, base_url = start_server(folder, {
        "NEWSLETTER_DATABASE__URL": database_url, "NEWSLETTER_SECRET_KEY": "bench-secret-" + uuid.uuid4().hex,
        "NEWSLETTER_SENDGRID__WEBHOOK_PUBLIC_KEY": signer.public_key, "SENDGRID_API_KEY": "SG.bench",
    })
    try:
        batches = signed_batches(signer, events)
        setup_s = time.perf_counter() - began
        console.print(f"Setup: {report.recipients_sent:,} recipients sent, {len(events):,} events made in {setup_s:.1f} s. Posting…")
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(["py-spy", "record", "-p", str(server.pid), "-r", "250", "-f", "raw", "--threads",
                                    "-o", args.py_spy], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        server_cpu = cpu_seconds(server.pid)
        cpu_before = os.times()
        started = time.perf_counter()
        times = post_all(base_url, batches, concurrency=args.concurrency)
        ingest_s = time.perf_counter() - started
        cpu_after = os.times()
        server_cpu = cpu_seconds(server.pid) - server_cpu
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=30)

    before_fill = time_stats(engine, issue, settings, args.repeat)
    console.print(f"Ingested in {ingest_s:.1f} s. Filling the raw events up to {args.stored:,}…")
    fill_s = fill_events(engine, issue, args.stored, now=now)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(delivery_events)).scalar_one()
    query_times, result = time_stats(engine, issue, settings, args.repeat)
    began = time.perf_counter()
    with engine.begin() as conn:
        pruned = prune_events(conn, before=datetime.now(UTC).replace(year=now.year + 1))
    prune_s = time.perf_counter() - began
    engine.dispose()

    summary: dict[str, Any] = {
        "database": "postgresql" if args.postgres else "sqlite",
        "recipients": report.recipients_sent,
        "events_ingested": len(events),
        "batch_size": BATCH,
        "concurrency": args.concurrency,
        "ingest_seconds": round(ingest_s, 2),
        "events_per_second": round(len(events) / ingest_s),
        "request_ms_median": round(statistics.median(times) * 1000, 1),
        "request_ms_max": round(max(times) * 1000, 1),
        "server_cpu_seconds": round(server_cpu, 1),
        "client_cpu_seconds": round(cpu_after.user - cpu_before.user + cpu_after.system - cpu_before.system, 1),
        "raw_events_stored": stored,
        "fill_seconds": round(fill_s, 1),
        "stats_ms_median_before_fill": round(statistics.median(before_fill[0]) * 1000, 1),
        "raw_events_before_fill": len(events),
        "stats_ms_median": round(statistics.median(query_times) * 1000, 1),
        "stats_ms_max": round(max(query_times) * 1000, 1),
        "stats_total": result.total.__dict__,
        "prune_seconds": round(prune_s, 1),
        "pruned": pruned,
        "setup_seconds": round(setup_s, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        table = Table(title="Event Webhook")
        table.add_column("what")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
        console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

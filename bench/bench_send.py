"""Sending benchmark: one issue to N subscribers (default 100,000) in 64 segments, through
the SendGrid transport and the real `sendgrid` client, to the stand-in from the tests.

Run from the repository root: `python bench/bench_send.py --subscribers 1000000`
(add `--json` for JSON, `--postgres URL` to use PostgreSQL instead of the embedded SQLite).

Setup, not measured: the 20-article issue of `bench_render.py` plus one "Company News"
article (so all seven sections have articles) through the real pipeline (feed file →
`ingest_feeds` → `build_issue`), and N subscribers inserted in bulk, spread evenly over 64
section choices (the 63 non-empty sets of the six content sections, and "news" alone): 64
segments. The stand-in (`tests/sendgrid_standin.py`) runs in its own process, checks the
bearer token and every request against the limits of `../shared/sendgrid/README.md`, and
validates one body in `--validate-every` (default 1: all) against the JSON Schema.

Measured: one call of `issues.send_pending` with the configured SendGrid transport, as
`newsletter send` makes it: render each segment once, plan every batch, then claim,
send (several requests in flight) and record each batch, with helper processes as
`[delivery] processes` asks (default one process per CPU; `--processes`). Peak RSS is the
sending process's own (the kernel's high-water mark is reset after setup, and a thread
samples it every 10 ms), and separately the largest helper's. The stand-in keeps the
bodies it samples (`--validate-every`) and validates them after the run (`--validate-now`
to do it while the sender waits). Afterwards the stand-in's tally must show every
subscriber exactly once and no sampled body invalid.
"""

from __future__ import annotations

import argparse
import compileall
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import itertools
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, insert, text

import subscribers as people
from bench_outbox import MIB, Phases, RssSampler, peak_rss_bytes, reset_peak_rss, rss_bytes
from bench_render import CONFIG, SITE, write_feed
from newsletter import db, issues, sending
from newsletter.config import Settings, load_settings
from newsletter.ingest import ingest_feeds

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "SG.bench-" + secrets.token_hex(8)
CONTENT_SECTIONS = ("drug-development", "manufacturing", "supply-chain", "facilities", "insights", "events")
NEWS_ITEM = """<item><title>Mid-size generics maker appoints a new chief executive from a rival</title>
<link>{site}/news/2026/11/generics-maker-appoints-ceo/</link><guid isPermaLink="false">{site}/?p=49999</guid>
<pubDate>{date}</pubDate><category><![CDATA[Company News]]></category>
<description><![CDATA[<p>The board named the former head of European operations of a competitor.</p>]]></description></item>
</channel>"""


def section_choices() -> list[tuple[str, ...]]:
    """64 choices, each its own segment: every non-empty set of the six content sections,
    and news alone."""
    sets = [c for size in range(1, 7) for c in itertools.combinations(CONTENT_SECTIONS, size)]
    return [*sets, ("news",)]


def prepare_issue(
    folder: Path, database_url: str, api_host: str, *, now: datetime, concurrency: int | None = None,
    processes: int | None = None,
) -> tuple[Settings, Engine, issues.BuildResult]:
    feed = folder / "feed.xml"
    write_feed(feed, now=now)
    news = NEWS_ITEM.format(site=SITE, date=format_datetime(now - timedelta(hours=1)))
    feed.write_text(feed.read_text(encoding="utf-8").replace("</channel>", news), encoding="utf-8")
    config = folder / "newsletter.toml"
    delivery = 'transport = "sendgrid"' + (f"\nprocesses = {processes}" if processes is not None else "")
    config.write_text(
        CONFIG.format(site=SITE, feed=feed.resolve().as_uri()).replace('transport = "outbox"', delivery)
        + f'\n[sendgrid]\napi_host = "{api_host}"\n'
        + (f"concurrency = {concurrency}\n" if concurrency else ""),
        encoding="utf-8",
    )
    settings = load_settings(config, environ={"SENDGRID_API_KEY": API_KEY, "NEWSLETTER_DATABASE__URL": database_url})
    engine = issues.open_database(settings)
    ingest_feeds(engine, settings, clock=lambda: now)
    built = issues.build_issue(engine, settings, now=now)
    if len(built.blocks) != 7:
        raise SystemExit(f"the issue should have seven sections, it has {[b.slug for b in built.blocks]}")
    return settings, engine, built


def insert_in_chunks(engine: Engine, table: Any, count: int, row: Callable[[int], dict[str, Any]], *, chunk: int = 50_000) -> None:
    """`count` rows, `row(n)` each, inserted in bulk in one transaction."""
    with engine.begin() as conn:
        for start in range(0, count, chunk):
            conn.execute(insert(table), [row(n) for n in range(start, min(count, start + chunk))])


def compile_bytecode() -> None:
    """Write the bytecode of `newsletter` and `subscribers`, as installing the package
    does. In a checkout run with PYTHONDONTWRITEBYTECODE=1 (as on the benchmark machine)
    every new process, a helper too, would otherwise compile them from source (0.4 s)."""
    for package in ("newsletter", "subscribers"):
        compileall.compile_dir(ROOT / package, quiet=1)


def loop_ms() -> float:
    """How fast this machine runs Python today: the best of five runs of a fixed loop, in
    ms. Figures of runs on different days compare only through it."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for n in range(1_000_000):
            total += n
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def add_subscribers(engine: Engine, count: int, *, now: datetime) -> None:
    """`count` active subscribers spread evenly over the 64 choices."""
    keys = [people.sections_key(c) for c in section_choices()]
    insert_in_chunks(engine, people.subscribers, count, lambda n: {
        "email": f"reader{n:07d}@example.com", "name": f"Reader{n} Example", "status": "active", "sections": keys[n % len(keys)],
        "token": secrets.token_urlsafe(24), "created_at": now, "confirmed_at": now, "source": "bench"})


def add_suppressions(engine: Engine, count: int, *, now: datetime) -> None:
    """`count` suppressed addresses, none of them a subscriber's: what years of bounces
    and complaints of people long gone leave on a list."""
    insert_in_chunks(engine, people.suppressions, count,
                     lambda n: {"email": f"gone{n:07d}@bounced.example.com", "reason": "bounce", "created_at": now})


class HelperRssSampler(threading.Thread):
    """Samples, every 20 ms, the resident size of this process's helper processes (the
    children multiprocessing started: not the stand-in) and keeps the largest seen. The
    kernel's own figure for a waited child is no use here: a spawned child's high-water
    mark includes the copy of the parent it was forked as. (It asks multiprocessing for
    the children rather than scanning /proc, which took a few percent of a CPU.)"""

    def __init__(self) -> None:
        super().__init__(name="helper-rss", daemon=True)
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._done.wait(0.02):
            for child in multiprocessing.active_children():
                try:
                    with open(f"/proc/{child.pid}/statm", encoding="ascii") as statm:
                        self.peak = max(self.peak, int(statm.read().split()[1]) * page)
                except (OSError, ValueError):
                    pass

    def __enter__(self) -> HelperRssSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()


class StandIn:
    """The SendGrid stand-in in a process of its own."""

    def __init__(self, validate_every: int, *, validate_later: bool = True) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sendgrid_standin", "--key", API_KEY, "--validate-every", str(validate_every),
             *(["--validate-later"] if validate_later else [])],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def tally(self) -> dict[str, int]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("tally\n")
        self.process.stdin.flush()
        result: dict[str, int] = json.loads(self.process.stdout.readline())
        return result

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@contextmanager
def scratch_database(prefix: str, postgres_url: str | None) -> Iterator[tuple[Path, str]]:
    """A temporary folder and a database URL in it (SQLite), or a new schema on the
    PostgreSQL server at `postgres_url`; both are removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    schema = ""
    try:
        if postgres_url:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = db.open_engine(postgres_url)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            sep = "&" if "?" in postgres_url else "?"
            yield folder, f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
        else:
            yield folder, f"sqlite:///{folder / 'newsletter.db'}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if schema:
            admin = db.open_engine(postgres_url or "")
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100_000, help="How many subscribers (default 100,000).")
    parser.add_argument("--suppressions", type=int, default=0,
                        help="Addresses on the suppression list, none a subscriber's (default 0).")
    parser.add_argument("--postgres", metavar="URL", help="Use this PostgreSQL server (a new schema) instead of SQLite.")
    parser.add_argument("--validate-every", type=int, default=1, help="The stand-in validates one body in N against the schema.")
    parser.add_argument("--validate-now", action="store_true",
                        help="Validate the sampled bodies while the sender waits for the answer (default: after the run).")
    parser.add_argument("--processes", type=int, help="Sending processes ([delivery] processes; default: one per CPU).")
    parser.add_argument("--concurrency", type=int, help="Requests in flight at once ([sendgrid] concurrency; default: its default).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)
    standin = StandIn(args.validate_every, validate_later=not args.validate_now)
    try:
        with scratch_database("bench-send-", args.postgres) as (folder, database_url):
            return run(args, folder, database_url, standin, console)
    finally:
        standin.stop()


def run(args: argparse.Namespace, folder: Path, database_url: str, standin: StandIn, console: Console) -> int:
    now = datetime.now(UTC)
    setup_started = time.perf_counter()
    compile_bytecode()
    settings, engine, built = prepare_issue(folder, database_url, standin.url, now=now, concurrency=args.concurrency,
                                           processes=args.processes)
    add_subscribers(engine, args.subscribers, now=now)
    add_suppressions(engine, args.suppressions, now=now)
    # The setup's writes (a million subscribers are ~340 MB) reach the disk now, not while
    # the send is measured: the kernel's writeback of them made runs differ by half.
    os.sync()
    setup_s = time.perf_counter() - setup_started
    console.print(f"Setup: issue {built.issue.slug}, {args.subscribers:,} subscribers and {args.suppressions:,} suppressed "
                  f"addresses in {setup_s:.1f} s. Sending…")

    rss_before = rss_bytes()
    setup_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact_peak = reset_peak_rss()
    phases = Phases()
    transport = issues.make_transport(settings)
    with RssSampler() as sampler, HelperRssSampler() as helpers_sampler:
        cpu_before = os.times()
        started = time.perf_counter()
        report = issues.send_pending(engine, settings, built.issue, transport=transport, progress=phases)
        wall_s = time.perf_counter() - started
        cpu_after = os.times()
    transport.close()
    peak = peak_rss_bytes() if exact_peak else sampler.peak
    helper_peak_mib = helpers_sampler.peak / MIB
    engine.dispose()
    tally = standin.tally()

    plan_s = phases.planned_at - phases.started
    send_s = wall_s - plan_s
    exactly_once = tally["recipients"] == tally["distinct"] == report.recipients_sent == args.subscribers
    summary: dict[str, Any] = {
        "subscribers": args.subscribers,
        "suppressions": args.suppressions,
        "database": "postgresql" if args.postgres else "sqlite",
        "concurrency": settings.sendgrid.concurrency,
        "processes": sending.process_count(settings.delivery.processes),
        "schema_validated_every": args.validate_every,
        "setup_seconds": round(setup_s, 2),
        "wall_seconds": round(wall_s, 2),
        "plan_seconds": round(plan_s, 2),
        "send_seconds": round(send_s, 2),
        "cpu_user_seconds": round(cpu_after.user - cpu_before.user, 2),
        "cpu_system_seconds": round(cpu_after.system - cpu_before.system, 2),
        "recipients_sent": report.recipients_sent,
        "recipients_per_second": round(report.recipients_sent / wall_s),
        "recipients_per_second_sending": round(report.recipients_sent / send_s) if send_s > 0 else 0,
        "segments": len(report.segments),
        "requests": tally["requests"],
        "rejected_requests": tally["rejected"],
        "bodies_validated": tally["validated_later"] if not args.validate_now else "during the run",
        "bodies_invalid": tally["invalid_later"],
        "standin_cpu_seconds": tally["cpu_seconds"],
        "failed_batches": len(report.failed_batches),
        "each_recipient_once": exactly_once,
        "complete": report.complete,
        "rss_before_send_mib": round(rss_before / MIB, 1),
        "peak_rss_send_mib": round(peak / MIB, 1),
        "peak_rss_sampled_mib": round(sampler.peak / MIB, 1),
        "peak_rss_setup_mib": round(setup_peak_mib, 1),
        "helpers": report.helpers,
        "helper_batches_sent": report.helper_batches_sent,
        "peak_rss_helper_mib": round(helper_peak_mib, 1),
        "peak_rss_method": "VmHWM reset after setup" if exact_peak else "sampled every 10 ms",
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python_loop_ms": loop_ms(),
    }
    ok = report.complete and exactly_once and not tally["rejected"] and not tally["invalid_later"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0 if ok else 1
    table = Table(title=f"SendGrid delivery: one issue to {args.subscribers:,} subscribers ({summary['database']}, stand-in)")
    table.add_column("")
    table.add_column("value", justify="right")
    for label, value in [
        ("setup (issue, subscribers, suppressions), not measured", f"{setup_s:.1f} s"),
        ("wall time of send_pending", f"{wall_s:.1f} s"),
        ("  planning (render 64 segments, plan batches)", f"{plan_s:.1f} s"),
        ("  sending (claim, request, record)", f"{send_s:.1f} s"),
        ("CPU of the sender: user / system", f"{summary['cpu_user_seconds']} s / {summary['cpu_system_seconds']} s"),
        ("recipients sent", f"{report.recipients_sent:,}"),
        ("recipients per second (whole run)", f"{summary['recipients_per_second']:,}"),
        ("recipients per second (sending part)", f"{summary['recipients_per_second_sending']:,}"),
        ("segments / requests / rejected", f"{len(report.segments)} / {tally['requests']:,} / {tally['rejected']}"),
        ("every subscriber exactly once (stand-in tally)", str(exactly_once)),
        ("sampled bodies validated after the run / invalid",
         f"{summary['bodies_validated']} / {summary['bodies_invalid']}"),
        ("CPU of the stand-in during the run", f"{summary['standin_cpu_seconds']} s"),
        ("RSS before send", f"{summary['rss_before_send_mib']} MiB"),
        (f"peak RSS during send ({summary['peak_rss_method']})", f"{summary['peak_rss_send_mib']} MiB"),
        ("peak RSS sampled every 10 ms", f"{summary['peak_rss_sampled_mib']} MiB"),
        ("helper processes / batches they sent", f"{report.helpers} / {report.helper_batches_sent:,}"),
        ("peak RSS of the largest helper (sampled every 20 ms)", f"{summary['peak_rss_helper_mib']} MiB"),
        ("load average (1 min) at the end", f"{summary['load_average_1min']} on {os.cpu_count()} CPUs"),
        ("machine speed: a fixed Python loop (lower is faster)", f"{summary['python_loop_ms']} ms"),
    ]:
        table.add_row(label, value)
    console.print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Delivery benchmark: one issue for N subscribers (default 100,000) into the outbox.

Run from the repository root: `python bench/bench_outbox.py --subscribers 100000`
(add `--json` for JSON). It writes one .eml per recipient, about 20–40 KB each, so 100,000
subscribers need about 3 GB of free space in the folder (a new temporary folder under
/tmp unless `--folder` is given); the folder is deleted afterwards unless `--keep`.

Setup, not measured: the 20-article issue of `bench_render.py` through the real pipeline
(feed file → `ingest_feeds` → `build_issue`) and N subscribers from `demo_subscribers`
(a third take every section, the rest one to four) through `upsert_subscribers`.

Measured: one call of `issues.send_pending` with the configured outbox transport, as
`newsletter send` makes it: render each segment once, plan every batch in SQL pages,
then claim, write and record each batch. User and system CPU time are shown apart:
creating ~100,000 files is kernel time that depends on the file system, not on our code.
Peak RSS is the sender's own: the kernel's
high-water mark is reset after setup (Linux `/proc/self/clear_refs`), and a thread also
samples the resident size every 10 ms as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import subscribers as people
from bench_render import prepare_issue
from newsletter import issues
from newsletter.demo import demo_subscribers

MIB = 1024 * 1024
BYTES_PER_MESSAGE_BUDGET = 40_000
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """The resident set size of this process now."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The RSS high-water mark (VmHWM) since the last reset."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples the resident size in a thread until stopped; keeps the largest seen."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@dataclass
class Phases:
    """A `SendProgress` that notes when planning ended and how sending went."""

    started: float = field(default_factory=time.perf_counter)
    planned_at: float = 0.0
    batches: int = 0
    recipients: int = 0

    def start(self, total_batches: int, total_recipients: int) -> None:
        self.planned_at = time.perf_counter()
        self.batches = total_batches
        self.recipients = total_recipients

    def advance(self, batches: int, recipients: int) -> None:
        pass


@dataclass(frozen=True)
class OutboxFiles:
    files: int
    total_bytes: int
    smallest: int
    largest: int


def scan_outbox(folder: Path) -> OutboxFiles:
    """Count the .eml files under `folder` and their sizes."""
    count = total = 0
    smallest, largest = sys.maxsize, 0
    for batch in os.scandir(folder):
        if not batch.is_dir():
            continue
        for entry in os.scandir(batch.path):
            size = entry.stat().st_size
            count += 1
            total += size
            smallest, largest = min(smallest, size), max(largest, size)
    return OutboxFiles(count, total, smallest if count else 0, largest)


def check_sample(folder: Path) -> str:
    """Parse one message of the first batch and check what every recipient must see."""
    first_batch = min(p for p in folder.iterdir() if p.is_dir())
    path = min(first_batch.glob("*.eml"))
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    body = str(html.get_content()) + str(text.get_content())
    problems = [
        what
        for what, ok in (
            ("a substitution tag is left", "%%" not in body),
            ("no unsubscribe link", "/unsubscribe/" in body),
            ("no List-Unsubscribe-Post", message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"),
        )
        if not ok
    ]
    return "; ".join(problems) or "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100_000, help="How many subscribers (default 100,000).")
    parser.add_argument("--folder", type=Path, help="Work folder (default: a new temporary folder under /tmp).")
    parser.add_argument("--keep", action="store_true", help="Keep the folder (database and outbox) afterwards.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)

    folder: Path = args.folder or Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    folder.mkdir(parents=True, exist_ok=True)
    needed = args.subscribers * BYTES_PER_MESSAGE_BUDGET
    free = shutil.disk_usage(folder).free
    if free < needed * 1.2:
        console.print(f"[red]{folder} has {free / MIB:,.0f} MiB free; the outbox needs about {needed / MIB:,.0f} MiB.[/red]")
        return 2
    try:
        return run(args, folder, console)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path, console: Console) -> int:
    now = datetime.now(UTC)
    setup_started = time.perf_counter()
    settings, engine, built = prepare_issue(folder, now=now)
    with engine.begin() as conn:
        created, _ = people.upsert_subscribers(
            conn, demo_subscribers(list(settings.section_names()), args.subscribers), now=now
        )
    setup_s = time.perf_counter() - setup_started
    console.print(f"Setup: issue {built.issue.slug} and {created:,} subscribers in {setup_s:.1f} s. Sending…")

    rss_before = rss_bytes()
    setup_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact_peak = reset_peak_rss()
    phases = Phases()
    with RssSampler() as sampler:
        cpu_before = os.times()
        started = time.perf_counter()
        report = issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), progress=phases)
        wall_s = time.perf_counter() - started
        cpu_after = os.times()
    user_s = cpu_after.user - cpu_before.user
    system_s = cpu_after.system - cpu_before.system
    peak = peak_rss_bytes() if exact_peak else sampler.peak
    engine.dispose()

    outbox = settings.outbox_dir / built.issue.slug
    files = scan_outbox(outbox)
    sample = check_sample(outbox)
    plan_s = phases.planned_at - phases.started
    send_s = wall_s - plan_s
    sizes = sorted(report.segments.values())
    summary: dict[str, Any] = {
        "subscribers": created,
        "setup_seconds": round(setup_s, 2),
        "wall_seconds": round(wall_s, 2),
        "plan_seconds": round(plan_s, 2),
        "send_seconds": round(send_s, 2),
        "cpu_user_seconds": round(user_s, 2),
        "cpu_system_seconds": round(system_s, 2),
        "recipients_sent": report.recipients_sent,
        "recipients_per_second": round(report.recipients_sent / wall_s),
        "recipients_per_second_sending": round(report.recipients_sent / send_s),
        "unsegmented": report.unsegmented,
        "segments": len(sizes),
        "segment_html_bytes": [sizes[0], sizes[-1]] if sizes else [],
        "batches": report.batches_sent,
        "failed_batches": len(report.failed_batches),
        "complete": report.complete,
        "eml_files": files.files,
        "eml_bytes_total": files.total_bytes,
        "eml_bytes_mean": round(files.total_bytes / files.files) if files.files else 0,
        "eml_bytes_range": [files.smallest, files.largest],
        "sample_check": sample,
        "rss_before_send_mib": round(rss_before / MIB, 1),
        "peak_rss_send_mib": round(peak / MIB, 1),
        "peak_rss_sampled_mib": round(sampler.peak / MIB, 1),
        "peak_rss_setup_mib": round(setup_peak_mib, 1),
        "peak_rss_method": "VmHWM reset after setup" if exact_peak else "sampled every 10 ms",
        "python": sys.version.split()[0],
        "mjml_python": version("mjml-python"),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0 if report.complete and sample == "ok" else 1
    table = Table(title=f"Outbox delivery: one issue to {created:,} subscribers (send_pending, outbox transport)")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("setup (issue + subscribers), not measured", f"{setup_s:.1f} s"),
        ("wall time of send_pending", f"{wall_s:.1f} s"),
        ("  planning (render segments, plan batches)", f"{plan_s:.1f} s"),
        ("  sending (claim, write .eml, record)", f"{send_s:.1f} s"),
        ("CPU in Python (user) / in the kernel (system)", f"{user_s:.1f} s / {system_s:.1f} s"),
        ("recipients sent", f"{report.recipients_sent:,}"),
        ("recipients per second (whole run)", f"{summary['recipients_per_second']:,}"),
        ("recipients per second (sending part)", f"{summary['recipients_per_second_sending']:,}"),
        ("subscribers with nothing this week", f"{report.unsegmented:,}"),
        ("segments rendered", f"{len(sizes)}"),
        ("segment HTML bytes", f"{sizes[0]:,} – {sizes[-1]:,}" if sizes else "-"),
        ("batches", f"{report.batches_sent:,} ({len(report.failed_batches)} failed)"),
        (".eml files written", f"{files.files:,}"),
        (".eml bytes: mean (min – max)", f"{summary['eml_bytes_mean']:,} ({files.smallest:,} – {files.largest:,})"),
        ("outbox total", f"{files.total_bytes / MIB:,.0f} MiB"),
        ("RSS before send", f"{summary['rss_before_send_mib']} MiB"),
        (f"peak RSS during send ({summary['peak_rss_method']})", f"{summary['peak_rss_send_mib']} MiB"),
        ("peak RSS sampled every 10 ms", f"{summary['peak_rss_sampled_mib']} MiB"),
        ("peak RSS of the setup (ru_maxrss before the send)", f"{summary['peak_rss_setup_mib']} MiB"),
        ("sample message check", sample),
        ("load average (1 min) at the end", f"{summary['load_average_1min']} on {os.cpu_count()} CPUs"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    return 0 if report.complete and sample == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())

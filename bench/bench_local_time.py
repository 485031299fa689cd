"""Planning with and without `[delivery] local_time`: what recording each delivery's
`send_at` costs (docs/recall.md).

Run from the repository root: `python bench/bench_local_time.py --subscribers 100000 --zones 4`.
One issue (as `bench_send.py` builds it) and N subscribers spread evenly over `--zones`
time zones, in a SQLite file (or `--postgres URL`, a new schema); the issue is planned
`--rounds` times each way, alternately, its deliveries and batches deleted in between
(the segments stay rendered: the figure is the planning's SQL). Prints the median of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import delete, update  # noqa: E402

import subscribers as people  # noqa: E402
from bench_send import add_subscribers, prepare_issue, scratch_database  # noqa: E402
from newsletter import issues  # noqa: E402
from newsletter.sending.options import SendReport  # noqa: E402
from newsletter.sending.planning import plan_issue  # noqa: E402
from newsletter.tables import batches, deliveries  # noqa: E402

FOUR = ["Europe/London", "America/New_York", "Europe/Zurich", "Asia/Seoul"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--zones", type=int, default=4, help="Time zones the subscribers are spread over (4: the pharma list's).")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--postgres", metavar="URL")
    args = parser.parse_args()
    zones = FOUR if args.zones == 4 else sorted(zoneinfo.available_timezones())[: args.zones]
    now = datetime.now(UTC)
    with scratch_database("local-time", args.postgres) as (folder, url):
        settings, engine, built = prepare_issue(folder, url, "http://127.0.0.1:9", now=now)
        add_subscribers(engine, args.subscribers, now=now)
        with engine.begin() as conn:
            for index, zone in enumerate(zones):
                conn.execute(update(people.subscribers).where(people.subscribers.c.id % len(zones) == index).values(timezone=zone))
        renderer = issues.make_renderer(settings, remember=True)
        with engine.connect() as conn:
            content = issues.issue_content(conn, built.issue, built.blocks)
        available = {b.slug for b in built.blocks}
        took: dict[str, list[float]] = {"at once": [], "local_time": []}
        for label, local in [("at once", ""), ("local_time", "08:00")] * (args.rounds + 1):
            with engine.begin() as conn:
                conn.execute(delete(deliveries))
                conn.execute(delete(batches))
            with engine.connect() as conn:
                started = time.perf_counter()
                plan_issue(conn, built.issue, lambda sections: renderer.render(content, sections=sections), available,
                           batch_size=1000, transport="outbox", report=SendReport(built.issue.slug), now=now,
                           local_time=local, site_zone="Europe/London")
                took[label].append(time.perf_counter() - started)
        engine.dispose()
    for label, times in took.items():
        # The first round of each renders the segments: left out.
        print(f"{args.subscribers:,} subscribers in {len(zones)} zones, {label}: planning median {statistics.median(times[1:]):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Never twice, with real processes: a manual `newsletter send` racing another send of
the same issue, and two scheduler runs racing for one slot, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

import subscribers as people
from newsletter import issues, store
from newsletter.config import Settings
from newsletter.models import FeedItem
from newsletter.sending.ledger import ledger_summary
from newsletter.tables import batches, deliveries, issues as issue_rows, scheduled_runs
from tests.helpers import outbox_messages

RECIPIENTS = 200


def _prepare(engine: Engine, settings: Settings, now: datetime) -> None:
    with engine.begin() as conn:
        store.upsert_articles(conn, [
            FeedItem("a", "https://p.example.com/a", "Insight", "", now - timedelta(days=1), ("Insights",), "", ""),
            FeedItem("b", "https://p.example.com/b", "Event", "", now - timedelta(days=1), ("Events",), "", ""),
        ], source="t", now=now)
        people.upsert_subscribers(conn, [
            people.NewSubscriber(f"r{n}@example.com", ("insights",) if n % 2 else ("insights", "events")) for n in range(RECIPIENTS)
        ], now=now)


def _run_together(commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    processes = [subprocess.Popen([sys.executable, "-m", "newsletter", *c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                 for c in commands]
    results = []
    for process in processes:
        output, _ = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, output))
    return results


def _assert_each_once(engine: Engine, settings: Settings) -> None:
    counts = Counter(m["To"] for m in outbox_messages(settings.outbox_dir))
    assert len(counts) == RECIPIENTS and set(counts.values()) == {1}
    with engine.connect() as conn:
        issue_id = conn.execute(select(issue_rows.c.id)).scalar_one()
        # The ledger's sums over batches, and the deliveries themselves, say the same.
        assert ledger_summary(conn, issue_id)["recipients_sent"] == RECIPIENTS
        sent = (select(func.count()).select_from(deliveries).join(batches, batches.c.id == deliveries.c.batch_id)
                .where(deliveries.c.issue_id == issue_id, deliveries.c.status != "skipped", batches.c.status == "accepted"))
        assert conn.execute(sent).scalar_one() == RECIPIENTS


def test_two_manual_sends_of_one_issue(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(delivery={"batch_size": 10})
    now = datetime.now(UTC)
    _prepare(engine, settings, now)
    issues.build_issue(engine, settings, now=now)
    config = str(settings.base_dir / "newsletter.toml")
    results = _run_together([["--config", config, "send", "--json"], ["--config", config, "send", "--json"]])
    for result in results:
        assert "Traceback" not in result.stdout, result.stdout
    assert any(r.returncode == 0 for r in results), [r.stdout for r in results]
    _assert_each_once(engine, settings)


def test_two_schedulers_race_for_one_slot(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(delivery={"batch_size": 10})
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    _prepare(engine, settings, slot)
    config = str(settings.base_dir / "newsletter.toml")
    code = (
        "import sys; from datetime import datetime; from newsletter import schedule, issues; "
        "from newsletter.config import load_settings; s = load_settings(sys.argv[1]); e = issues.open_database(s); "
        "r = schedule.run_digest(e, s, datetime.fromisoformat(sys.argv[2])); print('STATUS', r.status)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    processes = [subprocess.Popen([sys.executable, "-c", code, config, slot.isoformat()], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in processes]
    statuses = sorted(line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("STATUS"))
    assert statuses == ["already_ran", "sent"], outputs
    _assert_each_once(engine, settings)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(scheduled_runs)).scalar_one() == 1

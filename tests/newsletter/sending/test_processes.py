"""`newsletter send` as real processes against the SendGrid stand-in: killed with SIGKILL
at random points and resumed, three `--worker` processes sharing one issue on
PostgreSQL, and a send with a helper process (`[delivery] processes`), whole and killed.
What counts is what the stand-in accepted, per address and per batch."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from sqlalchemy import Engine, select

import subscribers as people
from newsletter import issues
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.ingest import ingest_feeds
from newsletter.tables import batches, deliveries
from newsletter.tables import issues as issue_table
from tests.conftest import LOCAL_NETWORKS, NOW, POSTGRES_URL, write_config
from tests.helpers import Item, rss
from tests.sendgrid_standin import Answer, SendGridStandIn
from tests.servers import LocalServer, Route
from tests.sendgrid_helpers import API_KEY

CHOICES = [("drug-development",), ("manufacturing", "events"), ("drug-development", "manufacturing", "events", "news")]
SEND = [sys.executable, "-c", "from newsletter.cli import app; app()", "send", "--json"]




def prepare(folder: Path, database_url: str, feed_url: str, standin: SendGridStandIn, *, readers: int, batch_size: int,
            concurrency: int, processes: int = 1) -> tuple[Path, Engine, Settings]:
    """A config sending through the stand-in, and the readers (one sending process unless
    `processes` says otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder / "newsletter.toml", {
        "site": {"name": "Pharma Weekly", "base_url": "https://news.example.com"},
        "sender": {"name": "Pharma Weekly", "address": "news@example.com"},
        "database": {"url": database_url},
        "delivery": {"transport": "sendgrid", "batch_size": batch_size, "processes": processes},
        "sendgrid": {"api_host": standin.url, "concurrency": concurrency},
        "feeds": [{"name": "Pharma", "url": feed_url}],
        "ingest": {"allow_networks": LOCAL_NETWORKS},
    })
    settings = load_settings(config, environ={})
    engine = issues.open_database(settings)
    with engine.begin() as conn:
        people.upsert_subscribers(
            conn,
            [people.NewSubscriber(f"reader{n}@example.com", CHOICES[n % len(CHOICES)], name=f"Reader{n}") for n in range(readers)],
            now=NOW,
        )
    return config, engine, settings


def next_issue(engine: Engine, settings: Settings, server: LocalServer, week: int) -> str:
    """This week's articles on the feed, ingested and built into an issue; its slug."""
    now = NOW + timedelta(weeks=week)
    items = [
        Item(f"{title} (week {week})", f"https://pharma.example.com/w{week}/{n}", now - timedelta(days=n + 1), [category], guid=f"w{week}-{n}")
        for n, (title, category) in enumerate([("FDA approves", "FDA Approvals"), ("CDMO grows", "Manufacturing"), ("CPHI", "Events")])
    ]
    server.routes["/feed.xml"] = Route(body=rss(items), headers={"content-type": "application/rss+xml"})
    ingest_feeds(engine, settings, clock=lambda: now)
    return issues.build_issue(engine, settings, now=now).issue.slug


def env_for(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    return {**env, "NEWSLETTER_CONFIG": str(config), "SENDGRID_API_KEY": API_KEY}


def accepted_batches(standin: SendGridStandIn) -> Counter[int]:
    """How many times the stand-in accepted each batch (by the batch id in custom_args)."""
    return Counter(int(r.body["custom_args"]["batch_id"]) for r in standin.accepted)


def ledger_states(engine: Engine, slug: str) -> dict[int, str]:
    with engine.connect() as conn:
        issue_id = conn.execute(select(issue_table.c.id).where(issue_table.c.slug == slug)).scalar_one()
        return {row.id: row.status for row in conn.execute(select(batches.c.id, batches.c.status).where(batches.c.issue_id == issue_id))}


def batch_members(engine: Engine, batch_ids: set[int]) -> dict[int, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.batch_id, people.subscribers.c.email)
            .join(people.subscribers, people.subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.batch_id.in_(batch_ids))
        )
        members: dict[int, set[str]] = {}
        for batch_id, email in rows:
            members.setdefault(batch_id, set()).add(email)
        return members


def test_kill_minus_9_at_random_points_then_resume_delivers_each_reader_once(
    database_url: str, tmp_path: Path, server: LocalServer, standin: SendGridStandIn
) -> None:
    """Ten issues, each sent by a process killed at a random point, then resumed."""
    rng = random.Random(20261124)
    readers = 900
    everyone = {f"reader{n}@example.com" for n in range(readers)}
    config, engine, settings = prepare(tmp_path, database_url, f"{server.url}/feed.xml", standin, readers=readers,
                                       batch_size=30, concurrency=2)
    env = env_for(config)
    runner = CliRunner()
    killed_while_running = unknown_seen = 0
    for run in range(10):
        standin.mail_requests.clear()
        standin.delivered.clear()
        slug = next_issue(engine, settings, server, run)
        # Slow answers widen the window between a request and its ledger commit.
        standin.answer_next(*[Answer(202, delay=0.03, accept=True)] * 100)
        process = subprocess.Popen([*SEND, slug], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if run % 5 == 0:
            # While the process starts and plans.
            time.sleep(rng.uniform(1.0, 3.0))
        else:
            # While it sends: from its first request on.
            deadline = time.monotonic() + 30
            while not standin.mail_requests and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.6))
        killed_while_running += process.poll() is None
        process.kill()
        process.communicate()
        standin.script.clear()

        # Resume, as a user would: `newsletter send` again.
        resumed = runner.invoke(app, [*SEND[3:], slug], env=env)
        assert resumed.exit_code in (0, 1), resumed.output
        report: dict[str, Any] = json.loads(resumed.stdout)
        unknown = set(report["unknown_batches"])
        assert resumed.exit_code == (1 if unknown else 0)
        assert report["failed_total"] == 0 and not report["failed_batches"]

        states = ledger_states(engine, slug)
        members = batch_members(engine, set(states))
        sent_twice = [b for b, n in accepted_batches(standin).items() if n > 1]
        assert sent_twice == [], f"run {run}: batches sent twice"
        assert set(standin.delivered.values()) <= {1}, f"run {run}: an address got the issue twice"
        # Every batch is accepted, except those left in flight by the kill: unknown.
        assert {b for b, s in states.items() if s != "accepted"} == unknown
        assert {b for b, s in states.items() if s == "in_flight"} == unknown
        # A batch SendGrid took whose ledger commit the kill prevented is among the unknown.
        assert {b for b in accepted_batches(standin) if states[b] != "accepted"} <= unknown
        # Everyone outside the unknown batches has the issue exactly once.
        in_unknown = set().union(*(members[b] for b in unknown)) if unknown else set()
        assert everyone - in_unknown == set(standin.delivered) - in_unknown
        assert set().union(*members.values()) == everyone
        unknown_seen += bool(unknown)

        # --resend-unknown then closes the issue.
        again = runner.invoke(app, [*SEND[3:], slug, "--resend-unknown"], env=env)
        assert again.exit_code == 0, again.output
        assert set(standin.delivered) == everyone
        assert set(ledger_states(engine, slug).values()) == {"accepted"}
    engine.dispose()
    assert killed_while_running >= 8, "the kills should land while the send runs"
    print(f"{killed_while_running} of 10 kills mid-run, {unknown_seen} left batches unknown")


@pytest.mark.skipif(not POSTGRES_URL, reason="NEWSLETTER_TEST_POSTGRES_URL not set")
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # --worker is for PostgreSQL only
def test_three_workers_share_one_issue_and_send_no_batch_twice(
    database_url: str, tmp_path: Path, server: LocalServer, standin: SendGridStandIn
) -> None:
    readers = 3000
    config, engine, settings = prepare(tmp_path, database_url, f"{server.url}/feed.xml", standin, readers=readers,
                                       batch_size=100, concurrency=1)
    slug = next_issue(engine, settings, server, 0)
    standin.answer_next(*[Answer(202, delay=0.05, accept=True)] * 1000)
    workers = [
        subprocess.Popen([*SEND, slug, "--worker"], env=env_for(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]

    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    per_worker = [r["batches_sent"] for r in reports]
    assert sum(per_worker) == 30 and all(n > 0 for n in per_worker), per_worker
    assert sorted(accepted_batches(standin).values()) == [1] * 30
    assert len(standin.delivered) == readers and set(standin.delivered.values()) == {1}
    assert set(ledger_states(engine, slug).values()) == {"accepted"}
    # One worker planned; the others found everyone planned.
    assert sorted(r["planned_recipients"] for r in reports) == [0, 0, readers]
    engine.dispose()


def test_a_helper_process_sends_with_the_parent_and_no_batch_goes_twice(
    database_url: str, tmp_path: Path, server: LocalServer, standin: SendGridStandIn
) -> None:
    """`[delivery] processes = 2`: once the batches are planned, a helper process claims
    and sends batches alongside the parent; the report adds up both."""
    readers = 1200
    config, engine, settings = prepare(tmp_path, database_url, f"{server.url}/feed.xml", standin, readers=readers,
                                       batch_size=20, concurrency=2, processes=2)
    slug = next_issue(engine, settings, server, 0)
    # Slow answers, so that the helper is up and sending before the parent is done.
    standin.answer_next(*[Answer(202, delay=0.05, accept=True)] * 60)
    done = subprocess.run([*SEND, slug], env=env_for(config), capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["helpers"] == 1 and 0 < report["helper_batches_sent"] < 60, report
    assert report["batches_sent"] == 60 and report["recipients_sent"] == readers and report["complete"]
    assert sorted(accepted_batches(standin).values()) == [1] * 60
    assert len(standin.delivered) == readers and set(standin.delivered.values()) == {1}
    assert set(ledger_states(engine, slug).values()) == {"accepted"}
    engine.dispose()


def start_send_with_helper(
    tmp_path: Path, database_url: str, server: LocalServer, standin: SendGridStandIn
) -> tuple[Path, Engine, str, subprocess.Popen[bytes]]:
    """`newsletter send` of 1,200 readers in 60 batches with a helper process, slow
    answers (0.2 s), returned once both processes are sending."""
    config, engine, settings = prepare(tmp_path, database_url, f"{server.url}/feed.xml", standin, readers=1200,
                                       batch_size=20, concurrency=2, processes=2)
    slug = next_issue(engine, settings, server, 0)
    standin.answer_next(*[Answer(202, delay=0.2, accept=True)] * 60)
    process = subprocess.Popen([*SEND, slug], env=env_for(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # Both processes are sending once the first requests come from two of them: wait for
    # six requests (the parent alone has two in flight at a time).
    while len(standin.mail_requests) < 6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the send ended before it could be interrupted"
    return config, engine, slug, process


def test_killing_the_sender_stops_its_helper_and_a_resume_finishes_the_issue(
    database_url: str, tmp_path: Path, server: LocalServer, standin: SendGridStandIn
) -> None:
    """kill -9 of `newsletter send` takes its helper with it (nothing goes on sending
    behind the user's back); the batches either had in flight are unknown, the rest is
    sent by the next run, each reader once."""
    everyone = {f"reader{n}@example.com" for n in range(1200)}
    config, engine, slug, process = start_send_with_helper(tmp_path, database_url, server, standin)
    process.kill()
    process.communicate()
    time.sleep(1.0)
    seen = len(standin.mail_requests)
    time.sleep(1.5)
    assert len(standin.mail_requests) == seen, "a helper went on sending after its parent was killed"
    standin.script.clear()

    resumed = CliRunner().invoke(app, [*SEND[3:], slug], env=env_for(config))
    report: dict[str, Any] = json.loads(resumed.stdout)
    unknown = set(report["unknown_batches"])
    assert unknown and resumed.exit_code == 1
    states = ledger_states(engine, slug)
    assert {b for b, s in states.items() if s != "accepted"} == unknown
    assert [b for b, n in accepted_batches(standin).items() if n > 1] == []
    members = batch_members(engine, set(states))
    in_unknown = set().union(*(members[b] for b in unknown))
    assert set(standin.delivered.values()) == {1}
    assert everyone - in_unknown == set(standin.delivered) - in_unknown
    engine.dispose()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_sigterm_stops_the_sender_and_its_helper_in_order_and_a_resume_finishes_the_issue(
    database_url: str, tmp_path: Path, server: LocalServer, standin: SendGridStandIn, signum: signal.Signals
) -> None:
    """SIGTERM to `newsletter send` (a service manager stopping it), or a first Ctrl-C:
    the parent stops claiming and tells its helper to stop; both record the answers of
    their batches in flight, so nothing is left unknown, and the next run sends the rest,
    each reader once. (The signal is not raised where it lands: between a batch's claim
    and its request it would leave that batch in flight with no answer.)"""
    everyone = {f"reader{n}@example.com" for n in range(1200)}
    config, engine, slug, process = start_send_with_helper(tmp_path, database_url, server, standin)
    try:
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 1
        said = stderr.decode()
        assert "stopping: no more batches are claimed" in said and "`newsletter send` again sends the rest" in said
        assert ("Ctrl-C again" in said) == (signum == signal.SIGINT)
        seen = len(standin.mail_requests)
        time.sleep(1.0)
        assert len(standin.mail_requests) == seen, "a helper went on sending after the stop"
        states = ledger_states(engine, slug)
        assert "in_flight" not in states.values(), "an orderly stop records every answer"
        assert 0 < sum(s == "accepted" for s in states.values()) < 60
        standin.script.clear()

        resumed = CliRunner().invoke(app, [*SEND[3:], slug], env=env_for(config))
        assert resumed.exit_code == 0, resumed.output
        assert json.loads(resumed.stdout)["unknown_batches"] == []
        assert sorted(accepted_batches(standin).values()) == [1] * 60
        assert set(standin.delivered) == everyone and set(standin.delivered.values()) == {1}
    finally:
        engine.dispose()


def test_a_stop_request_stops_the_helper_too(
    database_url: str, tmp_path: Path, server: LocalServer, standin: SendGridStandIn
) -> None:
    """The scheduled service's SIGTERM sets the send's stop event: this process claims
    nothing more, and its helper is told to stop as well instead of sending the rest."""
    readers = 1200
    config, engine, _ = prepare(tmp_path, database_url, f"{server.url}/feed.xml", standin, readers=readers,
                                batch_size=20, concurrency=2, processes=2)
    settings = load_settings(config, environ={"SENDGRID_API_KEY": API_KEY})
    slug = next_issue(engine, settings, server, 0)
    standin.answer_next(*[Answer(202, delay=0.05, accept=True)] * 60)
    stop = threading.Event()

    class StopAfterSix:
        seen = 0

        def start(self, total_batches: int, total_recipients: int) -> None:
            assert total_batches == 60

        def advance(self, batches: int, recipients: int) -> None:
            self.seen += batches
            if self.seen >= 6:
                stop.set()

    issue = issues.find_issue(engine, slug)
    transport = issues.make_transport(settings)
    try:
        report = issues.send_pending(engine, settings, issue, transport=transport, progress=StopAfterSix(), stop=stop)
    finally:
        transport.close()
    assert report.helpers == 1 and not report.complete
    states = ledger_states(engine, slug)
    assert "in_flight" not in states.values()
    accepted = sum(s == "accepted" for s in states.values())
    assert accepted == report.batches_sent and 6 <= accepted <= 40, accepted
    engine.dispose()


HELPER_SCRIPT = '''
import sys
from pathlib import Path

if __name__ != "__main__":
    # A spawned process runs the main script again as `__mp_main__`: say so.
    Path(__file__).with_suffix(".ran-again").write_text(__name__)
else:
    from newsletter.sending import send_as_helper
    from newsletter.sending.helpers import HelperPool

    pool = HelperPool(1, send_as_helper, (None, 0, None))
    pool.cancel()
    print(pool.processes[0].exitcode)
'''


def test_a_helper_does_not_run_the_main_script_again(tmp_path: Path) -> None:
    """`newsletter` is a script; a helper started from it must not import the whole CLI
    (or a benchmark) again before it can send. Here a main script marks every run of
    itself; the helper starts, is sent away unused, and leaves cleanly."""
    script = tmp_path / "main_script.py"
    script.write_text(HELPER_SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert not script.with_suffix(".ran-again").exists()

"""`newsletter send` and `newsletter demo` through SendGrid (the local stand-in): exit
codes, the ledger shown, one-line errors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings
from tests.sendgrid_standin import Answer, MailRequest, SendGridStandIn, sendgrid_errors
from tests.sendgrid_helpers import API_KEY, add_readers, build, sendgrid_settings, two_segments


def test_the_cli_exits_non_zero_on_a_failed_batch_and_shows_the_ledger(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings, issue = two_segments(engine, make_settings, standin, feed_server, concurrency=1)
    standin.answer_next(Answer(400, body=sendgrid_errors(("from.email", "The from address does not match a verified Sender Identity."))))
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(settings.base_dir / "newsletter.toml"), "SENDGRID_API_KEY": API_KEY}

    result = runner.invoke(app, ["-v", "send", "--json"], env=env)

    assert result.exit_code == 1, result.output
    assert "@example.com" not in result.stderr and API_KEY not in result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["failed_batches"][0]["error"] == "400: from.email: The from address does not match a verified Sender Identity."
    assert report["recipients_sent"] == 2 and report["failed_total"] == 1

    status = runner.invoke(app, ["send", "--status", "2026-w48"], env=env)
    assert status.exit_code == 1
    assert "failed" in status.stdout and "The from address does not match a verified Sender Identity." in status.stdout
    as_json = json.loads(runner.invoke(app, ["send", "--status", "2026-w48", "--json"], env=env).stdout)
    assert as_json["counts"]["accepted"] == 1 and as_json["counts"]["failed"] == 1
    assert [b["status"] for b in as_json["batches"]] == ["failed", "accepted"]

    again = runner.invoke(app, ["send", "--retry-failed"], env=env)
    assert again.exit_code == 0, again.output
    assert len(standin.delivered) == 4 and set(standin.delivered.values()) == {1}


def test_the_cli_says_what_is_wrong_in_one_line(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 2)
    build(engine, settings)
    config = str(settings.base_dir / "newsletter.toml")
    runner = CliRunner()

    wrong_key = runner.invoke(app, ["send"], env={"NEWSLETTER_CONFIG": config, "SENDGRID_API_KEY": "SG.wrong"})
    assert wrong_key.exit_code == 1
    # One message (Rich wraps it at the width of the test's pseudo-terminal), no traceback.
    assert " ".join(wrong_key.stderr.split()) == (
        f"error: SendGrid at {standin.url} refused the API key (401: The provided authorization grant is invalid, "
        "expired, or revoked); check SENDGRID_API_KEY and that the key may send mail"
    )
    assert "SG.wrong" not in wrong_key.output

    no_key = runner.invoke(app, ["send"], env={"NEWSLETTER_CONFIG": config})
    assert no_key.exit_code == 2 and " ".join(no_key.stderr.split()) == (
        'error: delivery.transport is "sendgrid" but no API key is set: export SENDGRID_API_KEY'
    )
    unknown = runner.invoke(app, ["send", "--status", "1999-w01"], env={"NEWSLETTER_CONFIG": config})
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no issue '1999-w01'")
    if engine.dialect.name == "sqlite":
        worker = runner.invoke(app, ["send", "--worker"], env={"NEWSLETTER_CONFIG": config, "SENDGRID_API_KEY": API_KEY})
        assert worker.exit_code == 2 and "--worker needs PostgreSQL" in worker.stderr
    assert standin.delivered == Counter()


def test_the_demo_delivers_through_the_configured_api_host(
    standin: SendGridStandIn, tmp_path: Path
) -> None:
    runner = CliRunner()
    outbox = runner.invoke(app, ["demo", "--folder", str(tmp_path / "outbox-demo"), "--subscribers", "60", "--json"])
    assert outbox.exit_code == 0, outbox.output
    env = {"NEWSLETTER_DELIVERY__TRANSPORT": "sendgrid", "NEWSLETTER_SENDGRID__API_HOST": standin.url, "SENDGRID_API_KEY": API_KEY}

    result = runner.invoke(app, ["demo", "--folder", str(tmp_path / "sendgrid-demo"), "--subscribers", "60", "--json"], env=env)

    assert result.exit_code == 0, result.output
    by_outbox, by_sendgrid = json.loads(outbox.stdout), json.loads(result.stdout)
    assert by_sendgrid["recipients"] == by_outbox["recipients"] > 0
    assert by_sendgrid["sections"] == by_outbox["sections"] and by_sendgrid["segments"] == by_outbox["segments"]
    assert set(standin.delivered.values()) == {1} and len(standin.delivered) == by_outbox["recipients"]
    sent_by_outbox = {p.stem for p in (tmp_path / "outbox-demo" / "outbox").rglob("*.eml")}
    assert len(sent_by_outbox) == len(standin.delivered)
    assert not list((tmp_path / "sendgrid-demo").glob("outbox/*/*"))
    requests: list[MailRequest] = standin.accepted
    assert {len(r.body["content"]) for r in requests} == {2}

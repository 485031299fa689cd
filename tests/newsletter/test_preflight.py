"""The preflight: each check failing on a draft built to trip it, approval refused while
an error stands, and the send path refusing the same draft. Links are asked of the local
test server, never of the internet."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

import subscribers as people
from newsletter import drafts, issues, schedule, store
from newsletter.config import Settings
from newsletter.errors import IssueError
from newsletter.models import FeedItem, IssueStatus
from newsletter.preflight import Preflight
from newsletter.render import builtin_templates
from newsletter.tables import archive, batches, deliveries, segments
from tests.conftest import NOW
from tests.helpers import outbox_messages
from tests.servers import LocalServer, Request, Route

DAY = timedelta(days=1)


def add_articles(engine: Engine, *, base: str = "https://pharma.example.com", image: str = "") -> None:
    items = [
        FeedItem("dd", f"{base}/dd", "Trial meets its endpoint", "", NOW - DAY, ("Clinical Trials",), "Results.", image),
        FeedItem("mf", f"{base}/mf", "New bioreactor plant", "", NOW - 2 * DAY, ("Manufacturing",), "Plant.", ""),
        FeedItem("ev", f"{base}/ev", "Congress preview", "", NOW - 3 * DAY, ("Events",), "Congress.", ""),
    ]
    with engine.begin() as conn:
        store.upsert_articles(conn, items, source="test", now=NOW - DAY)


def template_folder(tmp_path: Path, *, mjml: tuple[str, str] = ("", ""), text: tuple[str, str] = ("", "")) -> str:
    """A templates folder whose digest is the built-in one with one replacement each."""
    folder = tmp_path / "templates" / "email"
    folder.mkdir(parents=True)
    for name, (old, new) in (("digest.mjml.j2", mjml), ("digest.txt.j2", text)):
        source = (builtin_templates() / "email" / name).read_text(encoding="utf-8")
        assert old in source
        (folder / name).write_text(source.replace(old, new) if old else source, encoding="utf-8")
    return str(tmp_path / "templates")


def check(engine: Engine, settings: Settings, *, links: bool = False) -> Preflight:
    _, report = drafts.check_draft(engine, settings, links=drafts.link_checker(settings) if links else None)
    return report


def messages(report: Preflight, level: str) -> list[str]:
    return [f"[{f.check}] {f.message}" for f in report.findings if f.level == level]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], engine: Engine) -> Settings:
    add_articles(engine)
    return make_settings()


def test_a_clean_draft_passes_and_is_approved_with_only_the_https_warning(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    add_articles(engine)
    settings = make_settings(site={"base_url": "http://127.0.0.1:8000"}, sender={"name": "Pharma Weekly"})
    drafts.build_draft(engine, settings, now=NOW)
    drafts.set_preheader(engine, "Three stories from the week in pharma, picked by our editors")
    report = check(engine, settings)
    assert report.passed and report.sizes[0].label == "all sections"
    assert messages(report, "warning") == [
        "[headers] site.base_url http://127.0.0.1:8000 is not https://: mailbox providers ignore a one-click "
        "unsubscribe URL that is not https (RFC 8058)"
    ]
    issue, _ = drafts.approve(engine, settings)
    assert issue.status is IssueStatus.APPROVED


def test_a_segment_over_the_size_limit_blocks_approval_and_the_send(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    add_articles(engine)
    settings = make_settings(delivery={"warn_bytes": 12_000})
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("reader@example.com", ("events",))], now=NOW)
    drafts.build_draft(engine, settings, now=NOW)
    report = check(engine, settings)
    (error,) = messages(report, "error")
    assert error.startswith("[size] all sections: the HTML is ")
    assert "bytes, over 12,000; Gmail clips messages at about 102 KB" in error
    assert [s.label for s in report.sizes] == ["all sections", "segment Events"]
    with pytest.raises(IssueError, match="fails its preflight .1 error.: all sections"):
        drafts.approve(engine, settings)
    # The send path runs the same preflight, while it plans: the plan is rolled back, so
    # nothing is planned, published or delivered, and the issue is still a draft.
    draft = drafts.current_draft(engine, settings)
    with pytest.raises(IssueError, match="over 12,000"):
        issues.send_pending(engine, settings, draft.issue, transport=issues.make_transport(settings), clock=lambda: NOW)
    with engine.connect() as conn:
        for table in (deliveries, batches, segments, archive):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0, table.name
        after = store.find_issue(conn, draft.issue.id)
    assert after is not None and after.status is IssueStatus.DRAFT
    assert not settings.outbox_dir.exists() or not any(settings.outbox_dir.rglob("*.eml"))


def test_a_send_with_nobody_to_plan_still_runs_the_preflight(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    """The preflight runs while the deliveries are written; with no one to write, it runs
    all the same, and its errors stop the send."""
    add_articles(engine)
    settings = make_settings(delivery={"warn_bytes": 12_000})
    draft = drafts.build_draft(engine, settings, now=NOW).draft
    with pytest.raises(IssueError, match="over 12,000"):
        issues.send_pending(engine, settings, draft.issue, transport=issues.make_transport(settings), clock=lambda: NOW)
    with engine.connect() as conn:
        after = store.find_issue(conn, draft.issue.id)
        assert conn.execute(select(func.count()).select_from(archive)).scalar_one() == 0
    assert after is not None and after.status is IssueStatus.DRAFT


def test_an_image_without_alt_text_is_an_error(engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    add_articles(engine, image="https://img.example.com/trial.jpg")
    folder = template_folder(tmp_path, mjml=(' alt=""', ""))
    settings = make_settings(templates={"folder": folder})
    drafts.build_draft(engine, settings, now=NOW)
    assert messages(check(engine, settings), "error") == [
        '[images] all sections: the image https://img.example.com/trial.jpg has no alt attribute (alt text, or alt="" when it is decorative)'
    ]


def test_links_that_do_not_answer_are_warnings_with_their_status(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    add_articles(engine, base=server.url)
    server.routes["/dd"] = Route(200, b"ok")
    server.routes["/mf"] = Route(404, b"gone")

    def head_refused(request: Request) -> Route:
        return Route(405) if request.method == "HEAD" else Route(200, b"ok")

    server.routes["/ev"] = head_refused
    settings = make_settings(preview={"link_timeout": 2})
    drafts.build_draft(engine, settings, now=NOW)
    report = check(engine, settings, links=True)
    assert report.passed
    assert [m for m in messages(report, "warning") if m.startswith("[links]")] == [
        f"[links] 'New bioreactor plant': {server.url}/mf answered 404 Not Found"
    ]
    # HEAD first; GET only where HEAD failed.
    asked = sorted((r.method, r.path) for r in server.requests)
    assert asked == [("GET", "/ev"), ("GET", "/mf"), ("HEAD", "/dd"), ("HEAD", "/ev"), ("HEAD", "/mf")]


def test_a_link_that_times_out_is_a_warning(engine: Engine, make_settings: Callable[..., Settings], server: LocalServer) -> None:
    add_articles(engine, base=server.url)
    for path in ("/dd", "/mf"):
        server.routes[path] = Route(200)
    server.routes["/ev"] = Route(200, delay=1.0)
    settings = make_settings(preview={"link_timeout": 0.2})
    drafts.build_draft(engine, settings, now=NOW)
    links = [m for m in messages(check(engine, settings, links=True), "warning") if m.startswith("[links]")]
    assert links == [f"[links] 'Congress preview': {server.url}/ev did not answer within 0.2 s"]


def test_empty_sections_are_warned_about_and_an_empty_draft_is_an_error(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("insights@example.com", ("insights",)),
                                         people.NewSubscriber("all@example.com", ("events", "insights"))], now=NOW)
    draft = drafts.build_draft(engine, settings, now=NOW).draft
    report = check(engine, settings)
    assert report.passed
    assert "[sections] the section Insights has no article this time, and subscribers chose it" in messages(report, "warning")
    assert ("[sections] subscribers who chose only sections without an article get no email this time (1 distinct choices)"
            in messages(report, "warning"))
    for item in draft.articles:
        drafts.exclude(engine, settings, item.article.id, now=NOW)
    assert messages(check(engine, settings), "error") == [f"[sections] issue {draft.issue.slug} has no article left: nothing to send"]


def test_subject_and_preheader_lengths(engine: Engine, settings: Settings) -> None:
    drafts.build_draft(engine, settings, now=NOW)
    drafts.set_subject(engine, "S" * 151)
    drafts.set_preheader(engine, "P" * 141)
    report = check(engine, settings)
    assert messages(report, "error") == ["[subject] the subject has 151 characters, over 150; inboxes show about 70"]
    assert "[preheader] the preheader has 141 characters; inboxes show about 140" in messages(report, "warning")
    drafts.set_subject(engine, "S" * 71)
    report = check(engine, settings)
    assert report.passed
    assert "[subject] the subject has 71 characters; inboxes show about 70, the rest is cut" in messages(report, "warning")


def test_a_template_without_the_unsubscribe_link_is_an_error(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    add_articles(engine)
    folder = template_folder(tmp_path, mjml=('<a href="{{ tags.unsubscribe_url }}">Unsubscribe</a>', ""))
    settings = make_settings(templates={"folder": folder})
    drafts.build_draft(engine, settings, now=NOW)
    assert messages(check(engine, settings), "error") == [
        "[unsubscribe] all sections: the HTML part has no unsubscribe link (%%unsubscribe_url%% in the template)"
    ]


def test_unknown_tags_are_errors_and_template_syntax_in_content_is_not(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    add_articles(engine)
    folder = template_folder(tmp_path, text=("{{ tags.greeting }}", "Hi %%first_nmae%%"))
    settings = make_settings(templates={"folder": folder})
    drafts.build_draft(engine, settings, now=NOW)
    drafts.add_item(engine, settings, title="Our webinar", link="https://pharma.example.com/webinar", section="events",
                    summary="Dear {{ first_name }}, join us", now=NOW)
    # The editor's "{{ first_name }}" is content, printed as it is (trust issue, 7); the
    # template's misspelt tag is ours, and nothing would fill it.
    assert messages(check(engine, settings), "error") == [
        "[unresolved] all sections: the text holds the substitution tag %%first_nmae%%, which nothing fills "
        "(known: %%first_name%%, %%greeting%%, %%preferences_url%%, %%text_first_name%%, %%text_greeting%%, "
        "%%unsubscribe_url%%)",
    ]


def test_an_approved_draft_is_sent_by_the_send_path(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("reader@example.com", ("events",))], now=NOW)
    drafts.build_draft(engine, settings, now=NOW)
    issue, _ = drafts.approve(engine, settings)
    report = issues.send_pending(engine, settings, issue, transport=issues.make_transport(settings), clock=lambda: NOW)
    assert report.recipients_sent == 1 and report.complete
    with engine.connect() as conn:
        sent = store.find_issue(conn, issue.id)
    assert sent is not None and sent.status is IssueStatus.SENT


def test_without_auto_send_the_schedule_sends_the_draft_once_it_is_approved(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    add_articles(engine)
    settings = make_settings(schedule={"auto_send": False, "editors": ["editor@example.com"]})
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("reader@example.com", ("events",))], now=NOW)
    drafts.build_draft(engine, settings, now=NOW)
    drafts.set_subject(engine, "The editors' subject")
    assert schedule.run_digest(engine, settings, NOW, clock=lambda: NOW).status == "awaiting_approval"
    issue, _ = drafts.approve(engine, settings)
    result = schedule.run_digest(engine, settings, NOW + timedelta(hours=1), clock=lambda: NOW)
    assert (result.status, result.issue, result.recipients) == ("sent", issue.slug, 1)
    sent = [m for m in outbox_messages(settings.outbox_dir) if m["To"] == "reader@example.com"]
    assert [str(m["Subject"]) for m in sent] == ["The editors' subject"]
    with pytest.raises(IssueError, match="there is no draft"):
        drafts.reopen(engine)

"""The outbox transport: valid RFC 5322 files a mail client can read back, personal
values filled in every part, and a batch written all at once or not at all."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from dataclasses import replace
from pathlib import Path

from newsletter.links import list_id, substitutions
from newsletter.models import Batch, OutcomeKind, Recipient, RenderedMessage
from newsletter.models import TAGS, TEXT_TAGS
from newsletter.transports.outbox import OutboxTransport
from tests.helpers import parts


def batch(recipients: list[Recipient], message: RenderedMessage, batch_id: int = 7) -> Batch:
    return Batch(id=batch_id, issue_id=1, issue_slug="2026-w48", segment_id=3, message=message, recipients=tuple(recipients),
                 sender_name="Pharma Wöchentlich", sender_address="news@example.com", reply_to="editors@example.com")


def recipient(n: int, name: str = "") -> Recipient:
    token = f"tok{n}" * 6
    return Recipient(n, f"reader{n}@example.com", substitutions(token, name, base_url="https://news.example.com"),
                     f"https://news.example.com/unsubscribe/{token}", f"mailto:unsub@example.com?subject=unsubscribe-{token}")


MESSAGE = RenderedMessage(
    subject="Pharma Weekly: Café ☕ 한국 — news",
    preheader="p",
    html=("<p>" + "x" * 70 + TAGS["greeting"] + "</p>\n" + "<a href=\"" + TAGS["unsubscribe_url"] + "\">Unsubscribe</a>"
          + "<p>" + "é" * 200 + "</p>" + "<p>line with = sign and trailing space </p>\n" * 3),
    text="Hi\n" + TEXT_TAGS["greeting"] + "\nManage: " + TEXT_TAGS["preferences_url"] + "\n" + "ü" * 100 + "\n",
)


def test_each_recipient_gets_a_readable_personal_message(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path)
    outcome = transport.send(batch([recipient(1, "Anna Keller"), recipient(2)], MESSAGE))
    assert outcome.kind is OutcomeKind.ACCEPTED
    files = sorted((tmp_path / "2026-w48" / "batch-000007").glob("*.eml"))
    assert [f.name for f in files] == ["s1.eml", "s2.eml"]
    parser = BytesParser(policy=policy.default)
    first = parser.parsebytes(files[0].read_bytes())
    assert first["To"] == "reader1@example.com"
    assert first["From"] == "Pharma Wöchentlich <news@example.com>"
    assert first["Reply-To"] == "editors@example.com"
    assert first["Subject"] == "Pharma Weekly: Café ☕ 한국 — news"
    assert first["List-Unsubscribe"] == (
        f"<https://news.example.com/unsubscribe/{'tok1' * 6}>, <mailto:unsub@example.com?subject=unsubscribe-{'tok1' * 6}>"
    )
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["Message-ID"] == "<2026-w48.7.1@example.com>"
    text, html = parts(first)  # type: ignore[arg-type]
    assert "Hello Anna," in html and "Hello Anna," in text
    assert f'href="https://news.example.com/unsubscribe/{"tok1" * 6}"' in html
    assert f"Manage: https://news.example.com/preferences/{'tok1' * 6}" in text
    assert "é" * 200 in html and "ü" * 100 in text
    assert html.count("line with = sign and trailing space </p>") == 3
    assert "%%" not in html + text
    second = parser.parsebytes(files[1].read_bytes())
    assert "Hello," in parts(second)[1] and second["Subject"] == "Pharma Weekly: Café ☕ 한국 — news"  # type: ignore[arg-type]
    for f in files:
        assert all(len(line) <= 998 for line in f.read_bytes().split(b"\r\n"))


def test_list_id_is_written_and_list_unsubscribe_folded(tmp_path: Path) -> None:
    """RFC 2919's List-Id on every digest, and the ~200-character List-Unsubscribe
    folded after its comma so each URI stands on a line of its own."""
    named = replace(batch([recipient(1)], MESSAGE), list_id=list_id("Pharma Wöchentlich", "news@Example.com"))
    OutboxTransport(tmp_path).send(named)
    raw = (tmp_path / "2026-w48" / "batch-000007" / "s1.eml").read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    at = next(i for i, line in enumerate(head) if line.startswith(b"List-Unsubscribe:"))
    assert head[at] == f"List-Unsubscribe: <https://news.example.com/unsubscribe/{'tok1' * 6}>,".encode()
    assert head[at + 1] == f" <mailto:unsub@example.com?subject=unsubscribe-{'tok1' * 6}>".encode()
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert message["List-Id"] == "Pharma Wöchentlich <pharma-wochentlich.example.com>"
    assert b"List-Id: =?utf-8?" in raw  # the phrase is RFC 2047-encoded, the header ASCII
    assert message["List-Unsubscribe"] == (
        f"<https://news.example.com/unsubscribe/{'tok1' * 6}>, <mailto:unsub@example.com?subject=unsubscribe-{'tok1' * 6}>"
    )
    # Mail that is not an issue (a confirmation, a test) carries no List-Id.
    OutboxTransport(tmp_path / "plain").send(batch([recipient(2)], MESSAGE))
    assert b"List-Id" not in next((tmp_path / "plain").rglob("*.eml")).read_bytes()


def test_a_batch_is_written_once(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path)
    transport.send(batch([recipient(1)], MESSAGE))
    target = tmp_path / "2026-w48" / "batch-000007" / "s1.eml"
    before = target.read_bytes()
    again = OutboxTransport(tmp_path).send(batch([recipient(1), recipient(2)], MESSAGE))
    assert again.kind is OutcomeKind.ACCEPTED
    assert target.read_bytes() == before and not (target.parent / "s2.eml").exists()


def test_a_batch_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path) -> None:
    blocker = tmp_path / "2026-w48"
    blocker.write_text("a file where the issue folder should be")
    outcome = OutboxTransport(tmp_path).send(batch([recipient(1)], MESSAGE))
    assert outcome.kind is OutcomeKind.RETRYABLE and "cannot write" in outcome.error
    assert blocker.is_file()

"""The web app's writes: many requests at once each answered after their commit, one
failing write failing alone; on SQLite the writes that queue are committed together."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, Engine, event, func, insert, select

import subscribers as people
from newsletter import db
from newsletter.config import Settings
from newsletter.web import create_app
from newsletter.web.writer import GroupWriter
from tests.conftest import NOW

SECRET = "writer-test-secret-0123456789"


def test_one_click_unsubscribes_at_once_are_grouped_and_each_answered_after_its_commit(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(security={"secret_key": SECRET})
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(f"r{n}@example.com", ("news",)) for n in range(60)], now=NOW)
        tokens = list(conn.execute(select(people.subscribers.c.token).order_by(people.subscribers.c.id)).scalars())
    app = create_app(settings, engine=engine, clock=lambda: NOW)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    # One made-up token among them: its request fails alone.
    paths = [f"/unsubscribe/{t}" for t in tokens] + ["/unsubscribe/" + "x" * 32]

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://news.example.com") as client:
            return await asyncio.gather(*(
                client.post(path, content=b"List-Unsubscribe=One-Click",
                            headers={"content-type": "application/x-www-form-urlencoded"})
                for path in paths
            ))

    answers = asyncio.run(post_all())
    assert [a.status_code for a in answers] == [200] * 60 + [404]
    assert "You are unsubscribed" in answers[0].text
    with engine.connect() as conn:
        assert people.count_by_status(conn).get(people.Status.UNSUBSCRIBED) == 60
        unsubscribed = conn.execute(
            select(func.count()).select_from(people.consents).where(people.consents.c.action == "unsubscribed")
        ).scalar_one()
    assert unsubscribed == 60
    if engine.dialect.name == "sqlite":
        # Sixty-one writes, far fewer commits: the writes that queued went together.
        assert 1 <= len(commits) < 30, len(commits)
    else:
        # PostgreSQL takes concurrent writers itself: a transaction per request.
        assert len(commits) >= 60


def test_the_writer_copies_its_commits_into_the_database_file_itself_after_answering(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint would run inside the commit that crosses its
    threshold, before that commit's requests are answered; the writer leaves it off on
    its connection and checkpoints on another one after each commit. What it committed
    reaches the database file itself (read here without the write-ahead log), and the
    pooled connection gets SQLite's threshold back."""
    path = tmp_path / "writer.db"
    engine = db.open_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    writer = GroupWriter(engine)

    def add(n: int) -> Callable[[Connection], int]:
        def work(conn: Connection) -> int:
            conn.execute(insert(people.suppressions).values(email=f"gone{n}@example.com", reason="bounce", created_at=NOW))
            return n
        return work

    async def write_all() -> list[int]:
        done = [await writer.run(add(n)) for n in range(3)]  # one at a time: groups of one
        done += await asyncio.gather(*(writer.run(add(n)) for n in range(3, 40)))
        assert writer.checkpointing is not None
        await writer.checkpointing
        return done

    assert asyncio.run(write_all()) == list(range(40))
    # `immutable`: SQLite reads the file as it is on disk, ignoring the write-ahead log.
    plain = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        assert plain.execute("SELECT count(*) FROM suppressions").fetchone() == (40,)
    finally:
        plain.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
    engine.dispose()


def test_a_write_alone_in_its_group_that_fails_leaves_nothing_and_fails_alone(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    db.upgrade(engine)
    writer = GroupWriter(engine)

    def half_done(conn: Connection) -> None:
        conn.execute(insert(people.suppressions).values(email="half@example.com", reason="bounce", created_at=NOW))
        raise ValueError("refused after its first statement")

    def whole(conn: Connection) -> str:
        conn.execute(insert(people.suppressions).values(email="whole@example.com", reason="bounce", created_at=NOW))
        return "done"

    async def one_then_other() -> str:
        with pytest.raises(ValueError, match="refused after its first statement"):
            await writer.run(half_done)
        return await writer.run(whole)

    assert asyncio.run(one_then_other()) == "done"
    with engine.connect() as conn:
        assert list(conn.execute(select(people.suppressions.c.email)).scalars()) == ["whole@example.com"]
    engine.dispose()

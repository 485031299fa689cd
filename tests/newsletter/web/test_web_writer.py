"""The web app's writes: many requests at once each answered after their commit, one
failing write failing alone; on SQLite the writes that queue are committed together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from sqlalchemy import Engine, event, func, select

import subscribers as people
from newsletter.config import Settings
from newsletter.web import create_app
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

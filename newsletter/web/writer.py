"""Group commit for the web app's writes to SQLite.

Owns: `GroupWriter`. Imports nothing of ours.

SQLite lets one writer in at a time, and every commit waits for the disk (`synchronous =
FULL`, see `db`: an acknowledged unsubscribe must outlive a power cut): about a millisecond
on a quiet disk, several on a busy one. One commit per request would cap the one-click
unsubscribes at a few hundred a second, and threads waiting in SQLite's busy handler sleep
and retry (a 99th percentile of 760 ms was measured). So the web process has one writer:
the writes that arrive while a commit is under way wait in a queue and then go together,
each in a savepoint of one transaction (`BEGIN IMMEDIATE`, so the write lock is taken at
once), under one commit. A write that fails rolls back its own savepoint and raises in
its own request only; a commit that fails raises in every request of the group. Nothing is
acknowledged before its commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine

T = TypeVar("T")

#: Writes committed together at most (the rest wait for the next commit).
GROUP_MAX = 256


class GroupWriter:
    """Runs write transactions for one engine, many per commit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self.draining = False

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a transaction of its own (a savepoint of the group's) and return
        what it returns, once the group is committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.queue.append((work, future))
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.queue:
                group, self.queue = self.queue[:GROUP_MAX], self.queue[GROUP_MAX:]
                try:
                    outcomes = await anyio.to_thread.run_sync(self._commit, [work for work, _ in group])
                except BaseException as exc:  # the commit failed: every write of the group did
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():  # the request went away
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self.draining = False

    def _commit(self, works: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            for work in works:
                savepoint = conn.begin_nested()
                try:
                    value = work(conn)
                except Exception as exc:
                    savepoint.rollback()
                    outcomes.append((False, exc))
                else:
                    savepoint.commit()
                    outcomes.append((True, value))
            conn.commit()
        return outcomes

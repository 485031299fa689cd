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

Checkpoints, which copy the committed pages from the write-ahead log into the database
file, are not left to the commit that happens to cross SQLite's threshold (1,000 pages):
that commit would answer its requests only after the copy (a fifth of the webhook's time
went there). The writer's connection has automatic checkpoints off; after a commit, a
passive checkpoint runs in a thread of its own on another connection, one at a time,
while the next group writes (SQLite lets a checkpoint and a writer run side by side). A
failed checkpoint is logged and tried again after the next commit; other processes (the
CLI, the scheduler) keep SQLite's automatic checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Writes committed together at most (the rest wait for the next commit).
GROUP_MAX = 256
#: SQLite's own threshold for automatic checkpoints, in pages, given back to the
#: writer's connection when it returns to the pool.
SQLITE_AUTOCHECKPOINT = 1000


class GroupWriter:
    """Runs write transactions for one engine, many per commit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self.draining = False
        #: The checkpoint under way, if any (see the module's docstring).
        self.checkpointing: asyncio.Task[None] | None = None

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
                if self.checkpointing is None or self.checkpointing.done():
                    self.checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())
        finally:
            self.draining = False

    async def _checkpoint(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._run_checkpoint)
        except Exception as exc:  # the next commit tries again
            log.warning("checkpoint of the write-ahead log failed: %s", exc)

    def _run_checkpoint(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _commit(self, works: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")
            try:
                return self._group(conn, works)
            finally:
                # The pool may lend this connection to a write of another kind.
                conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {SQLITE_AUTOCHECKPOINT}")

    def _group(self, conn: Connection, works: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        if len(works) == 1:  # alone in its group: its failure is the transaction's, no savepoint
            try:
                value = works[0](conn)
            except Exception as exc:
                conn.rollback()
                return [(False, exc)]
            conn.commit()
            return [(True, value)]
        outcomes: list[tuple[bool, Any]] = []
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

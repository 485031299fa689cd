"""What the desk keeps while it runs: the settings, the database, its page templates, the
signers of forms and sessions, the login limiter, the link checks running in the
background, and the version the page polls to stay in step.

Owns: `DeskContext`, `LinkChecks`, `desk_context`. Imports `config`, `drafts`, `issues`,
`preflight`, `render`, `web.forms`, `web.limits`, `web.desk.auth`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2
from sqlalchemy import Engine
from starlette.requests import Request

from ... import drafts, issues
from ...config import Settings
from ...errors import ConfigError
from ...preflight import Finding, LinkChecker
from ...render import builtin_templates
from ..forms import CsrfSigner
from ..limits import Counters, RateLimiter
from .auth import Sessions

log = logging.getLogger("newsletter.desk")


@dataclass
class LinkChecks:
    """The article links of the draft, asked in a thread so that the page never waits for
    them. `results` answers at once: None while they are being asked (a check is started
    when none runs for these links), else the warnings."""

    checker: LinkChecker
    _done: dict[tuple[str, ...], list[Finding]] = field(default_factory=dict)
    _running: set[tuple[str, ...]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def key(draft: drafts.Draft) -> tuple[str, ...]:
        urls = [a.article.url for a in draft.articles]
        return tuple(sorted([*urls, draft.sponsor.url if draft.sponsor else ""]))

    def results(self, draft: drafts.Draft) -> list[Finding] | None:
        key = self.key(draft)
        with self._lock:
            if key in self._done:
                return self._done[key]
            if key in self._running:
                return None
            self._running.add(key)
        articles = [a.article for a in draft.articles]
        threading.Thread(target=self._run, args=(key, articles, draft.sponsor), daemon=True,
                         name="desk-links").start()
        return None

    def _run(self, key: tuple[str, ...], articles: list[object], sponsor: object) -> None:
        try:
            found = self.checker.check(articles, sponsor=sponsor)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a failed check must not leave the page waiting forever
            log.exception("link checks failed")
            found = []
        with self._lock:
            self._running.discard(key)
            # Only the latest few sets are kept: a draft edited all day changes its links often.
            if len(self._done) > 20:
                self._done.clear()
            self._done[key] = found


@dataclass
class DeskContext:
    settings: Settings
    engine: Engine
    pages: jinja2.Environment
    csrf: CsrfSigner
    sessions: Sessions | None
    logins: RateLimiter
    links: LinkChecks
    watch: tuple[Path, ...]
    clock: Callable[[], datetime]

    def now(self) -> int:
        return int(self.clock().timestamp())

    def version(self) -> str:
        """Changes when the draft or a template file changes: the page reloads then."""
        digest = hashlib.sha256(drafts.draft_fingerprint(self.engine).encode())
        for folder in self.watch:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return digest.hexdigest()[:16]


def context_of(request: Request) -> DeskContext:
    context: DeskContext = request.app.state.desk
    return context


def desk_context(settings: Settings, *, engine: Engine | None, clock: Callable[[], datetime],
                 counters: Counters | None = None) -> DeskContext:
    """The desk's context: secrets drawn now (a restart ends every session and form)."""
    folders = [builtin_templates()]
    if settings.templates.folder:
        folders.insert(0, settings.path(settings.templates.folder))
    hours = settings.preview.session_hours
    if counters is None:
        # Counted where the web app counts (Redis when configured), so restarts of the desk
        # and several desks behind one address do not reset the count of wrong passwords.
        try:
            counters = Counters(settings.web.rate_limit_storage, namespace=settings.site.base_url + "#desk")
        except ValueError as exc:
            raise ConfigError(f"web.rate_limit_storage: {exc}") from None
    return DeskContext(
        settings=settings, engine=engine or issues.open_database(settings), pages=issues.page_environment(settings),
        csrf=CsrfSigner(secrets.token_urlsafe(32), max_age=int(hours * 3600)),
        sessions=Sessions(secrets.token_urlsafe(32), max_age=int(hours * 3600)) if settings.preview.password_hash else None,
        logins=RateLimiter(limit=5, window=300, name="desk-login", counters=counters),
        links=LinkChecks(drafts.link_checker(settings, ttl=300)),
        watch=tuple(f for f in folders if f.is_dir()), clock=clock,
    )

"""The editors' drafts: build or refresh the coming issue keeping the editors' changes,
change it, check it, approve it, reopen it, send a test of it; and the draft log of every
change. The `draft` commands and the desk (`newsletter preview`) call these same functions.

Owns `draft_log`; exports the package's public names. Its modules, each importing
only those listed before it:
- `journal`: the draft log and the draft's version number (optimistic concurrency);
- `compose`: the draft, loading it, recomposing its articles, building and refreshing it;
- `edits`: the editors' changes (texts, pin, exclude, move, add an item, the sponsor);
- `review`: the preflight, approval and reopening, a test send.
"""

from __future__ import annotations

from sqlalchemy import Engine

from ..config import Settings
from .compose import (
    EDITOR_SOURCE,
    Choice,
    Draft,
    DraftArticle,
    DraftBuild,
    build_draft,
    current_draft,
    draft_fingerprint,
    latest_draft,
    load_draft,
)
from .edits import (
    add_item,
    exclude,
    move,
    pin,
    set_intro,
    set_preheader,
    set_sponsor,
    set_subject,
    set_texts,
)
from .journal import ORIGINS, Entry, entries, version_of
from .review import (
    TEST_PREFIX,
    Audience,
    approve,
    audience,
    check_draft,
    link_checker,
    reopen,
    sample_message,
    send_test,
    send_to_editors,
)

__all__ = [
    "EDITOR_SOURCE", "ORIGINS", "TEST_PREFIX", "Audience", "Choice", "Draft", "DraftArticle", "DraftBuild", "Entry", "add_item",
    "approve", "audience", "build_draft", "check_draft", "current_draft", "draft_fingerprint", "draft_log", "entries", "exclude",
    "link_checker", "load_draft", "move", "pin", "reopen", "sample_message", "send_test", "send_to_editors", "set_intro",
    "set_preheader", "set_sponsor", "set_subject", "set_texts", "version_of",
]


def draft_log(engine: Engine, settings: Settings, *, limit: int = 200) -> tuple[Draft, list[Entry]]:
    """The current draft (approved or not) and its log, newest first."""
    with engine.connect() as conn:
        issue = latest_draft(conn)
        return load_draft(conn, settings, issue), entries(conn, issue.id, limit=limit)

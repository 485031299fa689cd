"""Link tokens: the random secret in every subscriber's personal links.

Owns: `new_token`, `looks_like_token`, `rotate_token`. Imports `tables` of this package.
A token carries 192 random bits, so it cannot be guessed; rotating it (a new value in the
row) invalidates every old link at once. Looking a subscriber up by token is
`store.subscriber_by_token`.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import Connection, update

from .tables import subscribers

TOKEN_BYTES = 24
# `secrets.token_urlsafe(24)` gives 32 characters of the URL-safe base64 alphabet. Older
# tokens may be up to the column's 64 characters; anything else is not ours.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")


def new_token() -> str:
    """A fresh URL-safe token of 192 random bits."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def looks_like_token(value: str) -> bool:
    """Whether `value` has the shape of a token, so obvious garbage costs no query."""
    return _TOKEN.fullmatch(value) is not None


def rotate_token(conn: Connection, subscriber_id: int) -> str:
    """Give the subscriber a new token and return it; every link with the old one stops
    working."""
    token = new_token()
    conn.execute(update(subscribers).where(subscribers.c.id == subscriber_id).values(token=token))
    return token

"""Link tokens: the random secret in every subscriber's personal links.

Owns: `new_token`. Imports nothing of ours. A token carries 192 random bits, so it
cannot be guessed; rotating it (a new value in the row) invalidates every old link.
"""

from __future__ import annotations

import secrets

TOKEN_BYTES = 24


def new_token() -> str:
    """A fresh URL-safe token of 192 random bits."""
    return secrets.token_urlsafe(TOKEN_BYTES)

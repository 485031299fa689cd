"""A reader's time zone: the IANA names this machine knows, and checking one.

Owns: `check_timezone`, `timezone_names`. Imports `errors` of this package.

A subscriber's zone is stored as its IANA name (`Europe/London`), or NULL for the site's
own (`[site] timezone`), so that a reader who never chose one follows the site if it
moves. The list is `zoneinfo.available_timezones()`, read once: the preference page
offers it, and every way in (the form, the JSON body, the CSV import, the CLI) checks a
name against it with one dictionary look-up, fast enough for a million-row import.
"""

from __future__ import annotations

import functools
import zoneinfo

from .errors import InvalidTimezoneError


@functools.cache
def timezone_names() -> tuple[str, ...]:
    """Every IANA zone name this machine knows, sorted (Africa/Abidjan … UTC)."""
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.cache
def _by_folded_name() -> dict[str, str]:
    # Exact names first; a name typed in another case ("europe/london") finds its zone.
    return {name.casefold(): name for name in timezone_names()}


def check_timezone(name: str) -> str:
    """The zone's IANA name as the list spells it, or `InvalidTimezoneError` naming the
    value. Surrounding spaces are ignored; an empty name is an error too (callers
    treat "not given" themselves)."""
    cleaned = name.strip()
    found = _by_folded_name().get(cleaned.casefold())
    if found is None:
        shown = cleaned if len(cleaned) <= 40 else cleaned[:40] + "…"
        raise InvalidTimezoneError(
            f"{shown!r} is not a known time zone; use an IANA name such as Europe/London or America/New_York"
        )
    return found

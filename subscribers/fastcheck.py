"""A fast path for the common email address: plain ASCII, dot-atom local part, an
ordinary host name. Decides exactly as `store.normalize_email` (email-validator) does, in
about a twentieth of the time; anything it is not sure of is left to email-validator.

Owns: `quick_normalize`. Imports email-validator (for its list of special-use domains)
and nothing of ours.

Why this is the same decision, following email-validator 2.x with the options
`normalize_email` uses (no quoted local part, no domain literal, no display name,
globally deliverable, not the test environment):
- A pure-ASCII address with one @, no quote, bracket, angle bracket or space, splits as
  email-validator splits it (at the @) and has no display name.
- The local part matches its `DOT_ATOM_TEXT` (atext runs separated by single dots), so
  it is kept as written (only RFC 2142 mailbox names are lowercased, and we lowercase
  everything afterwards anyway).
- The domain is LDH labels of 1 to 63 characters that neither start nor end with a
  hyphen, at least two of them, the last ending with a letter. UTS-46 mapping of such a
  name only lowercases it; it matches `DOT_ATOM_TEXT_HOSTNAME`, so no IDNA encoding
  happens. Names holding `--` anywhere (Punycode `xn--`, or the reserved `ab--` form
  email-validator refuses) are left to email-validator, as are the special-use names it
  refuses (`SPECIAL_USE_DOMAIN_NAMES`: .test, .local, .onion, …).
- Lengths: at most 64 characters before the @ and 254 in all, the limits
  `normalize_email` adds; longer ones are left to it, with its error message.
The result is then the address lowercased, as `normalize_email` returns it. The test
`tests/subscribers/test_import_speed_paths.py` checks this on a generated corpus of tricky addresses.
"""

from __future__ import annotations

import re

import email_validator

_ATEXT = r"A-Za-z0-9_!#$%&'*+/=?^`{|}~-"
_LOCAL = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LAST_LABEL = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
_ADDRESS = re.compile(rf"({_LOCAL})@((?:{_LABEL}\.)+{_LAST_LABEL})")

#: Domains already looked at: lowercased domain → whether the fast path may accept it.
#: Bounded, so that memory stays flat however many distinct domains a file holds.
_DOMAINS: dict[str, bool] = {}
_DOMAINS_MAX = 50_000


def _plain_domain(domain: str) -> bool:
    known = _DOMAINS.get(domain)
    if known is not None:
        return known
    special = email_validator.SPECIAL_USE_DOMAIN_NAMES
    plain = "--" not in domain and not any(domain == d or domain.endswith("." + d) for d in special)
    if len(_DOMAINS) >= _DOMAINS_MAX:
        _DOMAINS.clear()
    _DOMAINS[domain] = plain
    return plain


def quick_normalize(address: str) -> str | None:
    """The normalized (lowercased) form of an already stripped address when it is a plain
    ASCII one this module is sure of, else None: ask `store.normalize_email`. Never says
    that an address is invalid."""
    if len(address) > 254 or not address.isascii():
        return None
    match = _ADDRESS.fullmatch(address)
    if match is None or len(match.group(1)) > 64:
        return None
    lowered = address.lower()
    return lowered if _plain_domain(lowered[match.end(1) + 1:]) else None

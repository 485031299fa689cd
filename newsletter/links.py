"""Every personal URL and per-recipient value, each encoded for the part it lands in.

Owns: `PersonalLinks`, `personal_links`, `substitutions`, `recipient`, `list_unsubscribe`,
`list_id`, `first_name`. Imports `models`.

A rendered segment leaves a substitution tag wherever a reader's own value goes; the
transports fill the tags for each recipient from the one dictionary `substitutions`
builds. Each tag names the part it stands in, so each value is encoded for that place:

| value           | HTML part (`models.TAGS`)   | text part (`models.TEXT_TAGS`) |
|-----------------|-----------------------------|--------------------------------|
| greeting        | `%%greeting%%`, escaped     | `%%text_greeting%%`, as typed  |
| first name      | `%%first_name%%`, escaped   | `%%text_first_name%%`, as typed|
| preferences URL | `%%preferences_url%%`       | the same tag                   |
| unsubscribe URL | `%%unsubscribe_url%%`       | the same tag                   |

The two URLs share one tag: they are `site.base_url` (which the configuration refuses
when it holds a character HTML would escape) and a URL-safe token, so their one value is
right in both parts. Headers get no substitution tags: the one personal header,
List-Unsubscribe, is built by `list_unsubscribe` from URLs alone, and a name never goes in
a header. Names are checked where they enter (`subscribers.check_name`: no control
characters, at most 100 characters); here they still lose `%` (no value may look like a
tag) and any control character a row from before that check holds.

A new personal value is added here and in the tables of `models`, nowhere else: the test
`tests/newsletter/test_links.py` fails when a tag of either table has no value here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.utils import formataddr
from html import escape

from .models import TAGS, TEXT_TAGS, Recipient

_GREETING, _FIRST_NAME, _PREFERENCES_URL, _UNSUBSCRIBE_URL = (
    TAGS["greeting"], TAGS["first_name"], TAGS["preferences_url"], TAGS["unsubscribe_url"]
)
_TEXT_GREETING, _TEXT_FIRST_NAME = TEXT_TAGS["greeting"], TEXT_TAGS["first_name"]
_UNSAFE = re.compile(r"[%\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class PersonalLinks:
    """The links that belong to one subscriber's token."""

    confirm_url: str
    preferences_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str

    def as_dict(self) -> dict[str, str]:
        return {
            "confirm_url": self.confirm_url,
            "preferences_url": self.preferences_url,
            "unsubscribe_url": self.unsubscribe_url,
        }


def personal_links(token: str, *, base_url: str, mailto: str) -> PersonalLinks:
    """Every URL that carries `token`: confirmation, preferences, one-click unsubscribe,
    and the mailto: unsubscribe address (`mailto` is the mailbox that receives them)."""
    return PersonalLinks(
        confirm_url=f"{base_url}/confirm/{token}",
        preferences_url=f"{base_url}/preferences/{token}",
        unsubscribe_url=f"{base_url}/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:{mailto}?subject=unsubscribe-{token}",
    )


def first_name(name: str) -> str:
    """The first word of a name, without `%` or control characters."""
    if not name.isprintable() or "%" in name:
        name = _UNSAFE.sub(" ", name)
    words = name.split(maxsplit=1)
    return words[0] if words else ""


def substitutions(token: str, name: str, *, base_url: str) -> dict[str, str]:
    """The value of every substitution tag for one recipient, each encoded for its part.
    This function runs once per recipient of a send: keep it lean."""
    first = first_name(name)
    greeting = f"Hello {first}," if first else "Hello,"
    html_first = escape(first)
    return {
        _GREETING: f"Hello {html_first}," if first else "Hello,",
        _FIRST_NAME: html_first,
        _TEXT_GREETING: greeting,
        _TEXT_FIRST_NAME: first,
        _PREFERENCES_URL: f"{base_url}/preferences/{token}",
        _UNSUBSCRIBE_URL: f"{base_url}/unsubscribe/{token}",
    }


def recipient(subscriber_id: int, email: str, token: str, name: str, *, base_url: str, mailto: str) -> Recipient:
    """One addressee with every personal value of an issue's email."""
    return Recipient(
        subscriber_id,
        email,
        substitutions(token, name, base_url=base_url),
        f"{base_url}/unsubscribe/{token}",
        f"mailto:{mailto}?subject=unsubscribe-{token}",
    )


def list_unsubscribe(recipient: Recipient) -> str:
    """The value of the List-Unsubscribe header (RFC 2369; one-click per RFC 8058 with
    List-Unsubscribe-Post): the HTTPS link first, the mailto: second."""
    return f"<{recipient.unsubscribe_url}>, <{recipient.unsubscribe_mailto}>"


def list_unsubscribe_folded(recipient: Recipient) -> str:
    """`list_unsubscribe` folded after its comma (RFC 5322 2.2.3), for a header written
    as it is sent: the two URIs together run to about 200 characters; folded, each stands
    on a line of its own (a URI itself cannot be folded)."""
    return f"<{recipient.unsubscribe_url}>,\r\n <{recipient.unsubscribe_mailto}>"


def list_id(site_name: str, sender_address: str) -> str:
    """The value of the List-Id header (RFC 2919) of a digest: the site's name as the
    phrase (quoted or RFC 2047-encoded as it needs) and `<label.domain>`, where the label
    is the name in lowercase ASCII letters, digits and hyphens and the domain is the
    sender's. Mail clients and filters group the issues by it."""
    ascii_name = unicodedata.normalize("NFKD", site_name).encode("ascii", "ignore").decode()
    label = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-") or "newsletter"
    domain = sender_address.rpartition("@")[2].strip().lower() or "localhost"
    return formataddr((site_name, f"{label}.{domain}"), charset="utf-8")

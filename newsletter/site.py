"""What the public pages share whoever serves them (the web app, the archive and its
static export): the values every page template sees, the privacy notice, and the
subscribe form a publisher pastes into their own site.

Owns: `page_globals`, `privacy_html`, `embed_form`, `DEFAULT_PRIVACY`. Imports `config`,
`errors`, `theme` and `render` (its Markdown sanitizer).

Every page extends `templates/web/base.html`, which wears the emails' theme (`[theme]`
logo and colours, light and dark) and closes with the footer's privacy link. Links to
the web app start with `web_root`: "" on the web app's own pages, the site's base URL
on the archive's, so that an exported archive hosted elsewhere still links home.
"""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import Markup

from .config import Settings
from .errors import ConfigError
from .render import INTRO_TAGS, intro_html
from .theme import Theme

#: The privacy notice when neither `site.privacy` nor `site.privacy_file` gives one.
DEFAULT_PRIVACY = """\
## What we keep

When you subscribe to {name} we keep your email address, the name you give (if any),
the sections you chose, and a record of your consent: when you subscribed and confirmed,
from which IP address and browser. We keep the same record of every later change
(sections, pauses, unsubscribing).

If our email provider reports them, we also note whether each newsletter was delivered,
and when a link in it was opened or clicked, to learn which stories readers want.

## Why

Only to send you the newsletter you asked for and to prove that you asked for it. We do
not sell or share your address, and the public archive holds nothing personal.

## How to leave

Every email has a link to unsubscribe at once and a link to your preferences, where you
can choose fewer sections or pause. After you unsubscribe we keep your address only on a
list that makes sure we never write to it again.

## Contact

{contact}
"""


def _contact(settings: Settings) -> str:
    address = settings.sender.reply_to or settings.sender.address
    lines = [f"Write to <{address}>."] if address else []
    if settings.site.postal_address:
        lines.append(f"By post: {settings.site.postal_address}.")
    return "\n".join(lines)


def privacy_markdown(settings: Settings) -> str:
    """The privacy notice's Markdown: `site.privacy`, else the file `site.privacy_file`,
    else `DEFAULT_PRIVACY` filled in from the settings. A file that cannot be read is a
    `ConfigError` naming it."""
    site = settings.site
    if site.privacy.strip():
        return site.privacy
    if site.privacy_file:
        path = settings.path(site.privacy_file)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8"
            raise ConfigError(f"site.privacy_file: {path} cannot be read ({reason})") from None
    return DEFAULT_PRIVACY.format(name=site.name, contact=_contact(settings))


def privacy_html(settings: Settings) -> Markup:
    """The privacy notice as sanitized HTML (raw HTML in the Markdown shows as text)."""
    return intro_html(privacy_markdown(settings), tags=INTRO_TAGS | {"h2"})


def page_globals(settings: Settings, theme: Theme) -> dict[str, Any]:
    """What every page template sees: the site, the theme, where the web app is."""
    site = settings.site
    return {
        "site": {
            "name": site.name, "base_url": site.base_url, "description": site.description,
            "postal_address": site.postal_address,
        },
        "theme": theme,
        "web_root": "",
    }


def embed_form(env: jinja2.Environment, settings: Settings, *, sections: bool = True) -> str:
    """The HTML of a subscribe form for the publisher's own site (a WordPress "Custom
    HTML" widget, say): a plain form posting to `<base_url>/subscribe`, no script, no
    style of its own beyond a few inline rules, answered by the web app's pages."""
    template = env.get_template("embed.html")
    return template.render(
        action=f"{settings.site.base_url}/subscribe",
        sections=settings.section_names() if sections else {},
    ).strip() + "\n"

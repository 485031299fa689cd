"""The demo: the whole weekly pipeline on the embedded defaults, in a folder of its own.

Owns: `prepare_demo`, `demo_subscribers`, `shifted_feed`. Imports `config` and what
`subscribers` exports. The CLI's `demo` command runs the use cases on what this prepares.

The sample feed (`pharma-news.xml`, 38 articles over 24 days, in the trade site's
categories) carries the habits of a real WordPress site with Yoast: the "appeared first
on" line closing every description, `[&hellip;]` excerpt markers, a description that is
nothing but that line (the summary comes from `content:encoded`), an image offered only as
a 150×150 `media:thumbnail`, and a new child category no section lists. It is rewritten with its dates moved so that its newest article was published
just before now: whatever the date, this week's issue has articles in every section.
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from subscribers import NewSubscriber

SAMPLE_FEED = Path(__file__).parent / "pharma-news.xml"
_DATE = re.compile(r"<(pubDate|lastBuildDate)>([^<]+)</\1>")

CONFIG_TEMPLATE = """\
# Written by `newsletter demo`. Every key is explained in the configuration reference, docs/configuration.md.
[site]
name = "Pharma Industry Weekly"
base_url = "http://127.0.0.1:8000"
postal_address = "Pharma Industry Weekly, 1 Example Street, London EC1A 1AA, United Kingdom"
timezone = "Europe/London"

[sender]
name = "Pharma Industry Weekly"
address = "newsletter@pharma-news.example.com"
reply_to = "editors@pharma-news.example.com"

[database]
url = "sqlite:///newsletter.db"

[delivery]
transport = "outbox"
outbox_dir = "outbox"
unsubscribe_mailto = "unsubscribe@pharma-news.example.com"

[selection]
per_section_limit = 5
fallback_section = "news"

[security]
# A random key made for this demo only, so `newsletter serve` can sign its forms. In
# production give it as NEWSLETTER_SECRET_KEY instead of writing it here.
secret_key = "{secret_key}"

[[feeds]]
name = "Pharma Industry News (sample)"
url = "{feed_url}"
"""

FIRST_NAMES = [
    "Anna", "Ben", "Chloé", "Daniel", "Eun-ji", "Farah", "Giulia", "Hiroshi", "Isabel", "Jonas",
    "Karin", "Liam", "Mariam", "Nikhil", "Olivia", "Pedro", "Qing", "Rosa", "Sven", "Tomás", "", "",
]
#: Where the sample readers read, in proportion (a pharma trade list read in London, Boston,
#: Basel and Seoul), so the demo shows delivery by each reader's clock. Taken by turn
#: from the reader's number, so the random choices above stay what they were.
DEMO_ZONES = (
    "Europe/London", "America/New_York", "Europe/Zurich", "Europe/London", "Asia/Seoul",
    "America/New_York", "Europe/London", "Europe/Zurich", "Europe/London", "America/New_York",
)
LAST_NAMES = ["Smith", "Müller", "Kim", "García", "Rossi", "Patel", "Nowak", "Dubois", "Sato", "O'Brien"]


def shifted_feed(now: datetime, source: Path = SAMPLE_FEED) -> str:
    """The sample feed's text with every date moved by the same amount, so that its
    newest article is ten minutes old."""
    text = source.read_text(encoding="utf-8")
    dates = [parsedate_to_datetime(m.group(2)) for m in _DATE.finditer(text) if m.group(1) == "pubDate"]
    delta = (now - timedelta(minutes=10)) - max(dates)

    def move(match: re.Match[str]) -> str:
        moved = parsedate_to_datetime(match.group(2)) + delta
        return f"<{match.group(1)}>{format_datetime(moved)}</{match.group(1)}>"

    return _DATE.sub(move, text)


def prepare_demo(folder: Path, *, now: datetime) -> Path:
    """Create the demo folder with its shifted feed and (if absent) its config; returns
    the config path. An existing config is kept, so a user's edits survive a rerun."""
    folder.mkdir(parents=True, exist_ok=True)
    feed = folder / "sample-feed.xml"
    feed.write_text(shifted_feed(now), encoding="utf-8")
    config = folder / "newsletter.toml"
    if not config.exists():
        text = CONFIG_TEMPLATE.format(feed_url=feed.resolve().as_uri(), secret_key=secrets.token_urlsafe(32))
        config.write_text(text, encoding="utf-8")
    return config


def demo_subscribers(sections: list[str], count: int = 1000, *, seed: int = 48) -> Iterator[NewSubscriber]:
    """`count` sample subscribers, the same every run: about a third take every section,
    the rest one to four sections, as real readers do; four readers in ten in London,
    three in New York, two in Zurich, one in Seoul (`DEMO_ZONES`)."""
    rng = random.Random(seed)
    for n in range(1, count + 1):
        if rng.random() < 0.35:
            chosen = tuple(sections)
        else:
            chosen = tuple(rng.sample(sections, rng.randint(1, min(4, len(sections)))))
        first = rng.choice(FIRST_NAMES)
        name = f"{first} {rng.choice(LAST_NAMES)}" if first else ""
        yield NewSubscriber(email=f"reader{n:05d}@example.com", name=name, sections=chosen, source="demo",
                            timezone=DEMO_ZONES[n % len(DEMO_ZONES)])

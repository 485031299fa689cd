"""One frozen, validated settings object from `newsletter.toml` and the environment.

Owns: `Settings` and its tables, `load_settings`, `hand_to_workers`, `default_sections`.
This is the only module that reads (or writes) `os.environ`. Imports `errors` only.

Precedence, highest first:
1. `SENDGRID_API_KEY`, `NEWSLETTER_DATABASE_URL`, `NEWSLETTER_SECRET_KEY`;
2. `NEWSLETTER_<TABLE>__<KEY>` for any key of a table (`NEWSLETTER_DELIVERY__TRANSPORT`);
3. the file;
4. the defaults below, every one with a help text.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .errors import ConfigError

DEFAULT_CONFIG = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
SPECIAL_ENV = {
    "SENDGRID_API_KEY": ("sendgrid", "api_key"),
    "NEWSLETTER_DATABASE_URL": ("database", "url"),
    "NEWSLETTER_SECRET_KEY": ("security", "secret_key"),
}


def _comma_list(value: Any) -> Any:
    """A list setting given as one string (as the environment gives it) split on commas:
    NEWSLETTER_WEB__CORS_ORIGINS="https://a.com,https://b.com"."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


# A list of strings that the environment may give as one comma-separated string.
CommaList = Annotated[list[str], BeforeValidator(_comma_list)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSettings(_Table):
    name: str = Field("Pharma Industry Weekly", description="The site's name, shown in every email and page.")
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public base URL of the web app; every link in an email starts with it.",
    )
    postal_address: str = Field(
        "Pharma Industry Weekly, 1 Example Street, London EC1A 1AA, United Kingdom",
        description="Postal address printed in every email's footer (required by CAN-SPAM).",
    )
    timezone: str = Field("Europe/London", description="IANA time zone for issue windows, dates and schedules.")

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL such as https://news.example.com")
        # Personal links are this URL and a token, one value for the HTML and the text
        # part alike (see `links`): nothing in it may need escaping in HTML.
        bad = re.search(r"[\s&<>\"'%]", value)
        if bad:
            raise ValueError(f"the URL may not hold {bad.group(0)!r} (spaces, &, <, >, quotes and % are refused)")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as Europe/London, got {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class SenderSettings(_Table):
    name: str = Field("Pharma Industry Weekly", description="Sender name in the From header.")
    address: str = Field("newsletter@example.com", description="Sender address in the From header.")
    reply_to: str = Field("", description="Reply-To address; empty for none.")

    @field_validator("address", "reply_to")
    @classmethod
    def _check_address(cls, value: str) -> str:
        if value and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError(f"expected an email address, got {value!r}")
        return value


class SectionSettings(_Table):
    name: str = Field(description="Heading of the section in the email.")
    slug: str = Field(description="Short stable identifier (lowercase letters, digits, dashes).")
    categories: list[str] = Field(default_factory=list, description="Source categories that map into this section.")

    @field_validator("slug")
    @classmethod
    def _check_slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", value):
            raise ValueError(f"expected lowercase letters, digits and dashes, got {value!r}")
        return value


class FeedSettings(_Table):
    name: str = Field(description="A name for the feed in reports.")
    url: str = Field(description="URL of an RSS or Atom feed (http, https, or file: for a local file).")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^(https?://[^/\s]+|file:)", value):
            raise ValueError("expected an http://, https:// or file: URL")
        return value


class WordPressSettings(_Table):
    name: str = Field(description="A name for the site in reports and on its articles.")
    url: str = Field(description="Base URL of the WordPress site; posts are read from {url}/wp-json/wp/v2/posts.")
    first_days: int = Field(30, ge=1, le=3650, description="Days of posts the first ingest asks for.")
    overlap_hours: float = Field(
        24.0, ge=0, le=720,
        description="Later ingests ask again for posts this many hours before the last successful one (late or backdated posts).",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected the site's http:// or https:// base URL, such as https://news.example.com")
        return value.rstrip("/")


class FolderSettings(_Table):
    name: str = Field(description="A name for the folder in reports and on its articles.")
    path: str = Field(description="Folder of Markdown items with YAML front matter, relative to the config file.")


class IngestSettings(_Table):
    timeout: float = Field(
        20.0, gt=0, description="Seconds to wait for a connection or for each read of a source; see deadline for the whole fetch."
    )
    max_bytes: int = Field(10_000_000, gt=0, description="Largest feed body accepted, in bytes.")
    summary_chars: int = Field(300, ge=40, description="Summaries are cut on a word boundary to this many characters.")
    user_agent: str = Field("newsletter/0.1 (+https://github.com/)", description="User-Agent sent with every fetch.")
    retries: int = Field(2, ge=0, le=10, description="WordPress: times a request is tried again after a 5xx, 429, timeout or lost connection.")
    retry_backoff: float = Field(1.0, ge=0, le=60, description="WordPress: seconds before the first retry; doubled for each later one.")
    deadline: float = Field(
        60.0, gt=0, le=3600,
        description="Seconds one source's whole fetch (every request, redirect, retry and read) may take, besides "
        "the per-read timeout; past it the source is reported failed and the others are still read.",
    )
    allow_networks: CommaList = Field(
        default_factory=list,
        description="CIDR networks (such as 10.1.0.0/16 or 127.0.0.1/32) that fetches may reach although they are "
        "loopback, private, link-local or otherwise internal; empty (the default): only public addresses are reached.",
    )

    @field_validator("allow_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=True)
            except ValueError as exc:
                hint = ""
                if "host bits set" in str(exc):
                    hint = f"; did you mean {ipaddress.ip_network(entry, strict=False)}?"
                raise ValueError(f"{entry!r} is not a CIDR network such as 10.1.0.0/16 or 127.0.0.1/32{hint}") from None
        return value


class ImageSettings(_Table):
    hero_width: int = Field(
        552, ge=100, le=2000,
        description="Width in pixels of the email's full-width image slot; of the sizes a source offers, "
        "the widest up to twice this is kept.",
    )
    min_hero_width: int = Field(
        400, ge=1, le=2000,
        description="An image known to be narrower is small: shown as a thumbnail, never stretched into a full-width image.",
    )


class SelectionSettings(_Table):
    per_section_limit: int = Field(5, ge=1, le=50, description="Most articles per section in one issue.")
    fallback_section: str = Field(
        "news", description="Slug of the section for articles no section claims; empty to leave them out."
    )
    first_window_days: int = Field(7, ge=1, le=62, description="Days covered by the first issue.")


class DatabaseSettings(_Table):
    url: str = Field(
        "sqlite:///newsletter.db",
        description="SQLAlchemy URL. A relative SQLite path is relative to the config file's folder; "
        "`?timeout=SECONDS` sets how long SQLite waits for another process's write lock (default 30).",
    )


class DeliverySettings(_Table):
    transport: Literal["outbox", "sendgrid", "smtp"] = Field("outbox", description="How emails leave: outbox, sendgrid or smtp.")
    outbox_dir: str = Field("outbox", description="Folder of the outbox transport, relative to the config file.")
    batch_size: int = Field(1000, ge=1, le=1000, description="Recipients per batch (SendGrid allows 1,000).")
    unsubscribe_mailto: str = Field(
        "", description="Address for the mailto: List-Unsubscribe header; empty uses the sender address."
    )
    warn_bytes: int = Field(90_000, ge=10_000, description="Warn when a segment's HTML is larger (Gmail clips ~102 KB).")
    processes: int = Field(
        0, ge=0, le=64,
        description="Processes sending one issue through SendGrid (helpers started by `newsletter send`); "
        "0 = one per CPU. Helpers start only for 16 batches per process or more.",
    )


class TemplateSettings(_Table):
    folder: str = Field("", description="Your own templates folder; files there override the built-in ones.")


class SmtpSettings(_Table):
    host: str = Field("localhost", description="SMTP relay to hand every message to (`delivery.transport = \"smtp\"`).")
    port: int = Field(587, ge=1, le=65535, description="Port of the relay: 587 for STARTTLS, 465 for implicit TLS, 25 without.")
    username: str = Field("", description="Login name for AUTH; empty sends without logging in.")
    password: SecretStr | None = Field(None, description="Password for AUTH; give it as NEWSLETTER_SMTP__PASSWORD, never in the file.")
    tls: Literal["starttls", "implicit", "none"] = Field(
        "starttls", description="starttls (upgrade after connecting), implicit (TLS from the start) or none (local relays only)."
    )
    connections: int = Field(4, ge=1, le=32, description="Connections to the relay at once for one send, each sending one batch.")


class SendGridSettings(_Table):
    api_host: str = Field("https://api.sendgrid.com", description="API host; EU accounts use https://api.eu.sendgrid.com.")
    api_key: SecretStr | None = Field(None, description="API key; give it as SENDGRID_API_KEY, never in the file.")
    asm_group_id: int | None = Field(
        None, ge=1, description="Unsubscribe group (asm.group_id) every email is sent in; empty for none."
    )
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for SendGrid to answer one request.")
    concurrency: int = Field(
        4, ge=1, le=32, description="Requests in flight at once for one send, shared out among its processes."
    )
    webhook_public_key: str = Field(
        "",
        description="Verification key of the Signed Event Webhook (base64 DER, as SendGrid shows it); "
        "give it as NEWSLETTER_SENDGRID__WEBHOOK_PUBLIC_KEY.",
    )
    verify: bool = Field(
        True,
        description="Check the signature of every Event Webhook request; false accepts unsigned events (testing only, logged).",
    )
    webhook_max_age_seconds: int = Field(
        600, ge=10, le=86_400, description="Replay window: signed event requests older than this many seconds are refused."
    )
    webhook_max_bytes: int = Field(
        20_000_000, ge=1024, le=200_000_000, description="Largest Event Webhook request body accepted, in bytes."
    )
    event_retention_days: int = Field(
        90, ge=1, le=3650, description="Days raw webhook events are kept; statistics are kept in aggregates and outlive them."
    )

    @field_validator("api_host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+$", value.rstrip("/")):
            raise ValueError("expected a base URL such as https://api.sendgrid.com (no path)")
        return value.rstrip("/")

    @field_validator("webhook_public_key")
    @classmethod
    def _check_public_key(cls, value: str) -> str:
        # SendGrid shows the key as one base64 line; a pasted PEM block is accepted too.
        lines = [line.strip() for line in value.strip().splitlines() if line.strip() and not line.startswith("-----")]
        key = "".join(lines)
        if key and not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", key):
            raise ValueError("expected the verification key as SendGrid shows it: one line of base64 (MFkwEwYHKoZIzj0CAQYI...)")
        return key


_HTTPS_URL = re.compile(r"https://[^/\s\"'<>]+[^\s\"'<>]*")


def _json_table(value: Any) -> Any:
    """A table given in the environment as one JSON string (`{"linkedin": "https://…"}`)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError('expected a table; in the environment, JSON such as {"key": "value"}') from None
    return value


class ThemeSettings(_Table):
    logo_url: str = Field("", description="An https:// URL of the logo in the email's masthead and on the pages; empty shows the site name.")
    logo_width: int = Field(180, ge=40, le=560, description="Width in pixels the logo is shown at (its height follows).")
    dark_logo_url: str = Field("", description="An https:// URL of a logo for dark backgrounds (dark mode); empty uses logo_url.")
    brand_color: str = Field("#0b5394", description="Brand colour (#rrggbb): masthead rule, links, buttons of the pages; made darker or lighter where it would read under 4.5:1.")
    accent_color: str = Field("#b45309", description="Accent colour (#rrggbb) of section headings, labels and the lead story's kicker; adjusted for 4.5:1 like brand_color.")
    font_stack: str = Field(
        "Helvetica, Arial, sans-serif", description="CSS font families of the email, comma-separated (no web fonts are loaded)."
    )
    thumbnails: bool = Field(True, description="Show each article's image as a thumbnail beside its text; false: text only (the lead story keeps its image).")
    social: dict[str, str] = Field(
        default_factory=dict,
        description='Social links in the footer, name = https URL: {linkedin = "https://…", x = "https://…"}.',
    )

    @field_validator("brand_color", "accent_color")
    @classmethod
    def _check_colour(cls, value: str) -> str:
        match = re.fullmatch(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})", value.strip())
        if not match:
            raise ValueError(f"expected a colour as #rrggbb, got {value!r}")
        digits = match.group(1).lower()
        return "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))

    @field_validator("logo_url", "dark_logo_url")
    @classmethod
    def _check_logo(cls, value: str) -> str:
        if value and not _HTTPS_URL.fullmatch(value):
            raise ValueError(f"expected an https:// URL of an image, or nothing; got {value!r}")
        return value

    @field_validator("font_stack")
    @classmethod
    def _check_fonts(cls, value: str) -> str:
        # It lands in CSS and in style attributes: names, spaces, commas, dashes, quotes.
        if not re.fullmatch(r"[A-Za-z0-9 ,'\-]{1,200}", value):
            raise ValueError(f"expected font names separated by commas, such as Georgia, serif; got {value!r}")
        return value

    @field_validator("social", mode="before")
    @classmethod
    def _read_social(cls, value: Any) -> Any:
        return _json_table(value)

    @field_validator("social")
    @classmethod
    def _check_social(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9]{0,19}", name):
                raise ValueError(f"{name!r}: expected a short lowercase name such as linkedin or x")
            if not _HTTPS_URL.fullmatch(url):
                raise ValueError(f"{name}: expected an https:// URL, got {url!r}")
        return value


class LinkSettings(_Table):
    utm: dict[str, str] = Field(
        default_factory=dict,
        description='Parameters added to article links only (never to our own links), for example '
        '{utm_source = "newsletter", utm_medium = "email", utm_campaign = "{slug}"}; {slug} is the issue. Empty: none.',
    )

    @field_validator("utm", mode="before")
    @classmethod
    def _read_utm(cls, value: Any) -> Any:
        return _json_table(value)

    @field_validator("utm")
    @classmethod
    def _check_utm(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"utm_[a-z]{1,20}", name):
                raise ValueError(f"{name!r}: expected a parameter named utm_something, such as utm_source")
            # Only the {slug} placeholder: anything else that looks like a template, a
            # substitution tag or markup would be expanded or escaped by something else.
            if not re.fullmatch(r"[A-Za-z0-9 ._~-]{0,100}", text.replace("{slug}", "")):
                raise ValueError(
                    f"{name}: {text!r} may hold letters, digits, spaces, . _ ~ - and {{slug}} only (no template syntax)"
                )
        return value


class SecuritySettings(_Table):
    secret_key: SecretStr | None = Field(None, description="Signs forms and cookies; give it as NEWSLETTER_SECRET_KEY.")


class WebSettings(_Table):
    host: str = Field("127.0.0.1", description="Address `newsletter serve` listens on (--host overrides it).")
    port: int = Field(8000, ge=1, le=65535, description="Port `newsletter serve` listens on (--port overrides it).")
    trusted_proxies: str = Field(
        "127.0.0.1",
        description="Comma-separated proxy addresses whose X-Forwarded-For is believed for the client's IP; * for any.",
    )
    cors_origins: CommaList = Field(
        default_factory=list,
        description="Websites (https://www.example.com) whose pages may POST /subscribe from a browser script.",
    )
    confirm_days: int = Field(7, ge=1, le=90, description="Days a confirmation link stays valid.")
    form_minutes: int = Field(120, ge=5, le=1440, description="Minutes a preference or resend form stays valid.")
    max_body_bytes: int = Field(16_384, ge=1024, le=1_048_576, description="Largest request body accepted, in bytes.")
    rate_window_seconds: int = Field(3600, ge=1, description="The window the two subscribe limits below count in.")
    subscribe_per_ip: int = Field(30, ge=1, description="Subscribe requests one IP address may make per window.")
    subscribe_per_address: int = Field(3, ge=1, description="Confirmation emails one address may be sent per window.")
    rate_limit_storage: str = Field(
        "",
        description="Where the two limits above are counted: empty for each process's memory, or a Redis URL "
        "(redis://127.0.0.1:6379/0) that every worker and server shares.",
    )

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"expected origins such as https://www.example.com (no path), got {origin!r}")
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"(redis|rediss|redis\+unix)://", value):
            raise ValueError("expected a Redis URL such as redis://127.0.0.1:6379/0, or nothing for memory")
        return value


def default_sections() -> list[SectionSettings]:
    """The sections of the trade-news site, in the order they are matched."""
    spec = [
        ("Drug Development", "drug-development", ["Drug Development", "Clinical Trials", "FDA Approvals", "Research & Development"]),
        ("Manufacturing", "manufacturing", ["Manufacturing"]),
        ("Supply Chain", "supply-chain", ["Supply Chain"]),
        ("Facilities", "facilities", ["Facilities", "Facilities & Operation"]),
        ("Insights", "insights", ["Insights"]),
        ("Events", "events", ["Events", "Events & Conferences"]),
        ("News", "news", []),
    ]
    return [SectionSettings(name=n, slug=s, categories=c) for n, s, c in spec]


class ScheduleSettings(_Table):
    digest_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = Field(
        "mon", description="Day of the week the digest goes out (in site.timezone)."
    )
    digest_time: str = Field("08:00", description="Time of day (HH:MM, 24 h) the digest goes out.")
    digest_cron: str = Field(
        "",
        description="Instead of day and time: a crontab line (minute hour day month weekday, Sunday = 0 or 7; "
        "a sixth leading field gives seconds).",
    )
    grace_hours: float = Field(6.0, ge=0, description="A digest missed while the service was down still runs this long after its slot.")
    auto_send: bool = Field(True, description="Build and send without an editor; false: send only an approved draft, else remind editors.")
    editors: list[str] = Field(default_factory=list, description="Addresses that get reminders when a draft awaits approval.")
    refresh_minutes: float = Field(60.0, gt=0, description="How often the service ingests the sources.")
    retry_minutes: float = Field(30.0, gt=0, description="How often the service retries failed send batches.")
    prune_hours: float = Field(
        24.0, gt=0, description="How often the service deletes raw webhook events older than sendgrid.event_retention_days."
    )

    @field_validator("digest_time")
    @classmethod
    def _check_time(cls, value: str) -> str:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if not match:
            raise ValueError(f"expected a time of day as HH:MM, such as 08:00, got {value!r}")
        return f"{int(match.group(1)):02d}:{match.group(2)}"

    @field_validator("digest_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        fields = value.split()
        if value.strip() and len(fields) not in (5, 6):
            raise ValueError(f"expected 5 crontab fields (or 6 with seconds first), got {len(fields)}")
        return value.strip()

    @field_validator("editors", mode="before")
    @classmethod
    def _check_editors(cls, value: Any) -> Any:
        # From the environment the list comes as one comma-separated string.
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for address in value if isinstance(value, list) else []:
            if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", address):
                raise ValueError(f"expected email addresses, got {address!r}")
        return value


class PreviewSettings(_Table):
    host: str = Field("127.0.0.1", description="Address `newsletter preview` listens on; another than localhost needs a password.")
    port: int = Field(8100, ge=1, le=65535, description="Port `newsletter preview` listens on (--port overrides it).")
    password: SecretStr | None = Field(
        None, description="Password of the preview page (user: editor); give it as NEWSLETTER_PREVIEW__PASSWORD."
    )
    test_recipients: list[str] = Field(
        default_factory=list, description="Editors' addresses that \"Send a test\" and `draft test` send to."
    )
    link_timeout: float = Field(5.0, gt=0, le=60, description="Seconds the preflight waits for each article link.")
    chromium: str = Field("/usr/bin/chromium", description="The Chromium that `newsletter draft screenshot` drives.")

    @field_validator("test_recipients", mode="before")
    @classmethod
    def _check_recipients(cls, value: Any) -> Any:
        return ScheduleSettings._check_editors(value)


class Settings(_Table):
    site: SiteSettings = Field(default_factory=SiteSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    sections: list[SectionSettings] = Field(default_factory=default_sections)
    feeds: list[FeedSettings] = Field(default_factory=list)
    wordpress: list[WordPressSettings] = Field(default_factory=list)
    folders: list[FolderSettings] = Field(default_factory=list)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    sendgrid: SendGridSettings = Field(default_factory=SendGridSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    theme: ThemeSettings = Field(default_factory=ThemeSettings)
    links: LinkSettings = Field(default_factory=LinkSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    preview: PreviewSettings = Field(default_factory=PreviewSettings)
    base_dir: Path = Field(Path("."), exclude=True, description="Folder of the config file (not a setting).")

    @model_validator(mode="after")
    def _check_sections(self) -> Settings:
        slugs = [s.slug for s in self.sections]
        if not slugs:
            raise ValueError("sections: at least one section is needed")
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        if dupes:
            raise ValueError(f"sections: slug {dupes[0]!r} is used twice")
        fallback = self.selection.fallback_section
        if fallback and fallback not in slugs:
            raise ValueError(
                f"selection.fallback_section: {fallback!r} is not a configured section (known: {', '.join(slugs)})"
            )
        return self

    @model_validator(mode="after")
    def _check_source_names(self) -> Settings:
        # Articles carry their source's name, so `newsletter sources` counts them by it.
        seen: dict[str, str] = {}
        names = [("feeds", [f.name for f in self.feeds]), ("wordpress", [w.name for w in self.wordpress]),
                 ("folders", [f.name for f in self.folders])]
        for kind, entries in names:
            for index, name in enumerate(entries):
                where = f"{kind}.{index}.name"
                if name in seen:
                    raise ValueError(f"{where}: {name!r} is already the name of {seen[name]}; source names must differ")
                seen[name] = where
        return self

    def section_names(self) -> dict[str, str]:
        """Section slug → heading, in configured order."""
        return {s.slug: s.name for s in self.sections}

    def path(self, value: str) -> Path:
        """A path setting resolved against the config file's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            return prefix + str(self.path(url[len(prefix):]))
        return url

    @property
    def outbox_dir(self) -> Path:
        return self.path(self.delivery.outbox_dir)

    @property
    def unsubscribe_mailto(self) -> str:
        return self.delivery.unsubscribe_mailto or self.sender.address


#: Keys that live in another table now.
_MOVED = {("web", "brand_color"): "[theme] brand_color", ("web", "logo_url"): "[theme] logo_url"}


def _format_error(error: Mapping[str, Any], source: str, env_names: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(p) for p in error["loc"])
    where = env_names.get(loc[:2]) or env_names.get(loc[:1])
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and loc in _MOVED:
        msg = f"moved: write it as {_MOVED[loc]}"
    elif error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see the configuration reference in the README)"
    elif error["type"] == "missing":
        msg = "missing: this key is required"
    elif error["type"] == "literal_error":
        msg = msg.replace("Input should be", "expected")
    elif "input" in error and error["type"] not in ("value_error",) and not isinstance(error["input"], dict):
        msg = f"{msg} (got {error['input']!r})"
    origin = f"environment variable {where}" if where else source
    return f"{origin}: {'.'.join(loc)}: {msg}" if loc else f"{origin}: {msg}"


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], dict[tuple[str, ...], str]]:
    """Settings given in the environment, and which variable gave each."""
    tables = {name for name, field in Settings.model_fields.items() if name not in ("sections", "feeds", "wordpress", "folders", "base_dir")}
    values: dict[str, dict[str, str]] = {}
    names: dict[tuple[str, ...], str] = {}
    for var, value in environ.items():
        if var in SPECIAL_ENV:
            table, key = SPECIAL_ENV[var]
        elif var.startswith(ENV_PREFIX) and "__" in var:
            table, _, key = var[len(ENV_PREFIX):].lower().partition("__")
            if table not in tables:
                raise ConfigError(
                    f"environment variable {var}: unknown table {table!r} (known: {', '.join(sorted(tables))})"
                )
        else:
            continue
        values.setdefault(table, {})[key] = value
        names[(table, key)] = var
    return values, names


def load_settings(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration.

    `path` None means `NEWSLETTER_CONFIG` or `./newsletter.toml`; a missing default file
    gives the built-in defaults, a missing file that was asked for is an error. Every
    problem raises `ConfigError` naming the file or variable, the key and what was expected.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or "NEWSLETTER_CONFIG" in env
    config_path = Path(path if path is not None else env.get("NEWSLETTER_CONFIG", DEFAULT_CONFIG))
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: cannot be read: {exc}") from None
    elif explicit:
        raise ConfigError(f"{config_path}: no such configuration file")
    overrides, names = _env_overrides(env)
    for table, keys in overrides.items():
        current = data.get(table, {})
        if not isinstance(current, dict):
            raise ConfigError(f"{config_path}: {table}: expected a table [{table}]")
        data[table] = {**current, **keys}
    data["base_dir"] = config_path.resolve().parent
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e, str(config_path), names) for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def hand_to_workers(path: str | Path | None) -> None:
    """Make `load_settings()` in the worker processes started after this (they inherit the
    environment; `serve --workers` spawns them) read the file this process was given.
    Without a `path` they read what this process read: the same variables, the same folder."""
    if path is not None:
        os.environ["NEWSLETTER_CONFIG"] = str(Path(path).resolve())

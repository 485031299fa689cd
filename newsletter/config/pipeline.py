"""The settings tables of the pipeline: the site and sender, sections, sources, ingest,
images, selection, the database and delivery (outbox, SMTP, SendGrid).

Owns: those tables and `_Table`, the frozen base of every table. Reads no environment
(`config` alone does). Imports nothing of ours.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)


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
    local_time: str = Field(
        "",
        description="Deliver each reader's copy at this local time (HH:MM, 24-hour) in their own time zone: the next "
        "such time after the send starts, at most 72 hours ahead (SendGrid's limit). Empty: deliver at once. "
        "Needs a transport that can schedule (sendgrid, outbox).",
    )

    @field_validator("local_time")
    @classmethod
    def _check_local_time(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
            raise ValueError(f"expected a time of day as HH:MM (24-hour) such as \"08:00\", got {value!r}")
        return value


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



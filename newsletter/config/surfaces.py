"""The settings tables of what people see and use: the email's theme and links, the web
app and its security, the schedule, the editors' preview, the welcome email, and the
default sections.

Owns: those tables and `default_sections`. Reads no environment (`config` alone does).
Imports `config.pipeline`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from .pipeline import CommaList, SectionSettings, _Table

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
    host: str = Field("127.0.0.1", description="Address the desk (`newsletter preview`) listens on; another than localhost needs password_hash.")
    port: int = Field(8100, ge=1, le=65535, description="Port the desk (`newsletter preview`) listens on (--port overrides it).")
    password_hash: str = Field(
        "", description="Argon2 hash of the desk's password, written by `newsletter preview set-password`; when set, "
        "every page of the desk needs a login (required when host is not localhost).",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="How long a login to the desk lasts.")
    test_recipients: list[str] = Field(
        default_factory=list, description="Editors' addresses that \"Send a test\" and `draft test` send to."
    )
    link_timeout: float = Field(5.0, gt=0, le=60, description="Seconds the preflight waits for each article link.")
    chromium: str = Field("/usr/bin/chromium", description="The Chromium that `newsletter draft screenshot` drives.")

    @field_validator("test_recipients", mode="before")
    @classmethod
    def _check_recipients(cls, value: Any) -> Any:
        return ScheduleSettings._check_editors(value)

    @field_validator("password_hash")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith("$argon2"):
            raise ValueError("expected an Argon2 hash ($argon2id$…): set it with `newsletter preview set-password`")
        return value




class WelcomeSettings(_Table):
    enabled: bool = Field(
        True, description="Send each reader one welcome email when they confirm their subscription: the latest issue in their sections, or a short note before the first."
    )
    subject: str = Field(
        "Welcome to {site}", description="Subject of the welcome email; {site} stands for the site's name."
    )

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, value: str) -> str:
        # A header: one line, and something to read.
        if not value.strip() or any(c in value for c in "\r\n"):
            raise ValueError("expected one line of text, such as \"Welcome to {site}\"")
        if len(value) > 200:
            raise ValueError(f"expected at most 200 characters, got {len(value)}")
        return value.strip()

    def subject_for(self, site_name: str) -> str:
        """The subject with the site's name in place of {site}."""
        return self.subject.replace("{site}", site_name)

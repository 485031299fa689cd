"""Configuration: defaults, file, environment precedence, and a clear error for each
kind of mistake, naming the file or variable, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ or {})
    return str(info.value)


def test_defaults_match_the_trade_news_site(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), environ={})
    assert [s.slug for s in settings.sections] == [
        "drug-development", "manufacturing", "supply-chain", "facilities", "insights", "events", "news",
    ]
    assert settings.sections[0].categories == ["Drug Development", "Clinical Trials", "FDA Approvals", "Research & Development"]
    assert settings.sections[3].categories == ["Facilities", "Facilities & Operation"]
    assert settings.sections[5].categories == ["Events", "Events & Conferences"]
    assert settings.selection.fallback_section == "news" and settings.selection.per_section_limit == 5
    assert settings.delivery.transport == "outbox"
    assert settings.database_url == f"sqlite:///{tmp_path / 'newsletter.db'}"


def test_a_missing_default_file_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, environ={}).site.name == "Pharma Industry Weekly"


def test_a_missing_file_that_was_asked_for_is_an_error(tmp_path: Path) -> None:
    assert error_for(tmp_path / "nope.toml") == f"{tmp_path / 'nope.toml'}: no such configuration file"
    message = error_for(None, {"NEWSLETTER_CONFIG": str(tmp_path / "gone.toml")})
    assert "gone.toml: no such configuration file" in message


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[delivery]\ntransport = "outbox"\nbatch_size = 10\n[site]\nname = "From file"\n')
    settings = load_settings(path, environ={
        "NEWSLETTER_DELIVERY__TRANSPORT": "sendgrid",
        "NEWSLETTER_SITE__NAME": "From env",
        "SENDGRID_API_KEY": "SG.secret",
        "NEWSLETTER_DATABASE_URL": "postgresql://db.example.com/news",
        "NEWSLETTER_SECRET_KEY": "s3cret",
    })
    assert settings.delivery.transport == "sendgrid" and settings.delivery.batch_size == 10
    assert settings.site.name == "From env"
    assert settings.sendgrid.api_key is not None and settings.sendgrid.api_key.get_secret_value() == "SG.secret"
    assert "SG.secret" not in repr(settings)
    assert settings.database_url == "postgresql://db.example.com/news"
    assert settings.security.secret_key is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[selection]\nper_section_limit = "five"\n', "newsletter.toml: selection.per_section_limit: Input should be a valid integer"),
        ("[selection]\nper_section_limit = 0\n", "selection.per_section_limit: Input should be greater than or equal to 1"),
        ('[delivery]\ntransport = "pigeon"\n', "delivery.transport: expected 'outbox', 'sendgrid' or 'smtp'"),
        ('[delivery]\ntransprt = "outbox"\n', "delivery.transprt: unknown key"),
        ('[deliveries]\ntransport = "outbox"\n', "deliveries: unknown key"),
        ('[[sections]]\nname = "Drug Development"\ncategories = ["FDA"]\n', "sections.0.slug: missing: this key is required"),
        ('[[sections]]\nname = "X"\nslug = "Not A Slug"\n', "sections.0.slug: expected lowercase letters, digits and dashes"),
        ('[selection]\nfallback_section = "sports"\n', "selection.fallback_section: 'sports' is not a configured section"),
        ('[[sections]]\nname = "A"\nslug = "a"\n[[sections]]\nname = "B"\nslug = "a"\n[selection]\nfallback_section = ""\n', "slug 'a' is used twice"),
        ('[site]\ntimezone = "Mars/Olympus"\n', "site.timezone: expected an IANA time zone"),
        ('[site]\nbase_url = "news.example.com"\n', "site.base_url: expected an http:// or https:// URL"),
        ('[[feeds]]\nname = "x"\nurl = "ftp://example.com/feed"\n', "feeds.0.url: expected an http://, https:// or file: URL"),
        ("[site\nname = 1\n", "newsletter.toml: not valid TOML"),
        ('site = "flat"\n', "site: Input should be a valid dictionary"),
    ],
    ids=["wrong-type", "out-of-range", "bad-choice", "unknown-key", "unknown-table", "missing-key", "bad-slug",
         "unknown-section-in-mapping", "duplicate-slug", "bad-zone", "bad-url", "bad-feed-url", "bad-toml", "not-a-table"],
)
def test_each_mistake_gets_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    message = error_for(write(tmp_path, text))
    assert expected in message
    assert str(tmp_path) in message  # the file is named
    assert "Traceback" not in message and "pydantic" not in message.lower()


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    message = error_for(path, {"NEWSLETTER_DELIVERY__BATCH_SIZE": "lots"})
    assert message.startswith("environment variable NEWSLETTER_DELIVERY__BATCH_SIZE: delivery.batch_size:")
    assert "valid integer" in message
    message = error_for(path, {"NEWSLETTER_DELIVERYY__TRANSPORT": "outbox"})
    assert message.startswith("environment variable NEWSLETTER_DELIVERYY__TRANSPORT: unknown table 'deliveryy'")
    assert "unknown key" in error_for(path, {"NEWSLETTER_DELIVERY__NOPE": "1"})


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    message = error_for(write(tmp_path, '[delivery]\ntransport = "pigeon"\nbatch_size = 5000\n'))
    assert len(message.splitlines()) == 2
    assert "delivery.batch_size: Input should be less than or equal to 1000" in message

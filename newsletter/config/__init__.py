"""One frozen, validated settings object from `newsletter.toml` and the environment.

Owns: `Settings`, `load_settings`, `hand_to_workers`; its tables live in `config.pipeline` and
`config.surfaces` and are exported here. This package is the only place that reads (or
writes) `os.environ`, and only this module does. Imports `errors` only.

Precedence, highest first:
1. `SENDGRID_API_KEY`, `NEWSLETTER_DATABASE_URL`, `NEWSLETTER_SECRET_KEY`;
2. `NEWSLETTER_<TABLE>__<KEY>` for any key of a table (`NEWSLETTER_DELIVERY__TRANSPORT`);
3. the file;
4. the defaults of the tables, every one with a help text.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from ..errors import ConfigError
from .pipeline import (
    DatabaseSettings,
    DeliverySettings,
    FeedSettings,
    FolderSettings,
    ImageSettings,
    IngestSettings,
    SectionSettings,
    SelectionSettings,
    SenderSettings,
    SendGridSettings,
    SiteSettings,
    SmtpSettings,
    TemplateSettings,
    WordPressSettings,
    _Table,
)
from .surfaces import (
    LinkSettings,
    PreviewSettings,
    ScheduleSettings,
    SecuritySettings,
    ThemeSettings,
    WebSettings,
    WelcomeSettings,
    default_sections,
)

__all__ = [
    "DatabaseSettings", "DeliverySettings", "FeedSettings", "FolderSettings", "ImageSettings", "IngestSettings",
    "LinkSettings", "PreviewSettings", "ScheduleSettings", "SectionSettings", "SecuritySettings", "SelectionSettings",
    "SendGridSettings", "SenderSettings", "Settings", "SiteSettings", "SmtpSettings", "TemplateSettings",
    "ThemeSettings", "WebSettings", "WelcomeSettings", "WordPressSettings", "config_file", "default_sections", "hand_to_workers",
    "load_settings",
]

DEFAULT_CONFIG = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
SPECIAL_ENV = {
    "SENDGRID_API_KEY": ("sendgrid", "api_key"),
    "NEWSLETTER_DATABASE_URL": ("database", "url"),
    "NEWSLETTER_SECRET_KEY": ("security", "secret_key"),
}



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
    welcome: WelcomeSettings = Field(default_factory=WelcomeSettings)
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
_MOVED = {("web", "brand_color"): "[theme] brand_color", ("web", "logo_url"): "[theme] logo_url",
          ("preview", "password"): "[preview] password_hash, set by `newsletter preview set-password`"}


def _format_error(error: Mapping[str, Any], source: str, env_names: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(p) for p in error["loc"])
    where = env_names.get(loc[:2]) or env_names.get(loc[:1])
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and loc in _MOVED:
        msg = f"moved: write it as {_MOVED[loc]}"
    elif error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see the configuration reference, docs/configuration.md)"
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


def config_file(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
    """The configuration file `load_settings(path)` reads (it may not exist yet)."""
    env = os.environ if environ is None else environ
    return Path(path if path is not None else env.get("NEWSLETTER_CONFIG", DEFAULT_CONFIG))


def load_settings(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration.

    `path` None means `NEWSLETTER_CONFIG` or `./newsletter.toml`; a missing default file
    gives the built-in defaults, a missing file that was asked for is an error. Every
    problem raises `ConfigError` naming the file or variable, the key and what was expected.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or "NEWSLETTER_CONFIG" in env
    config_path = config_file(path, environ=env)
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


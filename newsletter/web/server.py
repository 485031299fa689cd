"""Running the web app under uvicorn for `newsletter serve`.

Owns: `serve` and `worker_app`, the app factory of each worker process. Imports `config`,
`web.app`.

uvicorn's access log is turned off because it prints whole paths, tokens included; the
app logs each request itself with the token taken out (`app.Guard`). With several
workers each is a process of its own, started afresh by uvicorn: it reads the settings
from the environment the parent handed down (`config.hand_to_workers`) and logs with its
process id, so one can tell the workers apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from ..config import Settings, hand_to_workers, load_settings
from .app import create_app

log = logging.getLogger("newsletter.web")


def _show_access_log() -> None:
    # The app's own access log (tokens taken out) is shown even without --verbose.
    access = logging.getLogger("newsletter.web")
    if access.getEffectiveLevel() > logging.INFO:
        access.setLevel(logging.INFO)


def worker_app() -> Starlette:
    """The app of one worker of `serve --workers N` (a uvicorn factory)."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"
    )
    _show_access_log()
    return create_app(load_settings())


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    config_path: Path | None = None,
    announce: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until interrupted, on `host`:`port` (default: the `[web]` settings), in
    `workers` processes (which read `config_path`, or what this process read). The app
    is built once here first, so the configuration is checked and the database migrated
    before `announce` is told the address and any worker starts. X-Forwarded-For is
    believed only from `web.trusted_proxies`."""
    app = create_app(settings)
    host = host or settings.web.host
    port = port or settings.web.port
    if workers > 1 and not settings.web.rate_limit_storage:
        log.warning(
            "%d workers count the rate limits each in its own memory: set web.rate_limit_storage to a Redis URL "
            "to share them", workers,
        )
    announce(f"http://{host}:{port}")
    _show_access_log()
    options: dict[str, object] = {
        "host": host, "port": port, "access_log": False, "proxy_headers": True,
        "forwarded_allow_ips": settings.web.trusted_proxies, "server_header": False, "log_level": "info",
    }
    if workers == 1:
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    hand_to_workers(config_path)
    uvicorn.run("newsletter.web.server:worker_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]

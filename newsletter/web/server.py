"""Running the web app under uvicorn for `newsletter serve`.

Owns: `serve`. Imports `config`, `web.app`.

uvicorn's access log is turned off because it prints whole paths, tokens included; the
app logs each request itself with the token taken out (`app.Guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn

from ..config import Settings
from .app import create_app


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    announce: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until interrupted, on `host`:`port` (default: the `[web]` settings); the app
    is built (and the configuration checked) before `announce` is told the address.
    X-Forwarded-For is believed only from `web.trusted_proxies`."""
    app = create_app(settings)
    host = host or settings.web.host
    port = port or settings.web.port
    announce(f"http://{host}:{port}")
    # The app's own access log (tokens taken out) is shown even without --verbose.
    access = logging.getLogger("newsletter.web")
    if access.getEffectiveLevel() > logging.INFO:
        access.setLevel(logging.INFO)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.web.trusted_proxies,
        server_header=False,
        log_level="info",
    )

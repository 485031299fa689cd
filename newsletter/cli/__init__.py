"""The `newsletter` command line (Typer + Rich): one module per command group, sharing
`common` (the app, the consoles, the global options and the one place where errors become
messages and exit codes). Sits on top: may import anything.

Exports `app`, the entry point (`newsletter = "newsletter.cli:app"`).
"""

from . import desk, draft, issues, recall, service, sources, stats, subscribers  # noqa: F401  (they register their commands)
from .common import app

__all__ = ["app"]

"""MkDocs hook: fills the generated references (configuration, command line) into their pages.

A page that holds `<!-- config-reference -->` or `<!-- cli-reference -->` gets the reference
made from the code at build time (`newsletter.reference`), so the site documents every
setting and command there is. Needs the project installed (`pip install -e '.[docs]'`).
"""

from __future__ import annotations

from typing import Any

from newsletter.reference import expand


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return expand(markdown)

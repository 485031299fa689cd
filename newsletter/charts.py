"""Pictures of statistics for editors: opens and clicks over the hours after a send.

Owns: `draw_activity`, `ChartsUnavailableError`. Imports `errors`, `stats`. matplotlib is
a dependency, imported only when a chart is drawn, with its non-interactive backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .stats import Hour

INSTALL = "pip install matplotlib"


class ChartsUnavailableError(ConfigError):
    """matplotlib is not installed; the message says how to install it."""


def draw_activity(path: Path, hours: list[Hour], *, title: str) -> None:
    """Write a PNG to `path`: recipients who first clicked (bars, in front) and first
    opened (a lighter line, marked as soft) in each hour after the send."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise ChartsUnavailableError(f"--chart needs matplotlib, a dependency missing here: {INSTALL}") from None
    figure, axes = pyplot.subplots(figsize=(9, 4.5), dpi=100)
    try:
        x = [h.hour for h in hours]
        axes.bar(x, [h.clicks for h in hours], color="#0b5394", label="first clicks", zorder=3)
        axes.plot(x, [h.opens for h in hours], color="#999999", linestyle="--",
                  label="first opens (soft: privacy proxies inflate opens)", zorder=2)
        axes.set_xlabel("hours after the send")
        axes.set_ylabel("recipients")
        axes.set_title(title)
        axes.grid(axis="y", alpha=0.3, zorder=0)
        # Clicks lead: their entry comes first in the legend too.
        handles, labels = axes.get_legend_handles_labels()
        axes.legend(handles[::-1], labels[::-1], loc="upper right")
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)

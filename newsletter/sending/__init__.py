"""One home for a send from plan to done.

    send.send_issue ─┬─ planning.plan_issue   lock, render new segments, plan batches (bulk SQL)
                     ├─ helpers.HelperPool     more processes running send.send_planned
                     └─ run.SendLoop           claim → transport.send → retry → record (ledger)

Modules: `options` (what a run is asked and reports), `planning`, `ledger` (claim and
record), `run` (the loop and its retries), `helpers` (processes), `send` (the entry).
Imports `config`, `db`, `store`, `tables`, `links`, `models`, `errors`, `transports` and
what `subscribers` exports; nothing that renders, fetches or builds pages (a helper
process imports this package and pays for every module it brings).
"""

from .helpers import helper_count, process_count
from .options import SendFlags, SendOptions, SendProgress, SendReport, send_options
from .send import Helpers, send_as_helper, send_issue, send_planned

__all__ = [
    "Helpers", "SendFlags", "SendOptions", "SendProgress", "SendReport", "helper_count", "process_count", "send_as_helper",
    "send_issue", "send_options", "send_planned",
]

"""The exceptions of the `newsletter` package.

    NewsletterError
     ├── ConfigError          the configuration file or environment is wrong
     ├── StorageError         the database cannot be opened or migrated
     │    └── DatabaseUnavailableError   it cannot be read or written now (read-only,
     │                                    locked, disk full, server unreachable)
     ├── SourceError          one source could not be fetched or parsed
     │    ├── AddressRefusedError  the address is not public and not in [ingest] allow_networks
     │    └── DeadlineError        the fetch passed its overall deadline ([ingest] deadline)
     ├── RenderError          a template failed (names the template and line)
     ├── EmptyIssueError      no articles in the window: no issue is built
     ├── IssueError           no such issue, or not in a state for that action
     │    ├── EditError        an editor's change names an unknown article or section, or a bad value
     │    └── ConflictError    the draft changed since the editor's page was drawn (optimistic concurrency)
     ├── DeliveryError        a transport cannot deliver at all
     │    └── TransportAuthError   the provider refused our credentials
     └── RecallError          an issue cannot be recalled, paused or resumed (names the
          │                    issue and the reason; nothing in the ledger changed)
          └── RecallRefusedError   the provider refused it (too late, too many batches)

Imports nothing of ours. Domain code raises these; only `cli.py` and `web/` turn them into
messages and exit codes.
"""


class NewsletterError(Exception):
    """Base of every error raised by `newsletter`."""


class ConfigError(NewsletterError):
    """The configuration is wrong. The message names the file, the key and what was expected."""


class StorageError(NewsletterError):
    """The database cannot be opened, or its schema cannot be brought up to date."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be read or written now: a read-only file or folder, a lock held
    past the busy timeout, a full disk, a server that cannot be reached. The message is one
    line naming the database (its URL without the password) and the problem; it never holds
    a statement's parameters."""


class SourceError(NewsletterError):
    """A source could not be fetched or parsed; the message says which and why."""


class AddressRefusedError(SourceError):
    """An outbound request would reach a loopback, private or otherwise internal address."""


class DeadlineError(SourceError):
    """A fetch was still going when its overall deadline passed."""


class RenderError(NewsletterError):
    """A template could not be rendered; the message names the template and line."""


class NothingToDoError(NewsletterError):
    """The command has nothing to do; an unattended run that finds nothing new is healthy,
    so the CLI says so and exits 0 (`--json`: `"status": "nothing-to-do"`)."""


class EmptyIssueError(NothingToDoError):
    """The window of the next issue holds no article, so no issue is built."""


class NothingToSendError(NothingToDoError):
    """No issue has been built yet, or the latest one is already sent."""


class IssueError(NewsletterError):
    """The issue does not exist, or is not in a state that allows the action."""


class EditError(IssueError):
    """An editor's change of a draft cannot be made as given; the message names the value."""


class ConflictError(IssueError):
    """The draft is no longer at the version the editor's change was made against: someone
    changed it in between (another browser, the command line). The change is not made; the
    message says what came first, when and from where."""


class DeliveryError(NewsletterError):
    """A transport cannot deliver at all (not: one batch failed, which is recorded)."""


class TransportAuthError(DeliveryError):
    """The provider refused our credentials; nothing more can be sent until that is fixed."""


class RecallError(NewsletterError):
    """An issue's send cannot be recalled, paused or resumed: never sent, nothing left to
    stop, or sent through a transport that cannot recall. The ledger is unchanged."""


class RecallRefusedError(RecallError):
    """The provider refused the recall (too late, too many batches held); its reason is in
    the message."""

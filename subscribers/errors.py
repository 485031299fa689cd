"""The exceptions of the `subscribers` package.

    SubscriberError
     ├── InvalidEmailError      an address that is not a valid email address
     ├── InvalidNameError       a name that is too long or holds control characters
     ├── InvalidSectionError    a section slug the site does not have
     ├── InvalidTimezoneError   a time zone that is not an IANA name this machine knows
     ├── UnknownSubscriberError no subscriber with that address or token
     ├── ConfirmationExpiredError  a confirmation link older than its time limit
     ├── ImportFileError        a CSV file that cannot be imported at all
     └── NotAllowedError        the action does not apply to the subscriber's status

Imports nothing of ours.
"""


class SubscriberError(Exception):
    """Base of every error raised by `subscribers`."""


class InvalidEmailError(SubscriberError):
    """The address given is not a valid email address; the message says why."""


class InvalidNameError(SubscriberError):
    """A name that is too long or holds control characters (a line break above all); the
    message says which."""


class InvalidTimezoneError(SubscriberError):
    """A time zone that is not one of `zoneinfo.available_timezones()`; the message
    names the value given."""


class UnknownSubscriberError(SubscriberError):
    """No subscriber matches the address or token given."""


class InvalidSectionError(SubscriberError):
    """A section slug that is not one of the site's sections; the message names it."""


class ConfirmationExpiredError(SubscriberError):
    """The confirmation link is older than the configured limit; a new one can be sent."""


class NotAllowedError(SubscriberError):
    """The action does not apply to this subscriber now (for example, resubscribing an
    address that bounced); the message says why in words fit for the subscriber."""


class ImportFileError(SubscriberError):
    """A CSV file that cannot be imported as a whole (a mapped column is missing); the
    message names the column and lists the file's columns."""

"""The exceptions of the `subscribers` package.

    SubscriberError
     ├── InvalidEmailError      an address that is not a valid email address
     └── UnknownSubscriberError no subscriber with that address or token

Imports nothing of ours.
"""


class SubscriberError(Exception):
    """Base of every error raised by `subscribers`."""


class InvalidEmailError(SubscriberError):
    """The address given is not a valid email address; the message says why."""


class UnknownSubscriberError(SubscriberError):
    """No subscriber matches the address or token given."""

"""The errors the web layer itself raises, each with the status code it answers with.

    WebError                 (status code, message shown to the visitor)
     ├── BadRequestError        400: a form or JSON body that is not what the page sends
     ├── UnauthorizedError      401: a webhook request without its signature
     ├── FormExpiredError       403: a missing, wrong, expired or replayed CSRF token
     ├── SignatureError         403: a webhook request whose signature is wrong or too old
     ├── LinkNotValidError      404: an unknown or tampered token
     ├── PayloadTooLargeError   413: a body over `web.max_body_bytes`
     ├── UnsupportedMediaError  415: a body in a content type the endpoint does not take
     └── RateLimitedError       429: too many requests from one IP or for one address

Imports nothing of ours. Errors of `subscribers` are mapped to pages in `app.py`, the one
place that turns exceptions into responses.
"""

from __future__ import annotations


class WebError(Exception):
    """Base of the web layer's errors; `status` is the HTTP status code of the answer."""

    status = 400
    title = "Something is wrong with this request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(WebError):
    status = 400
    title = "Something is wrong with this request"


class UnauthorizedError(WebError):
    status = 401
    title = "Not signed"


class SignatureError(WebError):
    status = 403
    title = "Signature not valid"


class FormExpiredError(WebError):
    status = 403
    title = "This form has expired"


class LinkNotValidError(WebError):
    status = 404
    title = "This link is not valid"


class PayloadTooLargeError(WebError):
    status = 413
    title = "Too much data"


class UnsupportedMediaError(WebError):
    status = 415
    title = "Unsupported content type"


class RateLimitedError(WebError):
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

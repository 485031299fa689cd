"""Reading request bodies safely, and the CSRF tokens of our forms.

Owns: `read_body`, `parse_form`, `parse_json`, `load_json`, `FormData`, `CsrfSigner`.
Imports `errors` of this package.

Bodies are read with a hard size limit before anything parses them, and every way a
body can break a parser (nesting deep enough to exhaust the stack, bytes that are not
UTF-8, the wrong kind of value at the top, a field too long) is a `BadRequestError` with
one line saying which: never a traceback, never a 500. Forms are parsed here
rather than by `python-multipart`: the pages send only a few short text fields, and RFC
8058 one-click requests arrive as `application/x-www-form-urlencoded` or
`multipart/form-data`, both of which the standard library reads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

from .errors import BadRequestError, FormExpiredError, PayloadTooLargeError, UnsupportedMediaError

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FIELDS = 100

FormData = dict[str, list[str]]


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, or `PayloadTooLargeError` as soon as it passes `limit` bytes
    (a Content-Length over the limit is refused before reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is larger than {limit:,} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"The request body is larger than {limit:,} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequestError("The request body ended before it was complete.") from None
    return b"".join(chunks)


def media_type(request: Request) -> str:
    """The request's content type without parameters, lowercased."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_form(request: Request, body: bytes, *, accept: tuple[str, ...] = FORM_TYPES) -> FormData:
    """The fields of a urlencoded or multipart form; `UnsupportedMediaError` for any other
    content type (naming the types in `accept`, all the endpoint takes), `BadRequestError`
    for a body that does not parse."""
    kind = media_type(request)
    if not body and not kind:
        # A POST without a body (a form with no fields) is an empty form.
        return {}
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
            )
        except UnicodeDecodeError:
            raise BadRequestError("The form data could not be read: it is not UTF-8.") from None
        except ValueError:
            raise BadRequestError(f"The form data could not be read: more than {MAX_FIELDS} fields.") from None
    elif kind == "multipart/form-data":
        try:
            pairs = _parse_multipart(request.headers.get("content-type", ""), body)
        except RecursionError:
            raise BadRequestError("The multipart form data is nested too deeply.") from None
    else:
        kinds = ", ".join(accept[:-1]) + " or " + accept[-1] if len(accept) > 1 else accept[0]
        raise UnsupportedMediaError(f"Send the form as {kinds}.")
    fields: FormData = {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    return fields


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise BadRequestError("The multipart form data could not be read.")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise BadRequestError("The multipart form data could not be read.")
        try:
            pairs.append((name, payload.decode("utf-8")))
        except UnicodeDecodeError:
            raise BadRequestError("The multipart form data is not UTF-8.") from None
        if len(pairs) > MAX_FIELDS:
            raise BadRequestError("The form has too many fields.")
    return pairs


def load_json(body: bytes) -> Any:
    """Any JSON value, or `BadRequestError` saying what is wrong with the body: not UTF-8,
    not JSON, or nested so deeply that the parser would exhaust the stack."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("The body is not valid JSON: it is not UTF-8.") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequestError("The body is not valid JSON: it is nested too deeply.") from None
    except ValueError:
        raise BadRequestError("The body is not valid JSON.") from None


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object, or `BadRequestError` saying what is wrong."""
    value = load_json(body)
    if not isinstance(value, dict):
        raise BadRequestError("Send a JSON object such as {\"email\": \"you@example.com\"}.")
    return value


def one(fields: FormData, name: str, *, limit: int = 1000) -> str:
    """The single value of a field ("" when absent); `BadRequestError` when it is given
    twice or is longer than `limit` characters."""
    values = fields.get(name, [])
    if len(values) > 1:
        raise BadRequestError(f"The field {name!r} was given more than once.")
    value = values[0] if values else ""
    if len(value) > limit:
        raise BadRequestError(f"The field {name!r} is longer than {limit} characters.")
    return value


class CsrfSigner:
    """Signs the hidden token of a form to the subscriber, the purpose of the form, the
    subscriber's consent version and the time it was issued.

    A token is `<issued>.<signature>`. It is accepted for `max_age` seconds and only while
    the consent version is unchanged, so a form submitted once (which records a consent
    row) cannot be replayed, and a form from another subscriber's page is refused. No
    cookie is needed: the subscriber's link token already identifies them.
    """

    def __init__(self, secret: str, *, max_age: int) -> None:
        self._key = hashlib.sha256(b"newsletter-csrf\0" + secret.encode("utf-8")).digest()
        self.max_age = max_age

    def _sign(self, purpose: str, token: str, version: int, issued: int) -> str:
        message = f"{purpose}\0{token}\0{version}\0{issued}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self, purpose: str, token: str, version: int, *, now: int) -> str:
        return f"{now}.{self._sign(purpose, token, version, now)}"

    def verify(self, value: str, purpose: str, token: str, version: int, *, now: int) -> None:
        """Raise `FormExpiredError` unless `value` was issued by `issue` with the same
        purpose, token and version, no longer than `max_age` seconds ago."""
        issued_text, _, signature = value.partition(".")
        problem = "This form has expired or was already sent. Open the page again and retry."
        if not issued_text.isdigit() or len(issued_text) > 12 or not signature:
            raise FormExpiredError(problem)
        issued = int(issued_text)
        if not hmac.compare_digest(signature, self._sign(purpose, token, version, issued)):
            raise FormExpiredError(problem)
        if issued > now + 60 or now - issued > self.max_age:
            raise FormExpiredError(problem)

"""The confirmation emails of the opt-in flow: rendered from MJML, sent by the transport.

Owns: `ConfirmationMailer`. Imports `config`, `issues` (renderer and transport),
`welcome`, `render`, `models`, `errors` and what `subscribers` exports.

`subscribers.request_subscription` is handed a callable that collects the emails it wants
sent; the web app sends them after its answer has gone out (a background task), so the
time to answer does not tell whether an email was sent and therefore whether the address
was already known.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping

import jinja2

import subscribers as people

from sqlalchemy import Engine

from .. import issues, welcome
from ..config import Settings
from ..errors import NewsletterError, RenderError
from ..links import PersonalLinks, personal_links
from ..models import Batch, OutcomeKind, Recipient, RenderedMessage
from ..render import PREHEADER_SPACER, compile_mjml
from ..transports import Transport

log = logging.getLogger(__name__)

#: Confirmation emails are filed by the outbox under this name instead of an issue slug.
MAIL_FOLDER = "confirmations"
_SEQUENCE = itertools.count()


def _mail_id() -> int:
    # Unique within the process and across restarts: milliseconds, then a counter.
    return int(time.time() * 1000) * 1000 + next(_SEQUENCE) % 1000


class ConfirmationMailer:
    """Renders `people.ConfirmationMail`s and sends each through a fresh transport."""

    def __init__(self, settings: Settings, *, transport: Callable[[], Transport] | None = None) -> None:
        self.settings = settings
        self.make_transport = transport or (lambda: issues.make_transport(settings))
        renderer = issues.make_renderer(settings)
        self.env = renderer.env
        self.theme = renderer.theme
        # The text part must not be HTML-escaped ("O'Brien", "R&D"), whatever the
        # renderer's autoescape rules say of `.txt.j2` names.
        self.text_env = self.env.overlay(autoescape=False)

    def links(self, token: str) -> PersonalLinks:
        return personal_links(token, base_url=self.settings.site.base_url, mailto=self.settings.unsubscribe_mailto)

    def render(self, mail: people.ConfirmationMail) -> RenderedMessage:
        """The email for `mail`; `RenderError` naming the template when one is wrong."""
        site = self.settings.site
        names = self.settings.section_names()
        context: dict[str, object] = {
            "site": {"name": site.name, "base_url": site.base_url, "postal_address": site.postal_address},
            "kind": mail.kind.value,
            "name": mail.name,
            "sections": [names[s] for s in names if s in mail.sections],
            "confirm_days": self.settings.web.confirm_days,
            "theme": self.theme,
            "spacer": PREHEADER_SPACER,
            **self.links(mail.token).as_dict(),
        }
        if mail.kind is people.MailKind.CONFIRM:
            subject = f"Please confirm your subscription to {site.name}"
        else:
            subject = f"You are already subscribed to {site.name}"
        context["subject"] = subject
        html = compile_mjml(self._template("email/confirm.mjml.j2", context), "email/confirm.mjml.j2")
        text = self._template("email/confirm.txt.j2", context, env=self.text_env)
        return RenderedMessage(subject=subject, preheader="", html=html, text=text)

    def _template(self, name: str, context: Mapping[str, object], *, env: jinja2.Environment | None = None) -> str:
        try:
            return (env or self.env).get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"template {exc.name} not found") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc.message or exc}") from None

    def send(self, mails: Iterable[people.ConfirmationMail]) -> None:
        """Send every mail; a failure is logged with the subscriber's id and never raised,
        since the visitor has had their answer already."""
        pending = list(mails)
        if not pending:
            return
        sender = self.settings.sender
        transport = self.make_transport()
        try:
            for mail in pending:
                try:
                    message = self.render(mail)
                    mail_id = _mail_id()
                    personal = self.links(mail.token)
                    recipient = Recipient(
                        subscriber_id=mail.subscriber_id,
                        email=mail.email,
                        substitutions={},
                        unsubscribe_url=personal.unsubscribe_url,
                        unsubscribe_mailto=personal.unsubscribe_mailto,
                    )
                    batch = Batch(
                        id=mail_id,
                        issue_id=0,
                        issue_slug=MAIL_FOLDER,
                        segment_id=mail_id,
                        message=message,
                        recipients=(recipient,),
                        sender_name=sender.name,
                        sender_address=sender.address,
                        reply_to=sender.reply_to,
                        categories=(self.settings.site.name[:255], MAIL_FOLDER),
                    )
                    outcome = transport.send(batch)
                except NewsletterError:
                    log.exception("%s email to subscriber %s failed", mail.kind, mail.subscriber_id)
                    continue
                if outcome.kind is not OutcomeKind.ACCEPTED:
                    log.warning(
                        "%s email to subscriber %s not accepted: %s", mail.kind, mail.subscriber_id, outcome.error
                    )
                else:
                    log.info("%s email sent to subscriber %s", mail.kind, mail.subscriber_id)
        finally:
            transport.close()

    def welcome(self, engine: Engine, welcome_ids: list[int]) -> None:
        """Send the welcomes just recorded (`welcome.queue_welcome`) through a fresh
        transport. Whatever happens is recorded in their rows for the retry job; nothing
        is raised, since the reader has had their confirmation page."""
        if not welcome_ids:
            return
        try:
            transport = self.make_transport()
        except NewsletterError as exc:
            log.error("welcome emails not sent now (the retry job tries again): %s", exc)
            return
        try:
            welcome.send_welcomes(engine, self.settings, transport=transport, ids=welcome_ids)
        except Exception:
            log.exception("welcome emails not sent now (the retry job tries again)")
        finally:
            transport.close()

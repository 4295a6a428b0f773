"""What composing a confirmation mail costs, and writing it as SMTP sends it.

Reports, from one run, the median and the 99th percentile of:

* ``Composer.confirmation(job)``: rendering the templates, signing the link
  and building the message, as the delivery side does for every mail, next
  to the same with the message built the way the standard library's
  ``EmailMessage`` API builds it (headers set as strings, ``set_content``,
  ``add_alternative``, ``set_boundary``), which is how the library built it
  before: the baseline;
* building alone, from texts rendered beforehand: the library, the
  baseline, and Django's ``EmailMultiAlternatives(...).message()`` with the
  same subject, texts and addresses;
* writing each message once, as ``smtplib.SMTP.send_message`` does (a
  ``BytesGenerator`` with ``linesep="\\r\\n"``), for the three, and the
  library's as ``SMTPMailer`` writes it (``flat()``: the same bytes).

The operations run interleaved, block by block, so that a burst of load
elsewhere on the machine falls on each of them alike.

    python benchmarks/compose.py [--rounds 3000]
"""

from __future__ import annotations

import argparse
import io
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from _common import header, median, percentile, table, timed_together, us

from credrecovery import RecoveryService
from credrecovery.adapters._smtp_message import flat
from credrecovery.jobs import ConfirmationJob
from credrecovery.mail import headers, messages
from credrecovery.memory import MemoryDirectory, MemoryMailer

BLOCKS = 30
SENDER = "Example Hosting <noreply@hosting.example>"


def stdlib_build(
    recipient: Address,
    sender: str,
    subject: str,
    plain: str,
    html: str,
    now: object,
    language: str,
) -> EmailMessage:
    """The message as the ``EmailMessage`` API builds it, with the same headers and parts."""
    message = EmailMessage(policy=headers._POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)  # type: ignore[arg-type]
    message["Message-ID"] = make_msgid(domain="hosting.example")
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(plain, cte=headers._plain_encoding(plain))
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    message.set_boundary("=_" + secrets.token_hex(16))
    message["Content-Language"] = language
    return message


def written(message: Any) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out).flatten(message, linesep="\r\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    header("composing a confirmation mail")

    service = RecoveryService(
        MemoryDirectory(),
        MemoryMailer(),
        secret_key=secrets.token_urlsafe(32),
        confirm_url="https://panel.example.com/recover/{token}",
        sender=SENDER,
        rate_limits=None,
        delivery="sync",
    )
    composer = service.composer
    numbers = iter(range(10**9))

    def job() -> ConfirmationJob:
        n = next(numbers)
        return ConfirmationJob(
            recipient=f"client{n}@example.com",
            name=f"Client {n}",
            language="en",
            sender=SENDER,
            clients=((str(10_000 + n), secrets.token_urlsafe(16)[:22]),),
            issued_at=time.time(),
        )

    library_build = messages._build

    def compose_with(build: Callable[..., EmailMessage]) -> Callable[[], EmailMessage]:
        def compose() -> EmailMessage:
            messages._build = build  # type: ignore[assignment]
            try:
                return composer.confirmation(job())
            finally:
                messages._build = library_build

        return compose

    sample = composer.confirmation(job())
    subject = str(sample["Subject"])
    plain = sample.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = sample.get_body(("html",)).get_content()  # type: ignore[union-attr]
    now = datetime.now(UTC)

    from django.conf import settings

    settings.configure(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    from django.core.mail import EmailMultiAlternatives

    def builder(build: Callable[..., EmailMessage]) -> Callable[[], EmailMessage]:
        def built() -> EmailMessage:
            to = headers.mailbox(job().recipient, "Client")
            return build(to, SENDER, subject, plain, html, now, "en")

        return built

    def django_message() -> Any:
        mail = EmailMultiAlternatives(subject, plain, SENDER, [f"Client <{job().recipient}>"])
        mail.attach_alternative(html, "text/html")
        return mail.message()

    builders: dict[str, Callable[[], Any]] = {
        "library": builder(library_build),
        "baseline": builder(stdlib_build),
        "django": django_message,
    }
    # Each message is written once, as in delivery: what a message keeps from
    # being written would flatter a second write.
    per_kind = BLOCKS * max(1, args.rounds // BLOCKS)
    unwritten = {name: [make() for _ in range(per_kind)] for name, make in builders.items()}

    def writer(name: str) -> Callable[[], bytes]:
        pending = unwritten[name]
        return lambda: written(pending.pop())

    unflattened = [builders["library"]() for _ in range(per_kind)]

    samples = timed_together(
        {
            "compose library": compose_with(library_build),
            "compose baseline": compose_with(stdlib_build),
            **{f"build {name}": make for name, make in builders.items()},
            **{f"write {name}": writer(name) for name in builders},
            "flat library": lambda: flat(unflattened.pop()).wire,
        },
        args.rounds,
        BLOCKS,
    )
    rows = [
        ("Composer.confirmation(job)", "compose library", "compose baseline"),
        ("the same, built with the EmailMessage API (baseline)", "compose baseline", ""),
        ("building alone", "build library", "build baseline"),
        ("building alone, EmailMessage API (baseline)", "build baseline", ""),
        ("building alone, Django's message()", "build django", "build baseline"),
        ("writing for SMTP", "write library", "write baseline"),
        ("writing for SMTP as SMTPMailer does", "flat library", "write baseline"),
        ("writing the baseline's (baseline)", "write baseline", ""),
        ("writing Django's", "write django", "write baseline"),
    ]
    table(
        ["operation", "median", "p99", "ratio to its baseline"],
        [
            (
                label,
                us(median(samples[name])),
                us(percentile(samples[name], 99)),
                f"{median(samples[name]) / median(samples[reference or name]):.2f}",
            )
            for label, name, reference in rows
        ],
    )


if __name__ == "__main__":
    main()

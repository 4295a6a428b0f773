"""A slow SMTP sink for the HTTP timing benchmark, run as its own process.

It listens on 127.0.0.1 and a free port, waits ``--delay`` seconds before
answering each DATA, as a real relay that takes its time would, and accepts
every message. Like Postfix, Exim and the large providers' relays, it offers
PIPELINING (RFC 2920), unless ``--no-pipelining``: aiosmtpd reads pipelined
commands in order, but does not announce that it does. On stdout it prints
``listening <port>`` once, then ``accepted <recipient>`` for each message it
accepted, so that the process that started it can count deliveries without
sharing its interpreter.

    python benchmarks/_http_smtp.py [--delay 0.05] [--no-pipelining]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


class SlowSink:
    """An aiosmtpd handler that answers DATA after ``delay`` seconds and reports each mail."""

    def __init__(self, delay: float, pipelining: bool = True) -> None:
        self.delay = delay
        self.pipelining = pipelining

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            # Before the last line, the only one with a space after its code.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        for recipient in envelope.rcpt_tos:
            sys.stdout.write(f"accepted {recipient}\n")
        sys.stdout.flush()
        return "250 OK"


async def serve(delay: float, pipelining: bool) -> None:
    loop = asyncio.get_running_loop()
    handler = SlowSink(delay, pipelining)
    # A fixed hostname: aiosmtpd would otherwise look up this machine's FQDN.
    server = await loop.create_server(lambda: SMTP(handler, hostname="localhost"), HOST, 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening {port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before DATA's reply")
    parser.add_argument(
        "--no-pipelining", action="store_true", help="do not offer PIPELINING in EHLO"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.delay, not args.no_pipelining))


if __name__ == "__main__":
    main()

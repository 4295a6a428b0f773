"""A slow SMTP sink for the HTTP timing benchmark, run as its own process.

It listens on 127.0.0.1 and a free port, waits ``--delay`` seconds before
answering each DATA, as a real relay that takes its time would, and accepts
every message. On stdout it prints ``listening <port>`` once, then
``accepted <recipient>`` for each message it accepted, so that the process
that started it can count deliveries without sharing its interpreter.

    python benchmarks/_http_smtp.py [--delay 0.05]
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

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        for recipient in envelope.rcpt_tos:
            sys.stdout.write(f"accepted {recipient}\n")
        sys.stdout.flush()
        return "250 OK"


async def serve(delay: float) -> None:
    loop = asyncio.get_running_loop()
    handler = SlowSink(delay)
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
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.delay))


if __name__ == "__main__":
    main()

"""``python manage.py add_client NUMBER EMAIL [--domain D ...]``: add a client, print its key."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from credrecovery import generate_key

from ...directory import DjangoDirectory


class Command(BaseCommand):
    help = "Add a client with a fresh access key, printed once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("number")
        parser.add_argument("email")
        parser.add_argument("--domain", action="append", default=[])
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        key = generate_key()
        try:
            DjangoDirectory().add_client(
                options["number"],
                options["email"],
                key=key,
                domains=options["domain"],
                name=options["name"],
            )
        except ValueError as exc:  # InvalidIdentifier is one too
            raise CommandError(str(exc)) from None
        self.stdout.write(f"client {options['number']} added; access key: {key}")

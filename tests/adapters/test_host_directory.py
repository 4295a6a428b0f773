"""A directory a host wrote itself, checked by the library's contract suite."""

import threading

import pytest

from credrecovery import Client, IdentifierKind, normalize_identifier
from credrecovery.testing import DirectoryContract


class DictDirectory:
    """The host's clients in a dict behind a lock; ``down`` breaks its storage."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = {}  # client number -> Client
        self.owners = {}  # domain -> client number
        self.down = False

    def find(self, kind, value):
        self._check()
        with self.lock:
            if kind is IdentifierKind.CLIENT_NUMBER:
                return self.rows.get(value)
            if kind is IdentifierKind.EMAIL:
                return next((c for c in self.rows.values() if c.email == value), None)
            return self.rows.get(self.owners.get(value, ""))

    def replace_key_hash(self, number, current, new):
        self._check()
        with self.lock:
            client = self.rows.get(number)
            if client is None or client.key_hash != current:
                return False
            self.rows[number] = Client(client.number, client.email, new, client.name, client.locale)
            return True

    def _check(self):
        if self.down:
            raise ConnectionError("the client store is unreachable")


class TestDictDirectory(DirectoryContract):
    #: What find and replace_key_hash raise once break_storage has run.
    storage_error = ConnectionError

    @pytest.fixture
    def directory(self):
        return DictDirectory()

    def add_client(self, directory, number, email, *, key_hash, domains=(), name="", locale=None):
        client = Client(
            normalize_identifier(IdentifierKind.CLIENT_NUMBER, number),
            normalize_identifier(IdentifierKind.EMAIL, email),
            key_hash,
            name,
            locale,
        )
        with directory.lock:
            directory.rows[client.number] = client
            for domain in domains:
                directory.owners[normalize_identifier(IdentifierKind.DOMAIN, domain)] = (
                    client.number
                )
        return client

    def break_storage(self, directory):
        directory.down = True

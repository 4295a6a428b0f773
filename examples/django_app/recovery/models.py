"""The panel's own tables, which the recovery directory reads and updates."""

from __future__ import annotations

from django.db import models


class Client(models.Model):
    """A client account. ``key_hash`` is the passlib hash of the access key, never the key."""

    number = models.CharField(max_length=64, unique=True)
    # Several clients may share a primary address (a reseller's), so not unique.
    email = models.CharField(max_length=320, db_index=True)
    key_hash = models.CharField(max_length=255)
    name = models.CharField(max_length=200, blank=True, default="")
    locale = models.CharField(max_length=16, null=True, blank=True)

    def __str__(self) -> str:
        return f"client {self.number}"

    def __repr__(self) -> str:
        return f"<Client {self.number}>"


class Domain(models.Model):
    """A domain name hosted for a client; each domain belongs to one client."""

    domain = models.CharField(max_length=253, unique=True)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="domains")

    def __str__(self) -> str:
        return self.domain

"""A fixture giving each test a fresh logical database on the local Redis server.

The URL comes from ``CREDRECOVERY_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``). The database is flushed before and after each
test, so point the variable at a database that holds nothing else, and give
concurrent test sessions databases of their own. When the server cannot be
reached the test is skipped, or fails if ``CREDRECOVERY_REQUIRE_SERVICES=1``.

Test modules import the fixture by name::

    from redis_server import redis_url
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/15"

__all__ = ["DEFAULT_URL", "redis_url"]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CREDRECOVERY_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The URL of an empty Redis database, flushed again after the test."""
    url = os.environ.get("CREDRECOVERY_TEST_REDIS_URL", DEFAULT_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        try:
            client.ping()
            client.flushdb()
        except redis.RedisError as exc:
            _unavailable(f"Redis not reachable at {_without_password(url)}: {exc}")
        yield url
        client.flushdb()
    finally:
        client.close()

"""A fixture giving each test a fresh logical database on the local Redis server.

The URL comes from ``CREDRECOVERY_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``). The database is flushed before and after each
test, so point the variable at a database that holds nothing else, and give
concurrent test sessions databases of their own. Under pytest-xdist each
worker after the first takes a database of its own below that one, skipping
13 and 14, which the benchmarks use. When the server cannot be
reached the test is skipped, or fails if ``CREDRECOVERY_REQUIRE_SERVICES=1``.

Test modules import the fixture by name::

    from helpers.redis_server import redis_url
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


def _for_this_worker(url: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    if index == 0:
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    db = base - index - (2 if base > 14 else 0)
    if db < 0:
        pytest.fail(f"no Redis database left for xdist worker {worker}")
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The URL of an empty Redis database, flushed again after the test."""
    url = _for_this_worker(os.environ.get("CREDRECOVERY_TEST_REDIS_URL", DEFAULT_URL))
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

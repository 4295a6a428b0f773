"""Prometheus metrics from a service's events, through a real registry and its HTTP exposition."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from credrecovery import (
    AsyncRecoveryService,
    BackgroundMailer,
    RateLimited,
    RateLimits,
    RecoveryService,
    cheap_context,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.metrics import PrometheusMetrics
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, token_from

DOMAIN = "ejemploxmundo.com.ar"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def events(text: str, kind: str, reason: str = "") -> float:
    return samples(text)[("credrecovery_events_total", (("kind", kind), ("reason", reason)))]


@pytest.fixture
def directory() -> MemoryDirectory:
    made = MemoryDirectory(crypt_context=cheap_context())
    made.add_client("9000", "ana@example.com", key=OLD_KEY, domains=[DOMAIN])
    return made


@pytest.fixture
def served() -> Iterator[tuple[CollectorRegistry, str]]:
    """A registry of its own, exposed over HTTP on a free loopback port."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield registry, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode("utf-8"))


def test_events_are_counted_by_kind_and_reason_over_http(
    served: tuple[CollectorRegistry, str], directory: MemoryDirectory
) -> None:
    """Hits, misses, mails, confirmations and refused sign-ins, as a scrape reads them."""
    registry, url = served
    metrics = PrometheusMetrics(registry)
    mailer = MemoryMailer()
    before = scrape(url)
    assert events(before, "requested", "hit") == 0  # every known series starts at zero
    with RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=cheap_context(),
        delivery="sync",
        rate_limits=RateLimits(failed_signins="2/hour"),
        on_event=metrics,
    ) as service:
        service.request("domain", DOMAIN, requester="198.51.100.7")
        service.request("domain", "unknown.example", requester="198.51.100.7")
        service.request("domain", "other-unknown.example", requester="198.51.100.7")
        service.confirm(token_from(mailer.outbox[-1]), requester="198.51.100.7")
        for _ in range(2):
            assert service.authenticate("9000", "a wrong key", requester="203.0.113.9") is None
        with pytest.raises(RateLimited):
            service.authenticate("9000", "a wrong key", requester="203.0.113.9")
        assert service.flush(10)
    text = scrape(url)
    assert events(text, "requested", "hit") == 1
    assert events(text, "requested", "miss") == 2
    assert events(text, "mailed", "confirmation") == 1
    assert events(text, "mailed", "credentials") == 1
    assert events(text, "confirmed", "link") == 1
    assert events(text, "signin_failed", "wrong_key") == 2
    assert events(text, "signin_throttled", "failed_signins") == 1
    assert "unknown.example" not in text and "198.51.100.7" not in text
    assert generate_latest(registry).decode("utf-8").count(
        "credrecovery_events_total{"
    ) == text.count("credrecovery_events_total{")


def test_the_gauge_reads_the_delivery_queue_at_each_scrape(directory: MemoryDirectory) -> None:
    """Jobs waiting in a BackgroundMailer show in credrecovery_delivery_pending until sent."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    delivery = BackgroundMailer(MemoryMailer(), isolation="thread", delay=(30, 30))
    with RecoveryService(
        directory,
        MemoryMailer(),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=cheap_context(),
        delivery=delivery,
        rate_limits=None,
        on_event=metrics,
    ) as service:
        metrics.watch(service)
        for value in (DOMAIN, "unknown.example", DOMAIN):
            service.request("domain", value)
        queued = samples(generate_latest(registry).decode("utf-8"))
        assert queued[("credrecovery_delivery_pending", ())] == 3
        assert service.flush(10)
        drained = samples(generate_latest(registry).decode("utf-8"))
        assert drained[("credrecovery_delivery_pending", ())] == 0
        assert (
            drained[("credrecovery_events_total", (("kind", "mailed"), ("reason", "confirmation")))]
            == 2
        )


def test_an_async_service_counts_through_the_same_sink(directory: MemoryDirectory) -> None:
    """The sink is a plain function; an AsyncRecoveryService runs it off its event loop."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, namespace="panel")

    async def main() -> None:
        async with AsyncRecoveryService(
            directory,
            MemoryMailer(),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=cheap_context(),
            delivery="sync",
            rate_limits=None,
            on_event=metrics,
        ) as service:
            await service.request("domain", DOMAIN)
            await service.request("domain", "unknown.example")
            assert await service.flush(10)

    asyncio.run(main())
    found: dict[Any, float] = samples(generate_latest(registry).decode("utf-8"))
    assert found[("panel_events_total", (("kind", "requested"), ("reason", "hit")))] == 1
    assert found[("panel_events_total", (("kind", "requested"), ("reason", "miss")))] == 1

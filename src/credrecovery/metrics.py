"""Prometheus metrics from a service's events: ``pip install 'credrecovery[prometheus]'``.

:class:`PrometheusMetrics` is an ``on_event`` hook. It counts every event by
kind and reason in ``credrecovery_events_total`` and, for the services it
:meth:`~PrometheusMetrics.watch`\\ es, shows how many confirmation mails wait
for delivery in ``credrecovery_delivery_pending``, read at each scrape::

    metrics = PrometheusMetrics()
    service = RecoveryService(directory, mailer, ..., on_event=metrics)
    metrics.watch(service)
    prometheus_client.start_http_server(9464, addr="127.0.0.1")

The reasons are the library's own words (see :data:`~credrecovery.events.REASONS`),
never what a visitor typed, so the label sets stay few.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    import prometheus_client
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.metrics needs prometheus_client: pip install 'credrecovery[prometheus]'"
    ) from exc

from .events import REASONS, Event

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """An ``on_event`` hook that counts events for Prometheus; for both service shells.

    ``registry`` is where the metrics are registered (by default
    ``prometheus_client``'s global one, which ``start_http_server`` and
    ``make_wsgi_app`` expose); ``namespace`` prefixes their names. Every
    kind and reason of :data:`~credrecovery.events.REASONS` starts at zero,
    so that ``rate()`` and ``increase()`` see the first one happen.
    """

    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry | None = None,
        *,
        namespace: str = "credrecovery",
    ) -> None:
        chosen = registry if registry is not None else prometheus_client.REGISTRY
        self.events = prometheus_client.Counter(
            "events",
            "Outcomes reported by the recovery service, by kind and reason.",
            ["kind", "reason"],
            namespace=namespace,
            registry=chosen,
        )
        self.delivery_pending = prometheus_client.Gauge(
            "delivery_pending",
            "Confirmation mails queued, waiting for a retry or being "
            "sent, in the watched services' background delivery.",
            namespace=namespace,
            registry=chosen,
        )
        self._watched: list[Any] = []
        self._lock = threading.Lock()
        for kind, reasons in REASONS.items():
            for reason in reasons:
                self.events.labels(kind=kind.value, reason=reason or "")
        self.delivery_pending.set_function(self._pending)

    def __repr__(self) -> str:
        return f"PrometheusMetrics(watching={len(self._watched)})"

    def __call__(self, event: Event) -> None:
        """Count ``event``; what the service calls as its ``on_event``."""
        self.events.labels(kind=event.kind.value, reason=event.reason or "").inc()

    def watch(self, *services: Any) -> None:
        """Add each service's delivery queue (its ``delivery.pending``) to the gauge.

        A delivery that keeps no queue of its own (``"sync"``, Celery, whose
        broker holds the jobs) counts as 0.
        """
        with self._lock:
            self._watched.extend(services)

    def _pending(self) -> float:
        with self._lock:
            watched = list(self._watched)
        return float(sum(int(getattr(service.delivery, "pending", 0)) for service in watched))

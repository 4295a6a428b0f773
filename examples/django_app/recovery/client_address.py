"""The requester's address: the peer's, or, behind trusted proxies, the client's they forwarded.

``settings.CREDRECOVERY_TRUSTED_PROXIES`` lists the proxies (addresses or
networks). ``X-Forwarded-For`` is read only when the peer is one of them, and
then from the right: each proxy appends the address it saw, so the right-most
entry that is not a trusted proxy is the one no client can forge. Anything to
its left came from the client.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request: HttpRequest) -> str | None:
    """The address to pass to the service as ``requester``."""
    peer: str | None = request.META.get("REMOTE_ADDR")
    proxies = trusted_networks(tuple(getattr(settings, "CREDRECOVERY_TRUSTED_PROXIES", ())))
    if not peer or not is_trusted(peer, proxies):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed([hop.strip() for hop in forwarded]):
        if hop and not is_trusted(hop, proxies):
            return hop
    return peer  # no client named: the request is the proxy's own


@functools.cache
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """The setting's entries as networks; raises ImproperlyConfigured for one that is none."""
    try:
        return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)
    except ValueError:
        raise ImproperlyConfigured(
            "CREDRECOVERY_TRUSTED_PROXIES must list IP addresses or networks, "
            "such as 127.0.0.1 or 10.0.0.0/8"
        ) from None


def is_trusted(address: str, proxies: Iterable[Network]) -> bool:
    """Whether ``address`` is in one of ``proxies``; False for what is no address."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in proxies)

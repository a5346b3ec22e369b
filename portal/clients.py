"""The client's address: the one answer every throttle, the audit trail and the access log use.

Behind a reverse proxy every request comes from the proxy, so ``REMOTE_ADDR`` alone would make
each per-address throttle global (one prober locks everyone out) and fill the audit trail with
the proxy's address. The proxy says whom it serves in ``X-Forwarded-For``, but anyone can send
that header too. So it is read only when ``REMOTE_ADDR`` is one of ``TRUSTED_PROXIES`` (addresses
or networks; none by default), and walked from the right: each trusted hop vouches for the entry
to its left, and the first address that is not a trusted proxy is the client. Entries a client
wrote itself sit further left and are never reached.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def canonical_ip(value: str | None) -> str | None:
    """One spelling per address, whatever the database gives back: PostgreSQL's ``inet`` rewrites
    ``2001:0DB8::0001`` as ``2001:db8::1`` and prints IPv4-mapped addresses differently from
    Python. An IPv4-mapped address is the IPv4 client it stands for; a zone index (``%eth0``) is
    dropped because ``inet`` cannot store it. Anything unparsable is no address (None)."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Address(int(address)))
    return str(address)


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES`` as networks (a bare address is a network of one); ValueError names the
    entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or network") from exc
    return tuple(networks)


@functools.lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == network.version and ip in network for network in networks)


def _without_port(hop: str) -> str:
    # Some proxies write "192.0.2.1:4711" or "[2001:db8::1]:4711"; Caddy and nginx write the
    # bare address.
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def client_ip_from(meta: Mapping[str, Any]) -> str | None:
    """The client's address from a WSGI environ (``request.META``): ``REMOTE_ADDR``, or, when that
    is a trusted proxy, the first address left of the trusted hops in ``X-Forwarded-For``. An
    entry that is no address stops the walk at the last hop a trusted proxy vouched for."""
    address = canonical_ip(meta.get("REMOTE_ADDR"))
    networks = _trusted_networks(tuple(settings.TRUSTED_PROXIES))
    if address is None or not networks:
        return address
    # Repeated headers arrive joined by commas (WSGI servers do so), in the order received.
    hops = str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")
    for hop in reversed(hops):
        if not _is_trusted(address, networks):
            break
        forwarded = canonical_ip(_without_port(hop))
        if forwarded is None:
            break
        address = forwarded
    return address


def client_ip(request: HttpRequest | None) -> str | None:
    """The address of the client who sent ``request`` (see the module's docstring); None without
    a request or an address."""
    if request is None:
        return None
    return client_ip_from(request.META)

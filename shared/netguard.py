"""What newsflow's outgoing HTTP (the fetcher, webhooks) shares: the SSRF guard's address policy
(which IP addresses it may reach), DNS lookup, and reading a server's Retry-After."""

import asyncio
import email.utils
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves (host, port) to IP addresses as strings; injectable so tests fake DNS."""

_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
# NAT64 (RFC 6052): a gateway on the path translates these to the IPv4 address in the low 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_ip(text: str) -> IPAddress | None:
    """`text` as an IP address, or None if it is a host name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of networks ("10.1.0.0/16, 127.0.0.1") as networks; a bad entry
    raises ValueError naming it."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {part!r}") from exc
    return tuple(networks)


def guard_reason(
    ip: IPAddress, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
) -> str | None:
    """Why the fetcher must not connect to `ip`, unless an allowed network holds it."""
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    return refusal_reason(ip)


def refusal_reason(ip: IPAddress) -> str | None:
    """Why the fetcher must not connect to `ip` ("loopback"…), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 reaches that IPv4 host, so it is judged as one.
        # (Python 3.11 calls every ::ffff:0:0/96 address "reserved", even ::ffff:8.8.8.8.)
        if ip.ipv4_mapped is not None:
            return refusal_reason(ip.ipv4_mapped)
        if ip in _NAT64:
            return refusal_reason(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and (reason := refusal_reason(embedded)):
            return reason
        if ip.is_site_local:
            return "site-local"
        if ip in _UNIQUE_LOCAL:
            return "unique-local"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        # Shared address space (100.64.0.0/10, carrier NAT) and the like: neither private nor
        # public, and not ours to reach.
        (not ip.is_global, "non-global"),
    )
    return next((reason for refused, reason in checks if refused), None)


async def url_refusal(
    url: str, *, allow_private: bool = False, allowed_networks: str = "",
    resolve: Resolver = resolve_host,
) -> str | None:
    """Why newsflow must not send a request to `url` (not http(s), no host, or a host that is or
    resolves to an address the guard refuses), or None when it may. A name that does not resolve
    is refused too: what cannot be checked is not reached."""
    reason, _ = await checked_addresses(url, allow_private=allow_private,
                                        allowed_networks=allowed_networks, resolve=resolve)
    return reason


async def checked_addresses(
    url: str, *, allow_private: bool = False, allowed_networks: str = "",
    resolve: Resolver = resolve_host,
) -> tuple[str | None, list[str]]:
    """(why `url` is refused, or None; the addresses its host name resolved to and that passed,
    so the request can be sent to them and not to what a second lookup might say)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http or https", []
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        return f"invalid URL ({exc})", []
    if not host:
        return "no host in URL", []
    if allow_private:
        return None, []
    port = port or (443 if parts.scheme == "https" else 80)
    return await _host_addresses(host, port, parse_networks(allowed_networks), resolve)


async def _host_addresses(
    host: str, port: int, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    resolve: Resolver,
) -> tuple[str | None, list[str]]:
    literal = parse_ip(host)
    if literal is not None:
        reason = guard_reason(literal, allowed)
        return (f"refused {reason} address {literal}" if reason else None), []
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}", []
    # Every address is checked, not only the first: the client may connect to any of them.
    for address in addresses or [""]:
        ip = parse_ip(address)
        if ip is None:
            return f"{host} resolves to {address!r}, not an IP address", []
        if reason := guard_reason(ip, allowed):
            return f"{host} resolves to {reason} address {ip}", []
    return None, addresses


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

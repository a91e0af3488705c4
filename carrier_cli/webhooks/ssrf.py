"""Which addresses a webhook may reach (SSRF), and a resolver that connects only to them.

A webhook URL is the operator's, but its host name resolves at send time: a name that
points at 127.0.0.1, the cloud metadata address (169.254.169.254) or a private network
would let whoever controls the DNS (or the config) reach services that trust the
machine. So the host is resolved, every address is checked, and the connection is made to
an address that was checked (aiohttp is given this resolver, so nothing resolves the
name a second time); redirects are never followed. `webhooks_allow_private: true` lifts
the refusal (a receiver on the same machine or network, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from carrier_cli.errors import InputError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(InputError):
    """The URL's host is (or resolves to) an address webhooks may not reach."""


def refused_reason(address: Address) -> str | None:
    """Why this address is refused, None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        return "not public"
    return None


def check_address(host: str, address: str, *, allow_private: bool) -> None:
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    reason = refused_reason(parsed)
    if reason is not None and not allow_private:
        shown = host if host == address else f"{host} ({address})"
        raise RefusedAddress(
            f"Webhook host {shown} is a {reason} address: refused, so a webhook cannot "
            "reach services inside this machine or network.",
            hint="Use a public URL, or set webhooks_allow_private: true if the receiver "
            "really is on this machine or a private network.",
        )


async def resolve(host: str, port: int, *, allow_private: bool) -> list[dict[str, Any]]:
    """The host's addresses in aiohttp's resolver shape, each checked (all must pass:
    a name with one public and one private address is refused)."""
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
    found: list[dict[str, Any]] = []
    for family, _, proto, _, sockaddr in infos:
        address = str(sockaddr[0])
        check_address(host if not literal else address, address, allow_private=allow_private)
        found.append(
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": family,
                "proto": proto,
                "flags": socket.AI_NUMERICHOST,
            }
        )
    if not found:
        raise OSError(f"cannot resolve {host}: no addresses")
    return found


class CheckedResolver:
    """An aiohttp resolver (AbstractResolver's methods) that refuses disallowed addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[dict[str, Any]]:
        found = await resolve(host, port, allow_private=self.allow_private)
        if family in (socket.AF_INET, socket.AF_INET6):
            same = [f for f in found if f["family"] == family]
            return same or found
        return found

    async def close(self) -> None:
        return None

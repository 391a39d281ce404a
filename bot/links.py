"""Download an image from a link a person typed: http(s) only, bounded in time and size, no private hosts."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from bot.errors import FileTooLarge, UnreachableLink
from bot.images import MAX_BYTES

TIMEOUT = 10.0
MAX_REDIRECTS = 5


async def fetch_link(http: httpx.AsyncClient, url: str, *, allow_private: bool = False,
                     limit: int = MAX_BYTES, timeout: float = TIMEOUT) -> bytes:
    """GET ``url`` following up to five redirects, each hop checked; raise UnreachableLink or FileTooLarge."""
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                await _check_target(url, allow_private)
                async with http.stream("GET", url, follow_redirects=False, timeout=timeout) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise UnreachableLink(f"HTTP {response.status_code}")
                    announced = int(response.headers.get("content-length") or 0)
                    if announced > limit:
                        raise FileTooLarge(announced, limit)
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise FileTooLarge(None, limit)
                    return bytes(body)
            raise UnreachableLink("too many redirects")
    except TimeoutError:
        raise UnreachableLink("timed out") from None
    except httpx.HTTPError as exc:
        raise UnreachableLink(type(exc).__name__) from exc


async def _check_target(url: str, allow_private: bool) -> None:
    """Only public http(s) hosts, so a typed link cannot make us probe our own network."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnreachableLink(f"unsupported link {parts.scheme!r}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnreachableLink("host not found") from exc
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not address.is_global:
            raise UnreachableLink(f"{parts.hostname} is not a public address")


def looks_like_link(text: str) -> bool:
    """Whether a line a person typed is an http(s) link rather than a path."""
    return text.strip().lower().startswith(("http://", "https://"))

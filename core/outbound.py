"""POSTs to URLs that third parties configure (merchants' webhooks), made safe for us to send.

- Only http(s) to public addresses: a URL whose host resolves to a loopback, private, link-local or otherwise
  non-public address is refused (it would reach our own network: databases, cloud metadata). The connection
  goes to the address that was checked, so a DNS answer that changes between check and connect cannot slip
  one in. `allow_private` lifts this for the demo and the tests, whose receivers run on 127.0.0.1.
- Redirects are never followed: a POST is not turned into a request to wherever the answer points, with
  our signature on it.
- One time limit covers the whole call (resolving, connecting, sending, the answer's headers): a receiver that
  answers a byte at a time cannot hold a worker longer than that.
- The answer's body is never read: only its status counts, and a receiver could send gigabytes, which were read
  into the worker's memory.
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit


def redacted(url: str) -> str:
    """The URL without what may be a credential: its user part (`user:password@`, or a token alone) and the query's
    values (`?token=…`). For whoever may read a merchant's settings but not change them: such a credential opens the
    merchant's own systems."""
    parts = urlsplit(url)
    _, at, host = parts.netloc.rpartition("@")
    netloc = f"…@{host}" if at else host
    query = "&".join(f"{pair.partition('=')[0]}=…" if "=" in pair else "…" for pair in parts.query.split("&") if pair)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class Refused(Exception):
    """The URL may not be called (bad scheme, non-public address): retrying will not help."""


class Failed(Exception):
    """The call was made and did not succeed (network error, time limit, redirect, non-2xx): worth a retry."""


# IPv6 addresses that carry an IPv4 address in their last 32 bits, which the kernel or a translating gateway
# delivers to: IPv4-compatible (::/96), SIIT (::ffff:0:0:0/96) and NAT64 (64:ff9b::/96, RFC 6052). Python calls
# them global whatever they carry, so [64:ff9b::a9fe:a9fe] reached the cloud metadata address through a NAT64.
_CARRYING_IPV4 = [ipaddress.ip_network(prefix) for prefix in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")]
# NAT64 for one site's own use (RFC 8215): never a public destination.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.version == 6:
        if ip in _LOCAL_NAT64:
            return False
        if ip.ipv4_mapped or ip.sixtofour:  # ::ffff:a.b.c.d, and 6to4 (2002::/16) relays
            ip = ip.ipv4_mapped or ip.sixtofour
        elif any(ip in prefix for prefix in _CARRYING_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # Site-local IPv6 (fec0::/10, deprecated but still routed inside some networks) is global to Python 3.11.
    return ip.is_global and not ip.is_multicast and not (ip.version == 6 and ip.is_site_local)


async def _checked_address(host: str, port: int, *, allow_private: bool) -> str:
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Failed(f"cannot resolve {host}: {exc.strerror}") from exc
    addresses = [answer[4][0] for answer in answers]
    if not allow_private and not all(_public(address) for address in addresses):
        raise Refused(f"{host} resolves to a non-public address ({', '.join(sorted(set(addresses)))})")
    return addresses[0]


async def _post(url: str, body: bytes, headers: dict, *, timeout_s: float, allow_private: bool) -> int:
    # Only Celery workers send (webhooks are a task), yet the server's processes import this module with the
    # tasks: httpx loads here, not with them (with rich and pygments when installed: ~4 MB of RSS per process).
    import httpx

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    async with asyncio.timeout(timeout_s):
        address = await _checked_address(parts.hostname, port, allow_private=allow_private)
        # Connect to the checked address; the Host header and TLS (SNI and certificate) still name the host.
        target = httpx.URL(url).copy_with(host=address)
        try:
            async with (
                httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout_s) as client,
                client.stream(
                    "POST",
                    target,
                    content=body,
                    headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
                    extensions={"sni_hostname": parts.hostname},
                ) as response,
            ):
                pass  # the status line and headers are the answer: the body is left unread (see the docstring)
        except httpx.HTTPError as exc:
            raise Failed(f"{type(exc).__name__}: {exc}") from exc
    if response.is_redirect:
        raise Failed(f"HTTP {response.status_code} redirect to {response.headers.get('location')!r} not followed")
    if not response.is_success:
        raise Failed(f"HTTP {response.status_code}")
    return response.status_code


def post(url: str, body: bytes, headers: dict, *, timeout_s: float, allow_private: bool = False) -> int:
    """POST the body; the 2xx status, or Refused / Failed."""
    try:
        return asyncio.run(_post(url, body, headers, timeout_s=timeout_s, allow_private=allow_private))
    except TimeoutError as exc:
        raise Failed(f"no complete answer within {timeout_s:g} s") from exc

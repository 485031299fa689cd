"""The one way out to the network: an httpx client that reaches only public addresses,
and an overall deadline for each fetch.

Owns: `NetworkPolicy`, `make_client`, `deadline`, `time_left`, `refusal`, `check_address`. Imports
`errors`. Every outbound request the project makes for content (feeds, WordPress sites,
the preflight's link checks, the images a screenshot loads) goes through `make_client`.

Why: a source's URL, a redirect, or an article link is chosen by someone outside; without
this guard a feed redirecting to `http://127.0.0.1:6379/` or `http://169.254.169.254/`
would have that internal service's answer stored as an article and published.

How: the client's transport resolves the host name itself, refuses loopback, private,
link-local, multicast, reserved and unspecified addresses (IPv4 and IPv6, IPv4-mapped
IPv6 judged as the IPv4 address it carries) unless `[ingest] allow_networks` lists them,
and then connects to the very address it checked, so DNS cannot answer differently
between the check and the connection (DNS rebinding). Every connection goes through it,
so the first request and every redirect are checked alike. The URL's host name stays the
Host header, the TLS server name (SNI) and the name the certificate is checked against.
Proxies from the environment are not used: a proxy would resolve the name itself.

`deadline(seconds)` bounds a whole fetch (every request, redirect and read in it) besides
the per-read timeout: a server that drips one byte at a time is cut when it passes.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpcore
import httpx

from .errors import AddressRefusedError, DeadlineError

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What an address is, in the order asked: the first that holds names it. `is_private`
# also holds for loopback and link-local addresses, so the narrower names come first.
KINDS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
)


def refusal(address: Address) -> str:
    """Why `address` is not reached by default ("a loopback address"), or "" for a public one.

    An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is judged as the IPv4 address it
    carries, and so are the IPv4 addresses inside 6to4 and Teredo addresses. Addresses
    that are none of the kinds above but still not globally reachable (shared address
    space 100.64.0.0/10, for one) are refused too.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal(address.ipv4_mapped)
        # The host a 6to4 or Teredo address reaches is its IPv4 address (Teredo: the client's).
        inner = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if inner is not None and refusal(inner):
            return refusal(inner)
    for attribute, kind in KINDS:
        if getattr(address, attribute):
            return kind
    return "" if address.is_global else "an address that is not globally reachable"


@dataclass(frozen=True)
class NetworkPolicy:
    """Which non-public networks an operator lets the project reach (empty: none)."""

    allow: tuple[Network, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> NetworkPolicy:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def allows(self, address: Address) -> bool:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(address in network or (mapped is not None and mapped in network) for network in self.allow)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_address(policy: NetworkPolicy, address: Address, *, host: str = "") -> None:
    """Raise `AddressRefusedError` when `address` (what `host` resolved to) may not be reached."""
    kind = refusal(address)
    if kind and not policy.allows(address):
        name = host.strip("[]")
        what = f"{name or address} is {kind}" if not name or _literal(name) == address else f"{name} resolves to {address}, {kind}"
        raise AddressRefusedError(f"refused: {what}; add it to [ingest] allow_networks to allow it")


@dataclass(frozen=True)
class _Deadline:
    expires: float
    seconds: float
    setting: str

    def remaining(self) -> float:
        left = self.expires - time.monotonic()
        if left <= 0:
            raise self.error()
        return left

    def error(self) -> DeadlineError:
        return DeadlineError(f"gave up after the {self.seconds:g} s deadline ({self.setting})")


_deadline: ContextVar[_Deadline | None] = ContextVar("netguard_deadline", default=None)


@contextmanager
def deadline(seconds: float, *, setting: str = "[ingest] deadline") -> Iterator[None]:
    """Every request made inside (in this thread) must be over within `seconds` of entering;
    past it, the read, write or connection under way raises `DeadlineError`, whose message
    names `setting` (where the operator changes the deadline)."""
    token = _deadline.set(_Deadline(time.monotonic() + seconds, seconds, setting))
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left before the current fetch's deadline (None outside `deadline`); raises
    `DeadlineError` when it has passed."""
    current = _deadline.get()
    return None if current is None else current.remaining()


def _within(timeout: float | None, timeout_error: type[Exception], call: Callable[[float | None], T]) -> T:
    """`call(timeout)`, with the timeout shortened to what is left before the deadline; a
    timeout that the deadline caused raises `DeadlineError` instead of `timeout_error`."""
    current = _deadline.get()
    if current is None:
        return call(timeout)
    left = current.remaining()
    if timeout is not None and timeout <= left:
        return call(timeout)
    try:
        return call(left)
    except timeout_error:
        raise current.error() from None


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads, writes and TLS handshake also end at the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within(timeout, httpcore.ReadTimeout, lambda t: self._inner.read(max_bytes, t))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within(timeout, httpcore.WriteTimeout, lambda t: self._inner.write(buffer, t))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # httpcore passes the URL's host name: SNI and the certificate check use it.
        tls = _within(timeout, httpcore.ConnectTimeout, lambda t: self._inner.start_tls(ssl_context, server_hostname, t))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves the host, checks each address, and connects to the first one allowed,
    by its number, so nothing is resolved again between the check and the connection."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self.policy = policy
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        refused: AddressRefusedError | None = None
        failed: httpcore.ConnectError | None = None
        for *_, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            try:
                check_address(self.policy, address, host=host)
            except AddressRefusedError as exc:
                refused = refused or exc
                continue
            try:
                stream = _within(timeout, httpcore.ConnectTimeout, lambda t: self._sockets.connect_tcp(
                    str(address), port, t, local_address, socket_options))
            except httpcore.ConnectError as exc:
                failed = exc
                continue
            return _DeadlineStream(stream)
        raise failed or refused or httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Unix sockets are not reached from here")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def make_client(
    policy: NetworkPolicy, *, timeout: float, headers: Mapping[str, str] | None = None, max_redirects: int = 5,
    verify: ssl.SSLContext | bool = True,
) -> httpx.Client:
    """An httpx client that reaches only what `policy` allows, follows up to `max_redirects`
    redirects (each one checked), and waits at most `timeout` seconds for each read.
    `verify` is httpx's: True checks certificates against its bundled authorities."""
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx takes no network backend, so its transport gets a pool that has ours (httpx's
    # own limits, and its certificates or SSL_CERT_FILE / SSL_CERT_DIR when set).
    limits = httpx.Limits()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify), max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_GuardedBackend(policy),
    )
    return httpx.Client(
        transport=transport, trust_env=False, timeout=httpx.Timeout(timeout), follow_redirects=True,
        max_redirects=max_redirects, headers=dict(headers or {}),
    )

"""The network guard on real local servers: sources, redirects, WordPress, preflight link
checks and screenshots never reach an internal address unless `[ingest] allow_networks`
lets them, and a server that drips one byte at a time is cut at `[ingest] deadline`.

These tests build their own `LocalServer`s (not the `server` fixture), so `make_settings`
gives the real default: no network allowed beyond the public internet.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from newsletter import drafts, netguard
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.errors import AddressRefusedError, ConfigError
from newsletter.ingest import SourceReport, ingest_sources, make_client
from newsletter.screenshots import take_screenshots
from newsletter.tables import articles
from tests.conftest import NOW, write_config
from tests.helpers import Item, rss
from tests.servers import LocalServer, Route
from tests.newsletter.test_preflight import add_articles, check, messages
from tests.wordpress_site import WordPressSite, three_pages

RSS = {"content-type": "application/rss+xml"}
DAY = timedelta(days=1)
LOOPBACK = ["127.0.0.1/32"]


def refused(address: str) -> str:
    return f"refused: {address} is a loopback address; add it to [ingest] allow_networks to allow it"


def feed(title: str, guid: str) -> Route:
    return Route(body=rss([Item(title, f"https://pharma.example.com/{guid}", NOW - DAY, [], guid=guid)]), headers=RSS)


@pytest.fixture
def local() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def other() -> Iterator[LocalServer]:
    """A server on 127.0.0.2: loopback too, and outside 127.0.0.1/32."""
    srv = LocalServer("127.0.0.2").start()
    yield srv
    srv.stop()


def stored_titles(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(articles.c.title)).scalars())


# --- the address classifier ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.0.0.2", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("100.64.0.1", "an address that is not globally reachable"),
        ("::1", "a loopback address"),
        ("::", "an unspecified address"),
        ("fe80::1", "a link-local address"),
        ("fd12:3456::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("::ffff:169.254.169.254", "a link-local address"),
        ("::ffff:0.0.0.0", "an unspecified address"),
        ("2002:7f00:1::", "a loopback address"),
        ("8.8.8.8", ""),
        ("93.184.215.14", ""),
        ("2606:4700:4700::1111", ""),
        ("::ffff:8.8.8.8", ""),
    ],
)
def test_the_classifier_names_every_internal_kind(address: str, kind: str) -> None:
    assert netguard.refusal(ipaddress.ip_address(address)) == kind


def test_allow_networks_lets_exactly_its_networks_through() -> None:
    policy = netguard.NetworkPolicy.from_cidrs(["127.0.0.1/32", "10.1.0.0/16"])
    for allowed in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.200.3", "8.8.8.8"):
        netguard.check_address(policy, ipaddress.ip_address(allowed))
    for address, kind in (("127.0.0.2", "a loopback address"), ("10.2.0.1", "a private address"),
                          ("169.254.169.254", "a link-local address")):
        with pytest.raises(AddressRefusedError) as caught:
            netguard.check_address(policy, ipaddress.ip_address(address))
        assert str(caught.value) == f"refused: {address} is {kind}; add it to [ingest] allow_networks to allow it"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.1.0.5/16", "ingest.allow_networks: '10.1.0.5/16' is not a CIDR network such as 10.1.0.0/16 or "
                        "127.0.0.1/32; did you mean 10.1.0.0/16?"),
        ("intranet", "ingest.allow_networks: 'intranet' is not a CIDR network"),
        ("10.1.0.0/33", "ingest.allow_networks: '10.1.0.0/33' is not a CIDR network"),
    ],
)
def test_a_bad_allow_networks_entry_is_refused_naming_the_key(tmp_path: Path, entry: str, expected: str) -> None:
    path = write_config(tmp_path / "newsletter.toml", {"ingest": {"allow_networks": ["127.0.0.1/32", entry]}})
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_allow_networks_is_empty_by_default_and_read_from_file_and_environment(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path / "empty.toml", {}), environ={}).ingest.allow_networks == []
    path = write_config(tmp_path / "newsletter.toml", {"ingest": {"allow_networks": ["10.1.0.0/16", "127.0.0.1/32"]}})
    assert load_settings(path, environ={}).ingest.allow_networks == ["10.1.0.0/16", "127.0.0.1/32"]
    env = {"NEWSLETTER_INGEST__ALLOW_NETWORKS": "10.1.0.0/16, ::1/128"}
    assert load_settings(path, environ=env).ingest.allow_networks == ["10.1.0.0/16", "::1/128"]
    assert load_settings(path, environ={}).ingest.deadline == 60


# --- the client ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", refused("127.0.0.1")),
        ("0.0.0.0", "refused: 0.0.0.0 is an unspecified address; add it to [ingest] allow_networks to allow it"),
        ("[::ffff:127.0.0.1]", refused("::ffff:127.0.0.1")),
        ("2130706433", "refused: 2130706433 resolves to 127.0.0.1, a loopback address; add it to [ingest] allow_networks to allow it"),
        ("localhost", "refused: localhost resolves to "),
    ],
)
def test_the_default_client_refuses_loopback_however_it_is_written(
    make_settings: Callable[..., Settings], local: LocalServer, host: str, expected: str
) -> None:
    local.routes["/"] = Route(body=b"internal")
    port = local.httpd.server_address[1]
    with make_client(make_settings()) as client, pytest.raises(AddressRefusedError) as caught:
        client.get(f"http://{host}:{port}/")
    assert str(caught.value).startswith(expected)
    assert local.requests == []


def test_proxies_from_the_environment_are_not_used(
    make_settings: Callable[..., Settings], local: LocalServer, other: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would resolve and connect by itself, out of the guard's sight.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, local.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    other.routes["/"] = Route(body=b"internal")
    with make_client(make_settings(ingest={"allow_networks": LOOPBACK})) as client, \
            pytest.raises(AddressRefusedError) as caught:
        client.get(f"{other.url}/")
    assert str(caught.value) == refused("127.0.0.2")
    assert (local.requests, other.requests) == ([], [])


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for the name `localhost` only, its key), as PEM files."""
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Test CA")).issuer_name(name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - DAY).not_valid_after(now + DAY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - DAY).not_valid_after(now + DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_tls_keeps_the_host_name_for_sni_and_the_certificate_while_connecting_to_the_checked_address(
    tmp_path: Path, local: LocalServer
) -> None:
    ca, certificate, key = _certificates(tmp_path)
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    context.sni_callback = lambda sock, server_name, ctx: names.append(server_name)
    local.routes["/feed.xml"] = feed("Over TLS", "tls")
    local.httpd.socket = context.wrap_socket(local.httpd.socket, server_side=True)
    port = local.httpd.server_address[1]
    trust = ssl.create_default_context(cafile=str(ca))
    with netguard.make_client(netguard.NetworkPolicy.from_cidrs(LOOPBACK), timeout=5, verify=trust) as client:
        # `localhost` resolves (also to ::1, refused and skipped) and is reached at 127.0.0.1.
        response = client.get(f"https://localhost:{port}/feed.xml")
        assert response.status_code == 200 and b"Over TLS" in response.content
        assert names == ["localhost"] and local.requests[0].headers["host"] == f"localhost:{port}"
        # The certificate is checked against the URL's name: it does not name 127.0.0.1.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(f"https://127.0.0.1:{port}/feed.xml")
    with netguard.make_client(netguard.NetworkPolicy(), timeout=5, verify=trust) as client, \
            pytest.raises(AddressRefusedError):
        client.get(f"https://localhost:{port}/feed.xml")


# --- sources -------------------------------------------------------------------------


def test_the_default_refuses_a_feed_at_127_0_0_1_with_one_line(
    engine: Engine, make_settings: Callable[..., Settings], local: LocalServer, tmp_path: Path
) -> None:
    local.routes["/feed.xml"] = feed("Internal admin page", "secret")
    settings = make_settings(feeds=[{"name": "Intranet", "url": f"{local.url}/feed.xml"}])
    [report] = ingest_sources(engine, settings)
    assert (report.name, report.status, report.error) == ("Intranet", "failed", refused("127.0.0.1"))
    assert local.requests == [] and stored_titles(engine) == []
    # Through the command: one line naming the source, no traceback, exit status 1.
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "newsletter.toml"), "ingest"],
                                env={"COLUMNS": "250", "NEWSLETTER_CONFIG": ""})
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [x for x in result.output.splitlines() if "Intranet" in x]
    assert "failed" in line and refused("127.0.0.1") in line


def test_an_allowed_feed_is_read_and_its_redirect_to_127_0_0_2_is_refused(
    engine: Engine, make_settings: Callable[..., Settings], local: LocalServer, other: LocalServer
) -> None:
    local.routes["/feed.xml"] = feed("Intranet news", "intranet")
    local.routes["/hop.xml"] = Route(302, headers={"location": f"{other.url}/feed.xml"})
    other.routes["/feed.xml"] = feed("Internal admin page", "secret")
    settings = make_settings(
        feeds=[{"name": "Intranet", "url": f"{local.url}/feed.xml"}, {"name": "Hop", "url": f"{local.url}/hop.xml"}],
        ingest={"allow_networks": LOOPBACK},
    )
    intranet, hop = ingest_sources(engine, settings)
    assert (intranet.status, intranet.new) == ("fetched", 1)
    assert (hop.name, hop.status, hop.error) == ("Hop", "failed", refused("127.0.0.2"))
    assert other.requests == []
    assert [r.path for r in local.requests] == ["/feed.xml", "/hop.xml"]
    assert stored_titles(engine) == ["Intranet news"]


def test_a_wordpress_site_at_a_refused_address_is_never_asked(
    engine: Engine, make_settings: Callable[..., Settings], local: LocalServer
) -> None:
    pages = three_pages()
    site = WordPressSite(local, pages)
    settings = make_settings(wordpress=[{"name": "Site", "url": site.url}], ingest={"retries": 2, "retry_backoff": 0})
    [report] = ingest_sources(engine, settings, clock=lambda: NOW)
    assert (report.kind, report.status, report.error) == ("wordpress", "failed", refused("127.0.0.1"))
    assert local.requests == [] and stored_titles(engine) == []
    # Allowed, the same site is read.
    allowed = make_settings(wordpress=[{"name": "Site", "url": site.url}], ingest={"allow_networks": LOOPBACK})
    [report] = ingest_sources(engine, allowed, clock=lambda: NOW)
    assert report.status == "fetched" and report.new == sum(len(page) for page in pages)


def test_a_preflight_link_to_an_internal_address_is_not_asked(
    engine: Engine, make_settings: Callable[..., Settings], local: LocalServer
) -> None:
    add_articles(engine, base=local.url)
    for path in ("/dd", "/mf", "/ev"):
        local.routes[path] = Route(200)
    settings = make_settings()
    drafts.build_draft(engine, settings, now=NOW)
    report = check(engine, settings, links=True)
    assert report.passed
    links = sorted(m for m in messages(report, "warning") if m.startswith("[links]"))
    assert links == sorted(
        f"[links] {title!r}: {local.url}{path} was not asked ({refused('127.0.0.1')})"
        for title, path in (("Trial meets its endpoint", "/dd"), ("New bioreactor plant", "/mf"), ("Congress preview", "/ev"))
    )
    assert local.requests == []


# --- the deadline --------------------------------------------------------------------


class DripServer:
    """Answers 200 with a long body, then sends one byte every half second until the
    client goes away (or the test ends)."""

    def __init__(self) -> None:
        stop = self.stop_event = threading.Event()

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/rss+xml")
                self.send_header("content-length", "1000000")
                self.end_headers()
                try:
                    while not stop.is_set():
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    return  # The client went away.

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    srv = DripServer()
    yield srv
    srv.close()


def test_a_dripping_feed_is_cut_at_the_deadline_and_the_next_source_is_read(
    engine: Engine, make_settings: Callable[..., Settings], local: LocalServer, drip: DripServer
) -> None:
    local.routes["/feed.xml"] = feed("Still read", "good")
    settings = make_settings(
        feeds=[{"name": "Drip", "url": f"{drip.url}/feed.xml"}, {"name": "Good", "url": f"{local.url}/feed.xml"}],
        # Each read gets a byte within 0.5 s, so only the deadline can end the fetch.
        ingest={"allow_networks": LOOPBACK, "deadline": 2, "timeout": 5},
    )
    done: list[tuple[SourceReport, float]] = []
    started = time.monotonic()
    dripped, good = ingest_sources(engine, settings, on_source=lambda r: done.append((r, time.monotonic() - started)))
    took = done[0][1]
    assert 2 * 0.8 <= took <= 2 * 1.2, took
    assert (dripped.name, dripped.status, dripped.error) == ("Drip", "failed", "gave up after the 2 s deadline ([ingest] deadline)")
    assert (good.status, good.new) == ("fetched", 1)
    assert stored_titles(engine) == ["Still read"]


def test_wordpress_retries_stop_where_waiting_would_pass_the_deadline(
    engine: Engine, make_settings: Callable[..., Settings], local: LocalServer
) -> None:
    site = WordPressSite(local, three_pages())
    site.failures = {1: [500] * 5}
    settings = make_settings(
        wordpress=[{"name": "Site", "url": site.url}],
        ingest={"allow_networks": LOOPBACK, "deadline": 1.5, "retries": 5, "retry_backoff": 1},
    )
    started = time.monotonic()
    [report] = ingest_sources(engine, settings, clock=lambda: NOW)
    # Tried at 0 s and after 1 s; the next wait (2 s) would end past the 1.5 s deadline,
    # so it is not waited: the whole ingest ends well before the 3 s that wait would take
    # (the margin is for a loaded machine).
    assert time.monotonic() - started < 2.5
    assert report.error == (
        "HTTP 500 Internal Server Error (tried 2 times); not tried again: the next try would pass [ingest] deadline"
    )
    assert len(site.requests()) == 2


def test_the_deadline_holds_for_a_client_used_directly(drip: DripServer) -> None:
    policy = netguard.NetworkPolicy.from_cidrs(LOOPBACK)
    with netguard.make_client(policy, timeout=5) as client, pytest.raises(Exception) as caught:
        # Timed from where the deadline starts (making the client is not part of it).
        started = time.monotonic()
        try:
            with netguard.deadline(1, setting="the test's deadline"), client.stream("GET", drip.url) as response:
                for _ in response.iter_bytes():
                    pass
        finally:
            took = time.monotonic() - started
    assert str(caught.value) == "gave up after the 1 s deadline (the test's deadline)"
    assert 0.8 <= took <= 1.2, took
    # Outside a deadline, the per-read timeout alone applies, as before.
    with netguard.make_client(policy, timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{drip.url}/")


# --- screenshots ---------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f80f000001010100"
    "5bd6cfa80000000049454e44ae426082"
)


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no Chromium at /usr/bin/chromium")
def test_screenshots_load_no_image_from_an_internal_address(tmp_path: Path, local: LocalServer, other: LocalServer) -> None:
    local.routes["/pic.png"] = Route(body=PNG, headers={"content-type": "image/png"})
    other.routes["/pic.png"] = Route(body=PNG, headers={"content-type": "image/png"})
    html = (f'<html><body><p>Hello</p><img src="{local.url}/pic.png" alt="a">'
            f'<img src="{other.url}/pic.png" alt="b"></body></html>')
    shots = take_screenshots(html, tmp_path / "refused", stem="s", chromium=CHROMIUM, policy=netguard.NetworkPolicy())
    assert [p.name for p in shots] == ["s-desktop.png", "s-mobile.png"] and all(p.stat().st_size > 0 for p in shots)
    assert (local.requests, other.requests) == ([], [])
    # With 127.0.0.1/32 allowed, that image is fetched (by our client) and 127.0.0.2 still is not.
    take_screenshots(html, tmp_path / "allowed", stem="s", chromium=CHROMIUM,
                     policy=netguard.NetworkPolicy.from_cidrs(LOOPBACK))
    assert {(r.method, r.path) for r in local.requests} == {("GET", "/pic.png")}
    assert other.requests == []

"""Rate limits that hold however many processes serve: counted in Redis when
`web.rate_limit_storage` names it, in memory otherwise, and in memory with one warning
while Redis does not answer.

Redis runs on 127.0.0.1:6379 here and in CI. Each test gets keys of its own through a
`site.base_url` of its own (the app prefixes its keys with it) and deletes them after."""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.web import create_app
from tests.conftest import NOW
from tests.newsletter.web.test_browser import free_port
from tests.newsletter.web.test_web import SECRET, Client

REDIS = "redis://127.0.0.1:6379/0"
CLI = [sys.executable, "-c", "from newsletter.cli import app; app()"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def base_url() -> Iterator[str]:
    """A site address no other test uses; its Redis keys are deleted afterwards."""
    url = f"https://news-{uuid.uuid4().hex[:10]}.example.com"
    yield url
    prefix = "newsletter-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def redis_keys(base_url: str) -> list[str]:
    prefix = "newsletter-" + hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:12]
    client = redis.Redis.from_url(REDIS)
    try:
        return sorted(k.decode() for k in client.scan_iter(f"{prefix}*"))
    finally:
        client.close()


def limited_settings(make_settings: Callable[..., Settings], base_url: str, storage: str, per_ip: int) -> Settings:
    return make_settings(
        site={"base_url": base_url},
        security={"secret_key": SECRET},
        web={"subscribe_per_ip": per_ip, "rate_window_seconds": 3600, "rate_limit_storage": storage},
    )


def subscribe(client: Client, n: int) -> int:
    return client.post("/subscribe", data={"email": f"reader{n}@example.com"}).status_code


def test_two_apps_on_one_redis_share_the_limit(
    engine: Engine, make_settings: Callable[..., Settings], base_url: str
) -> None:
    settings = limited_settings(make_settings, base_url, REDIS, per_ip=4)
    first, second = (Client(create_app(settings, engine=engine, clock=lambda: NOW), base_url=base_url) for _ in "12")
    codes = [subscribe(client, n) for n, client in enumerate([first, second, first, second, first, second])]
    assert codes == [200, 200, 200, 200, 429, 429]
    # The keys say what they count and never hold an address.
    keys = redis_keys(base_url)
    assert keys and all("subscribe-ip/ip:203.0.113.50" in k or "subscribe-address/" in k for k in keys)
    assert not any("@" in k for k in keys)


def test_in_memory_each_app_counts_alone(engine: Engine, make_settings: Callable[..., Settings], base_url: str) -> None:
    settings = limited_settings(make_settings, base_url, "", per_ip=2)
    first, second = (Client(create_app(settings, engine=engine, clock=lambda: NOW), base_url=base_url) for _ in "12")
    assert [subscribe(first, n) for n in range(3)] == [200, 200, 429]
    assert [subscribe(second, n) for n in range(3, 6)] == [200, 200, 429]
    assert redis_keys(base_url) == []


def test_with_redis_down_the_limits_count_in_memory_with_one_warning(
    engine: Engine, make_settings: Callable[..., Settings], base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    down = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    settings = limited_settings(make_settings, base_url, down, per_ip=3)
    client = Client(create_app(settings, engine=engine, clock=lambda: NOW), base_url=base_url)
    assert [subscribe(client, n) for n in range(5)] == [200, 200, 200, 429, 429]
    warnings = [r.getMessage() for r in caplog.records if r.name == "newsletter.web.limits"]
    assert len(warnings) == 1 and "does not answer (ConnectionError)" in warnings[0]
    assert "hunter2" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


class OwnRedis:
    """A Redis server of the test's own on a port of its own, to stop and start again."""

    def __init__(self, folder: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.command = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--dir", str(folder)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.keys() is not None:
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def keys(self) -> list[bytes]:
        client = redis.Redis(port=self.port)
        try:
            return list(client.keys())
        finally:
            client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


def test_redis_stopping_at_run_time_falls_back_to_memory_and_comes_back(
    engine: Engine, make_settings: Callable[..., Settings], base_url: str,
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    own_redis.start()
    settings = limited_settings(make_settings, base_url, f"redis://127.0.0.1:{own_redis.port}/0", per_ip=100)
    seconds = [0.0]
    client = Client(create_app(settings, engine=engine, clock=lambda: NOW, monotonic=lambda: seconds[0]), base_url=base_url)
    assert subscribe(client, 0) == 200
    assert any(b"subscribe-ip" in k for k in own_redis.keys())
    own_redis.stop()
    assert [subscribe(client, n) for n in range(1, 4)] == [200, 200, 200]
    said = [r.getMessage() for r in caplog.records if r.name == "newsletter.web.limits"]
    assert len(said) == 1 and "does not answer" in said[0]
    own_redis.start()
    # Redis is asked again only after a pause: until then memory counts.
    assert subscribe(client, 4) == 200 and own_redis.keys() == []
    seconds[0] += 31
    assert subscribe(client, 5) == 200
    assert any(b"subscribe-ip" in k for k in own_redis.keys())
    said = [r.getMessage() for r in caplog.records if r.name == "newsletter.web.limits"]
    assert len(said) == 2 and "answers again" in said[1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_serve_with_two_workers_holds_the_limit_across_both(
    make_settings: Callable[..., Settings], base_url: str, tmp_path: Path
) -> None:
    limit = 10
    settings = limited_settings(make_settings, base_url, REDIS, per_ip=limit)
    config = settings.base_dir / "newsletter.toml"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env |= {"NEWSLETTER_SECRET_KEY": SECRET}
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as log:
        # The config path is given only to the parent: the workers must be handed it.
        server = subprocess.Popen(
            [*CLI, "--config", str(config), "serve", "--workers", "2", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 90
        while log_file.read_text().count("Application startup complete.") < 2:
            assert server.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)

        def post(n: int) -> int:
            # A connection of its own for each request, so either worker may take it.
            return httpx.post(f"http://127.0.0.1:{port}/subscribe", data={"email": f"reader{n}@example.com"},
                              timeout=30).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(post, range(limit + 1)))
        assert sorted(codes) == [200] * limit + [429]
        assert post(limit + 1) == 429
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    output = log_file.read_text()
    workers = {pid for pid in re.findall(r"newsletter\.web \[(\d+)\]: POST /subscribe", output)}
    assert len(workers) == 2, f"one worker served every request; the test shows nothing:\n{output}"
    assert "Traceback" not in output

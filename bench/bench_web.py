"""Web benchmark: the public pages under wrk, each against a bare Starlette page of the
same size served with the same server options in the same run.

Run from the repository root: `python bench/bench_web.py` (add `--json` for JSON;
`--runs`, `--seconds`, `--connections`, `--subscribers` to change the load). It needs wrk
(Debian: `apt-get install wrk`).

Setup, not measured: a temporary folder with a SQLite database, the 20-article issue of
`bench_render.py` built and sent (so the archive holds it), N active subscribers, and two
servers, each its own process with one uvicorn worker and the same options (no access log
from uvicorn, no server header, proxy headers from 127.0.0.1): `newsletter serve`, and a
bare Starlette app whose one route answers a page of a given size from memory.

Measured, with `wrk -t1 -c<connections> -d<seconds>s --latency`, per endpoint and run, the
bare page of the same size first and then ours, so each ratio comes from the same minute:
1. `GET /preferences/{token}` for subscribers in random order (a read, a CSRF token, a page);
2. `POST /unsubscribe/{token}` with `List-Unsubscribe=One-Click`, a different subscriber
   each time, so every request writes the status and a consent row;
3. `GET /archive/`, 4. `GET /archive/{slug}` and 5. `GET /` (the landing page with the
   form and the newest issue), the same for every visitor.
Reported: requests per second, p50 and p99 latency, non-2xx answers, and our requests per
second as a share of the bare page's; the median over `--runs` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

import subscribers as people
from bench_render import prepare_issue
from newsletter import issues

#: The targets of issue 21: our requests/s as a share of the bare page's.
GOALS = {"preferences": 0.35, "one_click": 0.20, "archive_index": 0.50, "archive_issue": 0.50, "home": 0.50}
#: What the table calls them (80 columns).
LABELS = {"preferences": "GET prefs", "one_click": "POST 1-click", "archive_index": "GET archive",
          "archive_issue": "GET issue", "home": "GET /"}

BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
pages = {}
async def page(request):
    size = request.path_params["size"]
    if size not in pages:
        pages[size] = "<!doctype html><html><body>" + "x" * max(0, size - 41) + "</body></html>"
    return HTMLResponse(pages[size])
app = Starlette(routes=[Route("/size/{size:int}", page, methods=["GET", "POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, server_header=False,
            proxy_headers=True, forwarded_allow_ips="127.0.0.1", log_level="warning")
"""

#: A wrk script: each request takes the next path of the file named by PATHS; POST with
#: the one-click body when METHOD is POST.
LUA = """
local paths = {}
for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
local method = os.getenv("METHOD")
local body = "List-Unsubscribe=One-Click"
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
local i = 0
request = function()
  i = i + 1
  local path = paths[((i - 1) % #paths) + 1]
  if method == "POST" then return wrk.format("POST", path, headers, body) end
  return wrk.format("GET", path)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, paths: list[str], *, method: str, seconds: int, connections: int, folder: Path) -> dict[str, Any]:
    """One wrk run against `url` + each of `paths` in turn."""
    script = folder / "paths.lua"
    script.write_text(LUA, encoding="utf-8")
    listing = folder / "paths.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True, env={**os.environ, "PATHS": str(listing), "METHOD": method},
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": round(_ms(percentiles["50"]), 2),
        "p99_ms": round(_ms(percentiles["99"]), 2),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server for {url} did not start")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--endpoints", default=",".join(GOALS), help=f"Which, comma-separated (default: {','.join(GOALS)}).")
    parser.add_argument("--py-spy", metavar="FOLDER", dest="py_spy",
                        help="Sample our server with py-spy (pip install py-spy) while wrk runs: collapsed stacks per endpoint and run.")
    args = parser.parse_args()
    wanted = [name for name in args.endpoints.split(",") if name]
    unknown = set(wanted) - set(GOALS)
    if unknown:
        raise SystemExit(f"--endpoints: unknown {', '.join(sorted(unknown))}; choose among {', '.join(GOALS)}")
    if shutil.which("wrk") is None:
        raise SystemExit("bench_web needs wrk: apt-get install wrk")
    console = Console(stderr=True)

    with tempfile.TemporaryDirectory(prefix="bench-web-") as name:
        folder = Path(name)
        now = datetime.now(UTC)
        with console.status("Building and archiving an issue, adding subscribers"):
            settings, engine, built = prepare_issue(folder, now=now)
            # Sent before anyone subscribed: the send archives the issue and mails no one.
            issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda: now)
            with engine.begin() as conn:
                people.upsert_subscribers(
                    conn, (people.NewSubscriber(f"reader{n}@example.com", ("news",)) for n in range(args.subscribers)),
                    now=now,
                )
                tokens = list(conn.execute(people.subscribers.select().with_only_columns(people.subscribers.c.token)).scalars())
            engine.dispose()
        random.Random(1).shuffle(tokens)
        slug = built.issue.slug
        port, bare_port = free_port(), free_port()
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench-secret-key-0123456789"}
        ours = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(folder / "newsletter.toml"), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=folder,
        )
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}
        try:
            base, bare_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
            wait_for(f"{base}/healthz", ours)
            wait_for(f"{bare_base}/size/10", bare)
            # The size of each page, for its bare twin (a token that is not used below).
            sizes = {
                "preferences": len(httpx.get(f"{base}/preferences/{tokens[-1]}").content),
                "one_click": len(httpx.post(f"{base}/unsubscribe/{tokens[-1]}", data={"List-Unsubscribe": "One-Click"}).content),
                "archive_index": len(httpx.get(f"{base}/archive/").content),
                "archive_issue": len(httpx.get(f"{base}/archive/{slug}").content),
                "home": len(httpx.get(f"{base}/").content),
            }
            pool = tokens[:-1]
            # A new stretch of subscribers for every one-click run: each request writes.
            stretch = len(pool) // args.runs
            for run in range(args.runs):
                for endpoint in wanted:
                    method = "POST" if endpoint == "one_click" else "GET"
                    if endpoint == "preferences":
                        paths = [f"/preferences/{t}" for t in pool]
                    elif endpoint == "one_click":
                        paths = [f"/unsubscribe/{t}" for t in pool[run * stretch : (run + 1) * stretch]]
                    elif endpoint == "archive_index":
                        paths = ["/archive/"]
                    elif endpoint == "home":
                        paths = ["/"]
                    else:
                        paths = [f"/archive/{slug}"]
                    with console.status(f"run {run + 1}/{args.runs}: {endpoint}"):
                        twin = wrk(bare_base, [f"/size/{sizes[endpoint]}"], method=method, seconds=args.seconds,
                                   connections=args.connections, folder=folder)
                        spy = None
                        if args.py_spy:
                            Path(args.py_spy).mkdir(parents=True, exist_ok=True)
                            spy = subprocess.Popen(
                                ["py-spy", "record", "-p", str(ours.pid), "-r", "250", "-f", "raw", "--threads", "-o",
                                 str(Path(args.py_spy) / f"{endpoint}-{run + 1}.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                            time.sleep(1)
                        mine = wrk(base, paths, method=method, seconds=args.seconds, connections=args.connections,
                                   folder=folder)
                        if spy is not None:
                            spy.send_signal(signal.SIGINT)
                            spy.wait(timeout=60)
                    runs[endpoint].append({**mine, "bare_requests_per_second": twin["requests_per_second"],
                                           "share": mine["requests_per_second"] / twin["requests_per_second"]})
        finally:
            for process in (ours, bare):
                process.terminate()
                process.wait(timeout=10)

    result: dict[str, Any] = {
        "subscribers": args.subscribers, "connections": args.connections, "seconds": args.seconds, "runs": args.runs,
        "database": "sqlite", "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 1), "endpoints": {},
    }
    for endpoint, measured in runs.items():
        result["endpoints"][endpoint] = {
            "page_bytes": sizes[endpoint],
            **{key: statistics.median(r[key] for r in measured)
               for key in ("requests_per_second", "bare_requests_per_second", "p50_ms", "p99_ms", "share")},
            "non_2xx": sum(r["non_2xx"] for r in measured),
            "shares": [round(r["share"], 3) for r in measured],
            "goal": GOALS[endpoint],
        }
        result["endpoints"][endpoint]["met"] = result["endpoints"][endpoint]["share"] >= GOALS[endpoint]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"wrk -t1 -c{args.connections} -d{args.seconds}s, median of {args.runs} runs, SQLite")
    for column in ("endpoint", "req/s", "bare req/s", "share", "goal", "p50 ms", "p99 ms", "non-2xx"):
        table.add_column(column, justify="left" if column == "endpoint" else "right", no_wrap=True)
    for endpoint, row in result["endpoints"].items():
        table.add_row(
            LABELS[endpoint], f"{row['requests_per_second']:,.0f}", f"{row['bare_requests_per_second']:,.0f}",
            f"{row['share']:.0%}", f"{row['goal']:.0%}" + (" ✓" if row["met"] else " ✗"),
            f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", str(row["non_2xx"]),
        )
    Console().print(table)


if __name__ == "__main__":
    main()

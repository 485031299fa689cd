"""CSV import and export benchmark: `newsletter subscribers import` and `export` run as
an administrator runs them (a new process each, through the CLI), timed from the outside.

Run from the repository root: `python bench/bench_import.py --rows 1000000`
(add `--json` for JSON, `--postgres URL` to use a new schema on that PostgreSQL server
instead of a SQLite file, `--profile N` to profile an in-process import of N rows instead,
on either).

The file is made in a temporary folder: `email,name,sections` rows of varied addresses
(dots, plus tags, capitals, subdomains; 0.2% internationalized ones that only
email-validator decides), names (some with accents, some empty) and one to three
sections by slug or name separated by `,` `;` or `|`. 1% of the rows are bad in equal
parts: an address that is not one, an unknown section, a name with a control character,
the address of an earlier row in other capitals. Before the first import, 0.1% of the
file's addresses are put on the suppression list and 0.1% are erased (their hash), so the
gate is exercised; the database holds no subscribers.

Measured, each a process of its own (wall time including the start of Python, and its
peak RSS from `wait4`):
1. import of the first 100,000 rows into an empty database (peak RSS at 100k);
2. import of all rows into another empty database;
3. the same import again into that database (every row an update);
4. `export --out` of that database.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import pstats
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_send import compile_bytecode, loop_ms, scratch_database  # noqa: E402
import subscribers as people  # noqa: E402
from newsletter import issues  # noqa: E402
from newsletter.config import load_settings  # noqa: E402

CONFIG = """\
[site]
name = "Bench Weekly"
base_url = "https://bench.example.com"
postal_address = "Bench Weekly, 1 Example Street, London EC1A 1AA, United Kingdom"

[sender]
name = "Bench Weekly"
address = "newsletter@bench.example.com"

[database]
url = "{url}"

[delivery]
transport = "outbox"
outbox_dir = "outbox"
unsubscribe_mailto = "unsubscribe@bench.example.com"
"""
SECTIONS = {
    "drug-development": "Drug Development", "manufacturing": "Manufacturing", "supply-chain": "Supply Chain",
    "facilities": "Facilities", "insights": "Insights", "events": "Events", "news": "News",
}
FIRST = ["ann", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar",
         "peggy", "trent", "victor", "walter", "zoë", "józsef", "siobhán", "li"]
LAST = ["archer", "baker", "clark", "davies", "evans", "fischer", "garcía", "hughes", "ito", "jones", "kowalski",
        "müller", "nguyen", "o'brien", "patel", "quinn", "rossi", "smith", "tanaka", "weiß"]
DOMAINS = ["example.com", "mail.example.org", "Example.NET", "pharma-corp.example.co.uk", "labs.example.io",
           "a.b.c.example.com", "hospital.example.de", "uni-example.ac.uk", "example-mail.com", "x.example"]
IDN = ["zoë{n}@exämple.de", "josé.{n}@example.com", "user{n}@münchen.example", "名前{n}@example.jp"]
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _ascii(text: str) -> str:
    return text.encode("ascii", "ignore").decode("ascii") or "x"


def good_address(n: int, rng: random.Random) -> str:
    if n % 500 == 7:
        return IDN[n % len(IDN)].format(n=n)
    first, last = _ascii(rng.choice(FIRST)), _ascii(rng.choice(LAST)).replace("'", "")
    shape = n % 6
    local = (f"{first}.{last}{n}", f"{first}{n}", f"{first}.{last}+news{n}", f"{first[0]}_{last}.{n}",
             f"{first.title()}.{last.title()}{n}", f"{last}-{first}{n}")[shape]
    return f"{local}@{rng.choice(DOMAINS)}"


def make_csv(path: Path, rows: int, *, seed: int = 21) -> tuple[list[str], list[str]]:
    """Write the benchmark file; return (addresses to suppress, addresses to erase)."""
    rng = random.Random(seed)
    names = list(SECTIONS.items())
    suppress: list[str] = []
    erase: list[str] = []
    seps = [",", ";", "|"]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name", "sections"])
        for n in range(rows):
            email = good_address(n, rng)
            name = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}" if n % 10 else ""
            chosen = rng.sample(names, rng.randint(1, 3))
            sections = rng.choice(seps).join(slug if n % 3 else title for slug, title in chosen)
            bad = n % 100 == 50
            if bad:
                kind = (n // 100) % 4
                if kind == 0:
                    email = rng.choice([f"reader{n}@@example.com", f"reader{n}.example.com", f"reader{n}@example",
                                        f"reader {n}@example.com", f".reader{n}@example.com"])
                elif kind == 1:
                    sections = "Sports"
                elif kind == 2:
                    name = f"Eve\tTab {n}"
                elif n > 100:
                    email = good_address(n - 100, random.Random(n)).upper()
            elif n % 1000 == 11:
                suppress.append(email)
            elif n % 1000 == 13:
                erase.append(email)
            writer.writerow([email, name, sections])
    return suppress, erase


def prepare(folder: Path, url: str, suppress: list[str], erase: list[str]) -> Path:
    """A configuration in `folder` for the database at `url`, its schema made, and the
    suppression list filled (the normalized address, or the erased hash)."""
    config = folder / "newsletter.toml"
    config.write_text(CONFIG.format(url=url), encoding="utf-8")
    settings = load_settings(config, environ={})
    engine = issues.open_database(settings)
    rows = [{"email": people.normalize_email(e), "reason": "bounce", "created_at": NOW} for e in suppress]
    rows += [{"email": people.erased_key(people.normalize_email(e)), "reason": "erased", "created_at": NOW} for e in erase]
    with engine.begin() as conn:
        if rows:
            conn.execute(insert(people.suppressions), rows)
    engine.dispose()
    return config


@dataclass
class Run:
    what: str
    rows: int
    seconds: float
    rows_per_s: float
    peak_rss_mb: float
    summary: str


def run_cli(what: str, config: Path, args: list[str], rows: int) -> Run:
    """One `newsletter` command in a process of its own: wall time and peak RSS."""
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *args],
                                stdout=out_file, stderr=err_file, env={**os.environ, "COLUMNS": "200"})
        # wait4 gives this child's own resource use: its peak RSS in KiB on Linux.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode not in (0, 4):
        raise SystemExit(f"{what}: exit {proc.returncode}\n{out.decode()}\n{err.decode()}")
    text = out.decode()
    found = re.search(r"(Imported: .*?rejected\.|Wrote [\d,]+ subscribers)", text)
    return Run(what, rows, round(seconds, 2), round(rows / seconds), round(usage.ru_maxrss / 1024, 1),
               found.group(1) if found else text.strip()[:80])


def measure(rows: int, postgres: str | None, folder: Path) -> list[Run]:
    big = folder / "people.csv"
    suppress, erase = make_csv(big, rows)
    small = folder / "people-100k.csv"
    small_rows = min(rows, 100_000)
    with big.open(encoding="utf-8") as src, small.open("w", encoding="utf-8") as dst:
        for n, line in enumerate(src):
            if n > small_rows:
                break
            dst.write(line)
    import_args = ["subscribers", "import", "--name-column", "name", "--sections-column", "sections"]
    runs: list[Run] = []
    with scratch_database("bench-import-small-", postgres) as (sub, url):
        config = prepare(sub, url, suppress, erase)
        runs.append(run_cli(f"import {small_rows:,}, empty database", config, [*import_args, str(small)], small_rows))
    with scratch_database("bench-import-", postgres) as (sub, url):
        config = prepare(sub, url, suppress, erase)
        runs.append(run_cli(f"import {rows:,}, empty database", config, [*import_args, str(big)], rows))
        runs.append(run_cli(f"import {rows:,} again (updates)", config, [*import_args, str(big)], rows))
        out = sub / "export.csv"
        runs.append(run_cli("export", config, ["subscribers", "export", "--out", str(out)], rows))
    return runs


def profile(rows: int, folder: Path, postgres: str | None) -> None:
    """Profile one in-process import of `rows` rows into an empty database (SQLite, or a
    new schema on the PostgreSQL server at `postgres`)."""
    path = folder / "people.csv"
    suppress, erase = make_csv(path, rows)
    with scratch_database("bench-import-profile-", postgres) as (sub, url):
        profile_import(path, rows, prepare(sub, url, suppress, erase))


def profile_import(path: Path, rows: int, config: Path) -> None:
    settings = load_settings(config, environ={})
    engine = issues.open_database(settings)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    with engine.begin() as conn, path.open(encoding="utf-8", newline="") as f:
        profiler.enable()
        report = people.import_csv(conn, f, columns=people.ColumnMap("email", "name", "sections"),
                                   known_sections=settings.section_names(), default_sections=list(SECTIONS), now=NOW)
        profiler.disable()
    seconds = time.perf_counter() - started
    print(f"{rows:,} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s): {report.created} created, "
          f"{len(report.rejected)} rejected, {len(report.skipped)} skipped")
    engine.dispose()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows in the file (default 1,000,000).")
    parser.add_argument("--postgres", metavar="URL", help="Use a new schema on this PostgreSQL server instead of SQLite.")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="Profile an in-process import of N rows instead (SQLite, or --postgres).")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(argv)
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="bench-import-csv-") as tmp:
        if args.profile:
            profile(args.profile, Path(tmp), args.postgres)
            return 0
        loop = loop_ms()
        load = os.getloadavg()[0]
        runs = measure(args.rows, args.postgres, Path(tmp))
    database = "postgresql" if args.postgres else "sqlite"
    if args.json:
        print(json.dumps({"database": database, "loop_ms": loop, "load": round(load, 2),
                          "runs": [asdict(r) for r in runs]}, indent=2))
        return 0
    console = Console(width=80)
    table = Table(title=f"subscribers import/export on {database} (loop {loop} ms, load {load:.1f})")
    for column, justify in (("what", "left"), ("rows/s", "right"), ("s", "right"), ("peak RSS MB", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        table.add_row(r.what, f"{r.rows_per_s:,.0f}", f"{r.seconds:.1f}", f"{r.peak_rss_mb:.0f}")
    console.print(table)
    for r in runs:
        console.print(f"{r.what}: {r.summary}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The fast paths of a large import and export decide and write exactly what the plain
ones did: the ASCII address check against email-validator on a generated corpus of
tricky addresses, and the batched import and streamed export on a real database
(SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import itertools
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

import subscribers as people
import subscribers.importer
from subscribers.fastcheck import quick_normalize
from newsletter.cli import app as cli_app
from newsletter.config import Settings
from tests.conftest import NOW

runner = CliRunner()

LOCALS = [
    "a", "ann", "Ann.Archer", "ann.archer+news", "ann+", "+ann", "a.b.c.d", "x_y", "first-last", "O'Brien",
    "ann..archer", ".ann", "ann.", ".", "..", "", "a" * 64, "a" * 65, "b" * 63 + ".", "!#$%&'*+/=?^_`{|}~-",
    "ann archer", "ann\tarcher", '"ann"', '"ann archer"', '"a\\"b"', "ann(comment)", "ann,b", "ann;b", "ann:b",
    "ann<b", "ann>b", "ann[b]", "ann\\b", "ann@b", "zoë", "josé", "名前", "ann\u200b", "ann\x00", "ann\x7f",
    "ANN", "postmaster", "PostMaster", "Info", "user%host", "a=b", "-", "_", "0", "1.2.3", "ann\u00a0b",
    "ａnn", "ann\u0301", "e\u0301", "ann\r\nb", "ann\n",
]
DOMAINS = [
    "example.com", "Example.COM", "mail.example.org", "a.b.c.d.example.net", "example", "com", "example.c",
    "example.co.uk", "ex-ample.com", "-example.com", "example-.com", "ex--ample.com", "xn--mnchen-3ya.de",
    "XN--MNCHEN-3YA.de", "ab--cd.com", "example.123", "123.example", "1.2.3.4", "[1.2.3.4]", "[IPv6:::1]",
    "[ipv6:2001:db8::1]", "[300.1.1.1]", "example..com", ".example.com", "example.com.", "exa_mple.com",
    "exämple.de", "münchen.example", "例え.jp", "example.test", "example.local", "localhost", "x.localhost",
    "example.onion", "example.invalid", "in-addr.arpa", "example.arpa", "test", "testing.com", "local.com",
    "l" * 63 + ".com", "l" * 64 + ".com", ".".join(["abcdefghi"] * 25) + ".com", "example.com ", " example.com",
    "exa mple.com", "example.com\u3002org", "EXAMPLE．COM", "example.c0m", "e.x", "a-b.c-d.ef", "example.co-m",
    "example.com@other.com", "", "@example.com", "ｅxample.com", "example.com\u200b", "example.ß",
]


def corpus() -> list[str]:
    """More than 10,000 addresses: every local part with every domain, then random
    splices of pieces of them with extra dots, spaces, signs and capitals."""
    addresses = [f"{local}@{domain}" for local, domain in itertools.product(LOCALS, DOMAINS)]
    addresses += ["", "@", "ann", "ann@", "@example.com", "ann@@example.com", "ann@example.com@example.com",
                  "Ann Archer <ann@example.com>", "<ann@example.com>", " ann@example.com ", "ann@example.com\n",
                  "ann＠example.com", "ann﹫example.com", "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com",
                  "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com"]
    rng = random.Random(2026)
    pieces = "abcXYZ019._+-'=!#%&*/?^`{|}~@ \"()[]<>,;:\\ëé名\u0301\t"
    for _ in range(8000):
        local = rng.choice(LOCALS) if rng.random() < 0.5 else "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        domain = rng.choice(DOMAINS)
        if rng.random() < 0.4:
            labels = ["".join(rng.choice("abz09-") for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(1, 4))]
            domain = ".".join(labels) + rng.choice(["", ".com", ".org", ".x", ".c0", ".museum"])
        address = f"{local}@{domain}"
        if rng.random() < 0.2:
            address = address.upper() if rng.random() < 0.5 else address.swapcase()
        addresses.append(address)
    # Plausible addresses near the edges: atext runs and dots, labels of 1 to 64
    # characters with hyphens, local parts of 60 to 66 characters, capitals.
    atext = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
    for _ in range(3000):
        runs = [("".join(rng.choice(atext) for _ in range(rng.randint(1, 22)))) for _ in range(rng.randint(1, 3))]
        local = ".".join(runs) if rng.random() < 0.9 else "x" * rng.randint(60, 66)
        labels = ["".join(rng.choice("abcXYZ019-") for _ in range(rng.choice([1, 2, 5, 12, 62, 63, 64])))
                  for _ in range(rng.randint(1, 4))]
        tld = rng.choice(["com", "org", "Io", "x", "c0m", "museum", "a1", "test", "local", "arpa"])
        addresses.append(f"{local}@{'.'.join(labels)}.{tld}")
    return addresses


def reference(address: str) -> str | None:
    try:
        return people.normalize_email(address)
    except people.InvalidEmailError:
        return None


def test_the_ascii_fast_path_decides_as_email_validator_on_ten_thousand_tricky_addresses() -> None:
    addresses = corpus()
    assert len(addresses) >= 10_000
    decided = 0
    for address in addresses:
        fast = quick_normalize(address.strip())
        if fast is None:
            continue
        decided += 1
        # Whatever the fast path accepts, email-validator accepts, in the same form.
        assert reference(address) == fast, address
    # The fast path is not vacuous: it decides a good share of the corpus, and every
    # plain address email-validator accepts in it.
    valid = [a for a in addresses if reference(a) is not None]
    assert decided > 1200 and len(valid) > decided
    plain = [a for a in valid if a.isascii() and '"' not in a and "--" not in a and "[" not in a and "<" not in a
             and not a.strip().lower().endswith((".test", ".local", ".onion", ".invalid", ".arpa", ".localhost"))]
    assert all(quick_normalize(a.strip()) == reference(a) for a in plain)


# The batched import and the streamed export, on SQLite and PostgreSQL -----------------

SECTIONS = {"drug-development": "Drug Development", "manufacturing": "Manufacturing", "news": "News"}
# More rows than a batch, so duplicates, the gate and updates cross batch boundaries.
ROWS = subscribers.importer.BATCH_ROWS * 2 + 300


def big_csv() -> str:
    lines = ["email,name,sections"]
    for n in range(ROWS):
        lines.append(f"Reader.{n}+tag@Mail.Example.com,Reader {n},{'news' if n % 2 else 'Manufacturing;news'}")
    # Line numbers of the file: the header is line 1, row n is line n + 2.
    lines[5 + 1] = "not an address,Nobody,news"
    lines[ROWS - 3 + 1] = "READER.4+TAG@mail.example.com,Again,news"  # a duplicate of line 6, a batch later
    lines[ROWS - 2 + 1] = "reader.7+tag@mail.example.com,Bad\x07Name,news"  # a duplicate: that counts first
    lines[ROWS - 1 + 1] = "zoë.100@exämple.de,\"Zoë\non two lines\",news"  # IDN by email-validator; a bad name
    return "\n".join(lines) + "\n\nlast@example.com,Last,Sports\n"


def import_text(engine: Engine, text: str, *, calls: list[int] | None = None) -> people.ImportReport:
    with engine.begin() as conn:
        return people.import_csv(
            conn, io.StringIO(text), columns=people.ColumnMap("email", "name", "sections"), known_sections=SECTIONS,
            default_sections=tuple(SECTIONS), now=NOW, source="import:big.csv",
            progress=None if calls is None else calls.append,
        )


def test_a_large_import_decides_every_row_as_before_across_batches(engine: Engine) -> None:
    with engine.begin() as conn:
        people.suppress(conn, "reader.9+tag@mail.example.com", reason="complaint", now=NOW)
        people.upsert_subscribers(conn, [people.NewSubscriber("reader.11+tag@mail.example.com", ("news",)),
                                         people.NewSubscriber(f"reader.{ROWS - 10}+tag@mail.example.com", ("news",))],
                                  now=NOW)
        people.erase(conn, "reader.11+tag@mail.example.com", now=NOW)
        gone = people.get_subscriber(conn, f"reader.{ROWS - 10}+tag@mail.example.com")
        people.set_status(conn, gone.id, people.Status.BOUNCED, now=NOW)
    calls: list[int] = []
    report = import_text(engine, big_csv(), calls=calls)
    last_line = ROWS + 4  # after a name on two lines and a blank line
    assert report.rejected == [
        (7, "not a valid email address"),
        (ROWS - 1, "the same address as line 6"),
        (ROWS, "the same address as line 9"),
        (ROWS + 1, "the name holds a line break; write it on one line"),
        (last_line, "unknown section 'Sports'"),
    ]
    assert report.skipped == [(11, "on the suppression list"), (13, "on the suppression list"),
                              (ROWS - 8, "bounced; only they can subscribe again")]
    assert (report.created, report.updated) == (ROWS - 7, 0)
    assert report.rejected_cells[ROWS + 1] == ["zoë.100@exämple.de", "Zoë\non two lines", "news"]
    assert calls[-1] == ROWS + 1 and len(calls) >= 3 and calls == sorted(calls)
    with engine.connect() as conn:
        ann = people.get_subscriber(conn, "reader.4+tag@mail.example.com")
        assert (ann.name, ann.sections, ann.status, ann.source) == ("Reader 4", ("manufacturing", "news"),
                                                                    people.Status.ACTIVE, "import:big.csv")
        assert ann.created_at == ann.confirmed_at == NOW and len(ann.token) == 32
        assert [(c.action, c.sections, c.form, c.at) for c in people.consent_history(conn, ann.id)] == [
            (people.ConsentAction.IMPORTED, ("manufacturing", "news"), "import:big.csv", NOW)]
        rows = conn.execute(select(people.subscribers.c.email, people.subscribers.c.token)).all()
        consents = conn.execute(select(func.count()).select_from(people.consents)).scalar_one()
    assert len({r.token for r in rows}) == len(rows)
    assert consents == ROWS - 7  # one per new subscriber
    assert "reader.9+tag@mail.example.com" not in {r.email for r in rows}
    assert not any(r.email == "reader.11+tag@mail.example.com" for r in rows)

    # Again: every row an update, names and sections refreshed, no new consent rows.
    again = import_text(engine, big_csv().replace("Reader 4,", "Reader Four,"))
    assert (again.created, again.updated) == (0, ROWS - 7) and again.rejected == report.rejected
    with engine.connect() as conn:
        assert people.get_subscriber(conn, "reader.4+tag@mail.example.com").name == "Reader Four"
        assert conn.execute(select(func.count()).select_from(people.consents)).scalar_one() == consents


def test_the_streamed_export_writes_what_the_rows_hold(engine: Engine) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [
            people.NewSubscriber("ann@example.com", ("news",), name="=HYPERLINK(1)"),
            people.NewSubscriber("+bob@example.com", ("manufacturing", "news"), name="Bob, \"the\" Builder"),
            people.NewSubscriber("cy@example.com", (), name="Cy", status=people.Status.PENDING),
        ], now=NOW.replace(microsecond=0))
        cy = people.get_subscriber(conn, "cy@example.com")
        # A row written before names were checked: the export still quotes and defuses it.
        conn.execute(update(people.subscribers).where(people.subscribers.c.id == cy.id).values(name="-Cy\non two lines"))
        people.set_status(conn, cy.id, people.Status.UNSUBSCRIBED, now=NOW.replace(microsecond=120))
        expected = people.list_subscribers(conn)
        out = io.StringIO()
        count = people.export_csv(conn, out)
        only = io.StringIO()
        assert people.export_csv(conn, only, statuses=[people.Status.UNSUBSCRIBED]) == 1
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert count == 3 and rows[0] == list(subscribers.importer.EXPORT_COLUMNS)

    def cell(value: object) -> str:
        text = value.isoformat() if isinstance(value, datetime) else "" if value is None else str(value)
        return "'" + text if text[:1] in ("=", "+", "-", "@") else text

    assert rows[1:] == [[cell(s.email), cell(s.name), s.status.value, cell(",".join(s.sections)), cell(s.created_at),
                         cell(s.confirmed_at), cell(s.unsubscribed_at), cell(s.source), cell(s.timezone)]
                        for s in expected]
    assert rows[3][6].endswith(".000120+00:00") and rows[1][4].endswith("T09:00:00+00:00")
    assert [r[0] for r in csv.reader(io.StringIO(only.getvalue()))] == ["email", "cy@example.com"]


def test_the_cli_reads_as_it_goes_names_a_bad_byte_deep_in_the_file_and_keeps_its_table_short(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    config = str(settings.base_dir / "newsletter.toml")
    source = tmp_path / "people.csv"
    body = "email\n" + "".join(f"r{n:06}@example.com\n" for n in range(20_000))
    source.write_bytes(body.encode() + b"zo\xeb@example.com\n")
    result = runner.invoke(cli_app, ["--config", config, "subscribers", "import", str(source)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and f"not UTF-8 text (byte {len(body.encode()) + 3} cannot be read)" in result.output
    with engine.connect() as conn:
        assert people.count_by_status(conn) == {}  # nothing of the rows before it

    source.write_text(body + "".join(f"bad{n}\n" for n in range(60)), encoding="utf-8")
    result = runner.invoke(cli_app, ["--config", config, "subscribers", "import", str(source)], env={"COLUMNS": "200"})
    assert result.exit_code == 4 and "Imported: 20000 new, 0 updated; 0 left out, 60 rejected." in result.output
    assert f"│ {20_002 + 49} │ rejected │" in result.output and f"│ {20_002 + 50} │" not in result.output
    assert "… and 10 more rows not imported; --rejects PATH writes every rejected row" in result.output
    out = tmp_path / "export.csv"
    result = runner.invoke(cli_app, ["--config", config, "subscribers", "export", "--out", str(out)])
    assert result.exit_code == 0 and "Wrote 20,000 subscribers" in result.output
    assert out.read_text().splitlines()[1].startswith("r000000@example.com,,active,")
    assert not list(tmp_path.glob(".*.partial"))

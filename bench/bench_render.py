"""Render benchmark: one issue of 20 articles in 6 sections, rendered for every segment.

Run from the repository root: `python bench/bench_render.py` (add `--json` for JSON).

The issue is built the way production builds it: a realistic RSS feed is written to a
temporary folder, ingested with `ingest_feeds` (nh3 cleaning, summaries cut to 300
characters), selected by `build_issue`, read back with `store.issue_blocks`, and rendered
by one `Renderer` per round, as `send_pending` does. Six sections give 63 distinct
non-empty segments; with the full-issue render that `build_issue` makes to check the
issue, that is 64 renders per issue, which is what is timed.

Also measured in the same run: JS mjml (npm `mjml`, installed in ./node_modules by
`.ci/run`) compiling the very MJML our template writes for each of the 64 renders, in
one Node process (one warm-up pass, then timed passes; `validationLevel: "skip"`, its
fastest); our figure is the whole render (Jinja2 for both parts, the MJML check, MRML,
css-inline). And the HTML size of the full issue with every link 120 bytes longer, as
SendGrid's click tracking makes them.

Also shown: the same 64 renders through a naive MJML layout (one `mj-section` per
article with `mj-image` and `mj-button`, attributes repeated on every tag), given to the
real `Renderer` as a user's template folder. `bench_outbox.py` imports the feed and
issue builders from this file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from newsletter import issues, store
from newsletter.config import Settings, TemplateSettings, load_settings
from newsletter.render import IssueContent, Renderer, compile_mjml

GMAIL_CLIP = 102 * 1024
WARN_BYTES = 90_000
SITE = "https://www.pharma-industry-weekly.example.com"
CDN = "https://cdn.pharma-industry-weekly.example.com/wp-content/uploads"

# (source category, title, author, lead sentence); 5 + 4 + 3 + 3 + 3 + 2 = 20 articles in
# the six content sections of the default configuration ("News" stays empty).
ARTICLES: tuple[tuple[str, str, str, str], ...] = (
    ("FDA Approvals", "FDA grants accelerated approval to once-daily oral GLP-1 receptor agonist for chronic weight management in adults with obesity", "Anna Keller",
     "The agency's decision rests on a 72-week phase III programme in which patients lost a mean 13.6% of body weight, against 2.1% on placebo."),
    ("Clinical Trials", "Bayesian adaptive platform trial in metastatic colorectal cancer drops two arms early and enrols 40% faster than planned", "Hiroshi Sato",
     "Investigators credit response-adaptive randomisation and a shared control arm for cutting the expected time to a go/no-go decision by almost a year."),
    ("Drug Development", "Bispecific antibody targeting CD3 and claudin 18.2 shows durable responses in heavily pretreated gastric cancer patients", "Mariam Haddad",
     "Updated phase Ib data presented at ESMO show an objective response rate of 38% and a median duration of response that has not yet been reached."),
    ("Research & Development", "Big Pharma R&D spending tops $160bn for the first time as companies double down on obesity and immunology pipelines", "Daniel Brooks",
     "Our analysis of annual reports from the 20 largest companies finds that late-stage spending grew twice as fast as discovery research last year."),
    ("Clinical Trials", "EMA publishes draft reflection paper on decentralised clinical trials, with new guidance on remote monitoring and eConsent", "Giulia Rossi",
     "Sponsors have until the end of February to comment on proposals covering home nursing visits, direct-to-patient shipment and wearable endpoints."),
    ("Manufacturing", "CDMO doubles single-use bioreactor capacity at its Irish campus with four 2,000-litre trains and a new fill–finish suite", "Liam O'Brien",
     "The €240 million expansion, due to be qualified by the third quarter, targets monoclonal antibodies and the growing number of bispecific programmes."),
    ("Manufacturing", "Continuous manufacturing of oral solid doses cuts cycle time from weeks to days at a generic maker's Indian plant", "Nikhil Rao",
     "Regulators in the US and the EU have approved the new line after a year of parallel running, the company said in its quarterly results."),
    ("Manufacturing", "Real-time Raman spectroscopy and machine-learning models reduce batch failures at a European biologics plant", "Karin Lindqvist",
     "Process engineers say deviations were flagged hours before they would have caused a failed batch, saving an estimated 14 batches a year."),
    ("Manufacturing", "Annex 1 one year on: what inspectors are finding in contamination control strategies at sterile manufacturing sites", "Sven Müller",
     "Inspection reports point to gaps in environmental monitoring trend analysis and in the justification of manual interventions in grade A zones."),
    ("Supply Chain", "Red Sea disruption adds up to three weeks to active pharmaceutical ingredient shipments from India to European ports", "Farah Siddiqui",
     "Freight forwarders report that most container lines are still routing around the Cape of Good Hope, and air freight rates for APIs have risen 30%."),
    ("Supply Chain", "European Commission proposes Critical Medicines Act to cut dependence on Asian suppliers of antibiotics and generics", "Pedro García",
     "The draft regulation would let member states favour EU-made medicines in tenders and pool purchases of the 270 molecules on the Union list."),
    ("Supply Chain", "Serialisation data shows a 12% rise in suspect product alerts across EU verification systems in the last quarter", "Isabel Dubois",
     "Most alerts are still caused by data upload errors rather than falsified packs, but national authorities have stepped up their investigations."),
    ("Facilities", "Modular cleanroom pods let a cell and gene therapy developer open a GMP facility in 11 months instead of three years", "Tomás Novák",
     "Prefabricated ISO 7 suites were delivered by road and connected to a shared utilities spine, with validation run in parallel with construction."),
    ("Facilities & Operation", "Heat pumps and waste-heat recovery cut a Swiss API plant's steam demand by 45% and its Scope 1 emissions by a third", "Qing Zhao",
     "The retrofit pays back in under six years at current gas prices, the site's engineering director told our reporter during a plant visit."),
    ("Facilities", "Warehouse automation at a Dutch pharmaceutical distribution hub handles 60,000 order lines a day at 2–8 °C", "Olivia Janssen",
     "Autonomous mobile robots and a cold-chain shuttle system replaced manual picking across three temperature zones without downtime."),
    ("Insights", "Why biosimilar uptake still lags in the United States, and what the interchangeability designation really changes", "Rosa Martínez",
     "Pharmacy benefit managers, rebate walls and prescriber habits matter more than regulatory labels, according to payers we interviewed."),
    ("Insights", "Five lessons from the first year of the Inflation Reduction Act's Medicare drug price negotiations for portfolio strategy", "Jonas Becker",
     "Small-molecule developers are reconsidering indications and launch sequencing as the nine-year negotiation clock changes the economics."),
    ("Insights", "Interview: the chief quality officer who moved a 12-site network from paper batch records to a single electronic system", "Eun-ji Park",
     "Change management, not software, took most of the four years, she says, and the hardest part was agreeing one master recipe per product."),
    ("Events & Conferences", "CPHI Worldwide in Milan: record attendance, and AI, sustainability and capacity shortages dominate the conference agenda", "Ben Carter",
     "More than 47,000 visitors walked the halls over three days, and contract manufacturers reported full order books into the second half of 2027."),
    ("Events", "BIO International Convention opens registration for San Diego with a new track on manufacturing for advanced therapies", "Chloé Laurent",
     "Early-bird rates are available until March, and the partnering system opens to registered delegates six weeks before the convention."),
)

# Sentences that follow each lead, so that the cleaned summary is cut at 300 characters.
FOLLOW_UPS: tuple[str, ...] = (
    "Analysts expect the decision to shape competitors' filing strategies for the rest of the decade.",
    "The company said it would publish full results in a peer-reviewed journal early next year.",
    "Industry groups welcomed the move but warned that implementation timelines remain tight for smaller firms.",
    "Executives declined to comment on pricing, citing ongoing discussions with payers in several markets.",
    "Further details are expected at the company's capital markets day in the spring.",
    "Regulators in the UK, Japan and Canada are reviewing similar applications.",
)


def slugify(title: str) -> str:
    """A WordPress-style slug, as the trade site's permalinks use."""
    chars = [c.lower() if c.isascii() and c.isalnum() else "-" for c in title]
    slug = "-".join(part for part in "".join(chars).split("-") if part)
    return slug if len(slug) <= 90 else slug[:90].rsplit("-", 1)[0]


def write_feed(path: Path, *, now: datetime, seed: int = 2) -> int:
    """Write the 20-article RSS feed to `path`, dated within the last six days; returns
    how many articles it holds."""
    rng = random.Random(seed)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        f"<channel><title>Pharma Industry Weekly</title><link>{SITE}/</link><description>Trade news</description>",
    ]
    for n, (category, title, author, lead) in enumerate(ARTICLES):
        published = now - timedelta(hours=2 + n * 6, minutes=rng.randint(0, 59))
        slug = slugify(title)
        url = f"{SITE}/{slugify(category)}/{published:%Y/%m}/{slug}/"
        image = f"{CDN}/{published:%Y/%m}/{slug[:60]}-1200x675.jpg"
        body = " ".join([lead, *rng.sample(FOLLOW_UPS, 3)])
        out += [
            "<item>",
            f"<title>{escape(title)}</title>",
            f"<link>{escape(url)}</link>",
            f'<guid isPermaLink="false">{SITE}/?p={48_000 + n}</guid>',
            f"<dc:creator><![CDATA[{author}]]></dc:creator>",
            f"<pubDate>{format_datetime(published)}</pubDate>",
            f"<category><![CDATA[{category}]]></category>",
            f"<description><![CDATA[<p><strong>{escape(lead)}</strong></p><p>{escape(body[len(lead) + 1:])}</p>]]></description>",
            f'<media:content url="{image}" medium="image" type="image/jpeg" width="1200" height="675"/>',
            "</item>",
        ]
    out.append("</channel></rss>")
    path.write_text("\n".join(out), encoding="utf-8")
    return len(ARTICLES)


CONFIG = """\
[site]
name = "Pharma Industry Weekly"
base_url = "{site}"
postal_address = "Pharma Industry Weekly, 1 Example Street, London EC1A 1AA, United Kingdom"
timezone = "Europe/London"

[sender]
name = "Pharma Industry Weekly"
address = "newsletter@pharma-industry-weekly.example.com"
reply_to = "editors@pharma-industry-weekly.example.com"

[database]
url = "sqlite:///newsletter.db"

[delivery]
transport = "outbox"
outbox_dir = "outbox"
unsubscribe_mailto = "unsubscribe@pharma-industry-weekly.example.com"

[[feeds]]
name = "Pharma Industry Weekly"
url = "{feed}"
"""


def prepare_issue(folder: Path, *, now: datetime) -> tuple[Settings, Engine, issues.BuildResult]:
    """A configuration, database and built issue in `folder`, through the real pipeline:
    feed file → `ingest_feeds` → `build_issue`."""
    from newsletter.ingest import ingest_feeds

    feed = folder / "feed.xml"
    write_feed(feed, now=now)
    config = folder / "newsletter.toml"
    config.write_text(CONFIG.format(site=SITE, feed=feed.resolve().as_uri()), encoding="utf-8")
    settings = load_settings(config, environ={})
    engine = issues.open_database(settings)
    reports = ingest_feeds(engine, settings, clock=lambda: now)
    if [r.status for r in reports] != ["fetched"] or reports[0].new != len(ARTICLES):
        raise SystemExit(f"ingest went wrong: {reports}")
    built = issues.build_issue(engine, settings, now=now)
    return settings, engine, built


def issue_content(engine: Engine, settings: Settings, built: issues.BuildResult) -> IssueContent:
    """What `send_pending` hands the renderer for this issue."""
    issue = built.issue
    with engine.connect() as conn:
        return issues.issue_content(conn, issue, store.issue_blocks(conn, issue.id, settings.section_names()))


#: Extra bytes per link once SendGrid's click tracking has rewritten it.
TRACKED_LINK_EXTRA = 120
NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
JS_MJML = """
const mjml2html = require('mjml');
const sources = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const rounds = Number(process.argv[3]);
for (const s of sources) mjml2html(s, {validationLevel: 'skip'});
const times = [];
for (let r = 0; r < rounds; r++) {
  for (const s of sources) {
    const t = process.hrtime.bigint();
    mjml2html(s, {validationLevel: 'skip'});
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
}
console.log(JSON.stringify({version: require('mjml/package.json').version, times}));
"""


def tracked_size(html: str) -> tuple[int, int]:
    """(links, bytes of `html` with every link `TRACKED_LINK_EXTRA` bytes longer)."""
    links = len(re.findall(r"\bhref=", html))
    return links, len(html.encode("utf-8")) + TRACKED_LINK_EXTRA * links


def measure_js_mjml(settings: Settings, content: IssueContent, folder: Path, *, rounds: int) -> dict[str, Any] | None:
    """Mean and median ms per segment of JS mjml on our own MJML; None without node and mjml."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "mjml").is_dir():
        return None
    renderer = issues.make_renderer(settings)
    sources = [renderer.mjml_source(content, sections=sections) for sections in segment_choices([b.slug for b in content.blocks])]
    (folder / "sources.json").write_text(json.dumps(sources), encoding="utf-8")
    (folder / "js_mjml.js").write_text(JS_MJML, encoding="utf-8")
    done = subprocess.run([node, str(folder / "js_mjml.js"), str(folder / "sources.json"), str(rounds)], capture_output=True,
                          text=True, env={**os.environ, "NODE_PATH": str(NODE_MODULES)}, timeout=1800, check=True)
    found = json.loads(done.stdout)
    times = found["times"]
    # MRML alone on the same sources, for a like-for-like comparison of the two compilers.
    mrml: list[float] = []
    for _ in range(rounds):
        for source in sources:
            started = time.perf_counter()
            compile_mjml(source, "email/digest.mjml.j2")
            mrml.append((time.perf_counter() - started) * 1000)
    return {"mjml_js": found["version"], "renders": len(times), "mean_ms": statistics.mean(times),
            "median_ms": statistics.median(times), "mrml_mean_ms": statistics.mean(mrml)}


def segment_choices(slugs: Sequence[str]) -> list[tuple[str, ...] | None]:
    """The full issue (None, the build's check render) and every non-empty section set."""
    subsets = [c for size in range(1, len(slugs) + 1) for c in itertools.combinations(slugs, size)]
    return [None, *subsets]


NAIVE_TEMPLATE = """\
<mjml>
  <mj-head><mj-title>{{ subject }}</mj-title><mj-preview>{{ preheader }}</mj-preview></mj-head>
  <mj-body background-color="#eef1f5" width="600px">
    <mj-section background-color="#eef1f5" padding="12px 24px"><mj-column>
      <mj-text font-family="Helvetica, Arial, sans-serif" font-size="12px" color="#4b5563">{{ date }} &middot; <a href="{{ web_url }}" style="color:#0b5394">View in browser</a></mj-text>
    </mj-column></mj-section>
    <mj-wrapper background-color="#ffffff" padding="24px 0">
      <mj-section><mj-column>
        <mj-text font-family="Helvetica, Arial, sans-serif" font-size="26px" font-weight="700" color="#0b2545">{{ site.name }}</mj-text>
        <mj-text font-family="Helvetica, Arial, sans-serif" font-size="12px" color="#6b7280">{{ preheader }}</mj-text>
        {%- if not public %}<mj-text font-family="Helvetica, Arial, sans-serif" font-size="15px" color="#1f2933">{{ tags.greeting }}</mj-text>{% endif %}
      </mj-column></mj-section>
    </mj-wrapper>
{%- for block in blocks %}
    <mj-wrapper background-color="#ffffff" padding="0 0 16px">
      <mj-section><mj-column>
        <mj-text font-family="Helvetica, Arial, sans-serif" font-size="13px" font-weight="700" letter-spacing="1px" color="#0b5394">{{ block.name | upper }}</mj-text>
      </mj-column></mj-section>
{%- for article in block.articles %}
      <mj-section padding="0 0 12px"><mj-column>
        {%- if article.image_url %}<mj-image src="{{ article.image_url }}" alt="{{ article.title }}" href="{{ article.url }}" width="552px" border-radius="4px" />{% endif %}
        <mj-text font-family="Helvetica, Arial, sans-serif" font-size="18px" font-weight="700" line-height="1.3" color="#111827"><a href="{{ article.url }}" style="color:#111827;text-decoration:none">{{ article.title }}</a></mj-text>
        <mj-text font-family="Helvetica, Arial, sans-serif" font-size="15px" line-height="1.5" color="#1f2933">{{ article.summary }}</mj-text>
        <mj-text font-family="Helvetica, Arial, sans-serif" font-size="12px" color="#6b7280">{{ article.author }} &middot; {{ article.published_at | localdate }}</mj-text>
        <mj-button font-family="Helvetica, Arial, sans-serif" background-color="#0b5394" color="#ffffff" font-size="14px" border-radius="4px" align="left" href="{{ article.url }}">Read more</mj-button>
        <mj-divider border-color="#e5e7eb" border-width="1px" />
      </mj-column></mj-section>
{%- endfor %}
    </mj-wrapper>
{%- endfor %}
    <mj-section background-color="#eef1f5" padding="8px 24px 24px"><mj-column>
      <mj-text font-family="Helvetica, Arial, sans-serif" font-size="12px" color="#4b5563" align="center">
{%- if public %}<a href="{{ subscribe_url }}" style="color:#0b5394">Subscribe</a>{% else %}You chose: {{ section_names | join(", ") }}.<br>
<a href="{{ tags.preferences_url }}" style="color:#0b5394">Manage preferences</a> &middot; <a href="{{ tags.unsubscribe_url }}" style="color:#0b5394">Unsubscribe</a>{% endif %}<br><br>{{ site.postal_address }}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""


@dataclass(frozen=True)
class LayoutResult:
    """The figures of one layout over all rounds."""

    layout: str
    renders_per_round: int
    rounds: int
    first_render_ms: float
    mean_ms: float
    mean_cpu_ms: float
    median_ms: float
    p95_ms: float
    max_ms: float
    segments_per_s: float
    html_bytes_min: int
    html_bytes_median: int
    html_bytes_max: int
    text_bytes_max: int
    segments_over_warn: int
    segments_over_clip: int


def renderer_for(settings: Settings, template_folder: Path | None) -> Renderer:
    """A fresh renderer, as each `send_pending` run makes (its first render compiles the
    templates); with `template_folder`, as a user's `[templates] folder` setting gives."""
    if template_folder is not None:
        settings = settings.model_copy(update={"templates": TemplateSettings(folder=str(template_folder))})
    return issues.make_renderer(settings)


def measure(
    layout: str, settings: Settings, content: IssueContent, *, rounds: int, template_folder: Path | None = None
) -> LayoutResult:
    """Time every render of every round; sizes come from the last round."""
    choices = segment_choices([b.slug for b in content.blocks])
    firsts: list[float] = []
    rest: list[float] = []
    cpu: list[float] = []
    html_sizes: list[int] = []
    text_sizes: list[int] = []
    for _ in range(rounds):
        renderer = renderer_for(settings, template_folder)
        html_sizes, text_sizes = [], []
        for n, sections in enumerate(choices):
            started, cpu_started = time.perf_counter(), time.process_time()
            message = renderer.render(content, sections=sections)
            elapsed = (time.perf_counter() - started) * 1000
            cpu.append((time.process_time() - cpu_started) * 1000)
            (firsts if n == 0 else rest).append(elapsed)
            html_sizes.append(message.html_bytes)
            text_sizes.append(len(message.text.encode("utf-8")))
    every = firsts + rest
    quantiles = statistics.quantiles(every, n=20)
    return LayoutResult(
        layout=layout,
        renders_per_round=len(choices),
        rounds=rounds,
        first_render_ms=statistics.mean(firsts),
        mean_ms=statistics.mean(every),
        mean_cpu_ms=statistics.mean(cpu),
        median_ms=statistics.median(every),
        p95_ms=quantiles[18],
        max_ms=max(every),
        segments_per_s=len(every) / (sum(every) / 1000),
        html_bytes_min=min(html_sizes),
        html_bytes_median=int(statistics.median(html_sizes)),
        html_bytes_max=max(html_sizes),
        text_bytes_max=max(text_sizes),
        segments_over_warn=sum(size > WARN_BYTES for size in html_sizes),
        segments_over_clip=sum(size > GMAIL_CLIP for size in html_sizes),
    )


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="Fresh renderers, each rendering all 64 (default 5).")
    parser.add_argument("--no-naive", action="store_true", help="Skip the naive layout for comparison.")
    parser.add_argument("--no-js", action="store_true", help="Skip JS mjml (npm) for comparison.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        folder = Path(tmp)
        setup_started = time.perf_counter()
        settings, engine, built = prepare_issue(folder, now=now)
        content = issue_content(engine, settings, built)
        setup_s = time.perf_counter() - setup_started
        wall_started = time.perf_counter()
        results = [measure("lean (built-in template)", settings, content, rounds=args.rounds)]
        if not args.no_naive:
            naive = folder / "naive" / "email"
            naive.mkdir(parents=True)
            (naive / "digest.mjml.j2").write_text(NAIVE_TEMPLATE, encoding="utf-8")
            results.append(measure("naive (per-article sections)", settings, content, rounds=args.rounds, template_folder=naive.parent))
        wall_s = time.perf_counter() - wall_started
        js = None if args.no_js else measure_js_mjml(settings, content, folder, rounds=args.rounds)
        full = issues.make_renderer(settings).render(content).html
        engine.dispose()
    links, tracked = tracked_size(full)

    sections = {b.name: len(b.articles) for b in content.blocks}
    summary: dict[str, Any] = {
        "issue": {"articles": sum(sections.values()), "sections": sections},
        "setup_seconds": round(setup_s, 3),
        "measured_wall_seconds": round(wall_s, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "gmail_clip_bytes": GMAIL_CLIP,
        "warn_bytes": WARN_BYTES,
        "layouts": [asdict(r) for r in results],
        "full_issue_links": links,
        "full_issue_bytes_links_plus_120": tracked,
        "js_mjml": js,
        "speedup_vs_js_mjml": round(js["mean_ms"] / results[0].mean_ms, 1) if js else None,
        "python": sys.version.split()[0],
        "mjml_python": version("mjml-python"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    console = Console()
    console.print(
        f"Issue: {summary['issue']['articles']} articles in {len(sections)} sections "
        + ", ".join(f"{name} {count}" for name, count in sections.items())
        + f"; {results[0].renders_per_round} renders per round (full issue + 63 segments), {args.rounds} rounds."
    )
    table = Table(title="Render benchmark: Jinja2 → MJML → HTML + text, one render per segment")
    table.add_column("")
    for r in results:
        table.add_column(r.layout, justify="right")
    rows: list[tuple[str, Callable[[LayoutResult], str]]] = [
        ("first render of a round, ms (compiles templates)", lambda r: f"{r.first_render_ms:.1f}"),
        ("ms per segment, mean", lambda r: f"{r.mean_ms:.2f}"),
        ("ms per segment, median", lambda r: f"{r.median_ms:.2f}"),
        ("CPU ms per segment, mean", lambda r: f"{r.mean_cpu_ms:.2f}"),
        ("ms per segment, p95", lambda r: f"{r.p95_ms:.2f}"),
        ("segments per second", lambda r: f"{r.segments_per_s:,.0f}"),
        ("HTML bytes, smallest segment", lambda r: f"{r.html_bytes_min:,}"),
        ("HTML bytes, median segment", lambda r: f"{r.html_bytes_median:,}"),
        ("HTML bytes, largest segment", lambda r: f"{r.html_bytes_max:,}"),
        ("largest vs Gmail clip (104,448)", lambda r: f"{r.html_bytes_max / GMAIL_CLIP:.0%}"),
        ("segments over 90,000 (warning)", lambda r: f"{r.segments_over_warn} of {r.renders_per_round}"),
        ("segments over Gmail clip", lambda r: f"{r.segments_over_clip} of {r.renders_per_round}"),
        ("text part bytes, largest", lambda r: f"{r.text_bytes_max:,}"),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results))
    console.print(table)
    largest = results[0].html_bytes_max
    console.print(
        f"Largest segment (full issue): {largest:,} bytes = {largest / GMAIL_CLIP:.0%} of Gmail's clip "
        f"({GMAIL_CLIP:,}), {WARN_BYTES - largest:,} bytes under the {WARN_BYTES:,} warning."
    )
    console.print(
        f"Full issue with its {links} links each {TRACKED_LINK_EXTRA} bytes longer (click tracking): {tracked:,} bytes "
        f"({'within' if tracked <= 60_000 else 'OVER'} the 60,000-byte budget)."
    )
    if js:
        console.print(
            f"JS mjml {js['mjml_js']} on the same MJML, same run: {js['mean_ms']:.2f} ms mean, {js['median_ms']:.2f} ms median "
            f"per segment; ours (whole render) {results[0].mean_ms:.2f} ms mean: {summary['speedup_vs_js_mjml']}x faster; "
            f"MRML alone on the same MJML {js['mrml_mean_ms']:.2f} ms: {js['mean_ms'] / js['mrml_mean_ms']:.1f}x faster."
        )
    else:
        console.print("JS mjml not measured (no node, or no node_modules/mjml: see .ci/run).")
    console.print(
        f"Setup {setup_s:.2f} s; measured {wall_s:.2f} s; peak RSS {summary['peak_rss_mib']} MiB; "
        f"load average {summary['load_average_1min']} on {os.cpu_count()} CPUs."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

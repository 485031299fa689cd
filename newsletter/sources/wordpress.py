"""WordPress sites through their REST API: posts with featured images and category names.

Owns: `fetch_wordpress`, `parse_posts`, `posts_endpoint`. Imports `models`, `errors`,
`netguard` (the time left before the deadline), `sources.clean` and `sources.feeds` (for
`FetchResult`).

`GET {base}/wp-json/wp/v2/posts` with `after=` (posts published since a cursor),
`per_page=100`, `_embed` (featured image, category terms, author) and `_fields` (only the
fields we read). Pages are followed through `X-WP-TotalPages`; a 400 on a later page (the
posts shrank while we paged) ends paging quietly. When a site strips `_embedded` terms,
category ids are looked up once per run in `/wp-json/wp/v2/categories`. A 5xx, a 429, a
timeout or a lost connection is tried again with a doubling delay, unless the wait would
pass the fetch's deadline (`netguard.deadline`). Posts become `FeedItem`s
exactly as feed items do, with the same guid WordPress puts in its RSS feed (`?p=123`) and
the canonical link, so the site's feed and its API never give the same article twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import SourceError
from ..models import FeedItem
from ..netguard import time_left
from .clean import canonical_url, first_image, plain_text, safe_url, shorten, why_left_out
from .feeds import FetchResult

API_PATH = "/wp-json/wp/v2"
PER_PAGE = 100
EMBED = "author,wp:featuredmedia,wp:term"
FIELDS = "id,guid,link,date_gmt,title,excerpt,categories,featured_media,_links,_embedded"
ACCEPT = {"Accept": "application/json"}
NO_API = "no WordPress REST API at {url} ({why}); check the url, or read the site's RSS feed with [[feeds]]"
# WordPress ends excerpts with "[…]" or a "Continue reading" link; neither belongs in an email.
EXCERPT_TAILS = ("[…]", "[...]", "…", "Continue reading")


def posts_endpoint(base_url: str) -> str:
    """The URL of a site's posts collection; also the key its state is remembered under."""
    return f"{base_url.rstrip('/')}{API_PATH}/posts"


@dataclass
class _Fetcher:
    """One run's requests to one site: retries, the size cap, and the category cache."""

    client: httpx.Client
    base_url: str
    max_bytes: int
    retries: int
    backoff: float
    sleep: Callable[[float], None]
    categories: dict[int, str] = field(default_factory=dict)

    def get(self, url: str, params: Mapping[str, str | int]) -> tuple[int, Any, httpx.Headers]:
        """(status, decoded JSON or None, headers) of a GET, after retries for passing trouble."""
        attempt = 0
        while True:
            try:
                with self.client.stream("GET", url, params=params, headers=ACCEPT) as response:
                    if response.status_code >= 500 or response.status_code == 429:
                        trouble = f"HTTP {response.status_code} {response.reason_phrase}"
                    else:
                        return response.status_code, self._json(response), response.headers
            except httpx.TimeoutException:
                trouble = "timed out"
            except httpx.TransportError as exc:
                trouble = f"connection failed: {exc or type(exc).__name__}"
            tries = f" (tried {attempt + 1} times)" if attempt else ""
            if attempt >= self.retries:
                raise SourceError(trouble + tries)
            delay = self.backoff * 2**attempt
            left = time_left()
            if left is not None and delay >= left:
                # Waiting would only end at the deadline: say what the trouble was instead.
                raise SourceError(f"{trouble}{tries}; not tried again: the next try would pass [ingest] deadline")
            self.sleep(delay)
            attempt += 1

    def _json(self, response: httpx.Response) -> Any:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise SourceError(f"response is {int(declared):,} bytes, over the {self.max_bytes:,}-byte limit")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise SourceError(f"response is over the {self.max_bytes:,}-byte limit; stopped reading")
        try:
            return json.loads(bytes(body))
        except ValueError:
            return None

    def category_names(self, ids: Iterable[int]) -> dict[int, str]:
        """Names of category ids, asking the site only for those not seen yet this run."""
        missing = sorted({i for i in ids if i not in self.categories})
        if missing:
            status, data, _ = self.get(
                f"{self.base_url}{API_PATH}/categories",
                {"include": ",".join(map(str, missing)), "per_page": PER_PAGE, "_fields": "id,name"},
            )
            if status == 200 and isinstance(data, list):
                for term in data:
                    if isinstance(term, dict) and isinstance(term.get("id"), int):
                        self.categories[term["id"]] = plain_text(str(term.get("name", "")))
        return self.categories


def _rest_error(data: Any) -> str:
    if isinstance(data, dict) and data.get("message"):
        return f": {plain_text(str(data['message']))}"
    return ""


def fetch_wordpress(
    client: httpx.Client,
    base_url: str,
    *,
    after: datetime | None,
    max_bytes: int,
    summary_chars: int,
    retries: int = 2,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Every post published after `after` (all of them when None), page by page.

    Never raises for a bad site: the result says what failed. When a later page fails,
    the posts of the pages already read are still returned, with status "failed".
    """
    fetcher = _Fetcher(client, base_url.rstrip("/"), max_bytes, retries, backoff, sleep)
    endpoint = posts_endpoint(base_url)
    params: dict[str, str | int] = {"per_page": PER_PAGE, "_embed": EMBED, "_fields": FIELDS, "orderby": "date", "order": "desc"}
    if after is not None:
        params["after"] = after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    posts: list[Any] = []
    page, pages = 1, 1
    try:
        while page <= pages:
            status, data, headers = fetcher.get(endpoint, {**params, "page": page})
            if status == 400 and page > 1:
                # The site has fewer pages than it said (posts were unpublished while we paged).
                break
            if status == 404 or (status == 200 and not isinstance(data, list)):
                why = f"HTTP {status}" if status != 200 else "the URL answered with something other than a list of posts"
                raise SourceError(NO_API.format(url=f"{fetcher.base_url}/wp-json/", why=why))
            if status in (401, 403):
                raise SourceError(f"the REST API refused access (HTTP {status}){_rest_error(data)}")
            if status != 200:
                raise SourceError(f"HTTP {status}{_rest_error(data)}")
            posts.extend(data)
            total = headers.get("x-wp-totalpages", "")
            pages = int(total) if total.isdigit() else (page + 1 if len(data) >= PER_PAGE else page)
            page += 1
        error = ""
    except SourceError as exc:
        error = str(exc) if page == 1 else f"page {page}: {exc}"
    try:
        items, skipped = parse_posts(posts, base_url=fetcher.base_url, summary_chars=summary_chars, lookup=fetcher.category_names)
    except SourceError as exc:
        items, skipped, error = [], [], error or f"category lookup: {exc}"
    return FetchResult("failed" if error else "fetched", items=tuple(items), skipped=tuple(skipped), error=error)


def _date(value: Any) -> datetime | None:
    # `date_gmt` is UTC without an offset; `date` would be the site's local time, unknown here.
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


def _rendered(post: Mapping[str, Any], key: str) -> str:
    value = post.get(key)
    return str(value.get("rendered", "") if isinstance(value, dict) else value or "")


def _embedded(post: Mapping[str, Any], key: str) -> list[Any]:
    embedded = post.get("_embedded")
    value = embedded.get(key) if isinstance(embedded, dict) else None
    return value if isinstance(value, list) else []


def _image(post: Mapping[str, Any], excerpt: str, base_url: str) -> str:
    for media in _embedded(post, "wp:featuredmedia"):
        # A private or deleted image embeds as an error object without `source_url`.
        if isinstance(media, dict):
            url = safe_url(str(media.get("source_url", "")), base_url)
            if url:
                return url
    return first_image(excerpt, base_url)


def _categories(post: Mapping[str, Any], lookup: Callable[[Iterable[int]], dict[int, str]]) -> tuple[str, ...]:
    terms = [t for group in _embedded(post, "wp:term") if isinstance(group, list) for t in group if isinstance(t, dict)]
    names = [plain_text(str(t.get("name", ""))) for t in terms if t.get("taxonomy") == "category"]
    if not names:
        ids = [i for i in post.get("categories") or [] if isinstance(i, int)]
        known = lookup(ids) if ids else {}
        names = [known[i] for i in ids if i in known]
    return tuple(dict.fromkeys(n for n in names if n))


def _author(post: Mapping[str, Any]) -> str:
    authors = _embedded(post, "author")
    first = authors[0] if authors and isinstance(authors[0], dict) else {}
    return shorten(plain_text(str(first.get("name", ""))), 200)


def _summary(excerpt_html: str, limit: int) -> str:
    text = plain_text(excerpt_html)
    for tail in EXCERPT_TAILS:
        text = text.removesuffix(tail).rstrip()
    return shorten(text, limit)


def parse_posts(
    posts: Iterable[Any],
    *,
    base_url: str,
    summary_chars: int,
    lookup: Callable[[Iterable[int]], dict[int, str]] = lambda ids: {},
) -> tuple[list[FeedItem], list[str]]:
    """Posts of the REST API as cleaned items, and a line for each post left out and why.

    `lookup` gives category names for ids when a post has no embedded terms.
    """
    items: list[FeedItem] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for post in posts:
        if not isinstance(post, dict):
            skipped.append("a post that is not a JSON object: left out")
            continue
        title = plain_text(_rendered(post, "title"))
        label = f"post {post.get('id', '?')}" + (f" ({title[:60]!r})" if title else "")
        url = safe_url(str(post.get("link") or ""), base_url)
        if not url:
            skipped.append(f"{label}: left out because its link is not an http(s) URL")
            continue
        url = canonical_url(url)
        guid = plain_text(_rendered(post, "guid")) or url
        why = why_left_out(guid, url, title, seen, noun="post")
        if why:
            skipped.append(f"{label}: left out because {why}")
            continue
        excerpt = _rendered(post, "excerpt")
        items.append(
            FeedItem(
                guid=guid[:1000],
                url=url,
                title=shorten(title, 300),
                author=_author(post),
                published_at=_date(post.get("date_gmt")),
                categories=_categories(post, lookup),
                summary=_summary(excerpt, summary_chars),
                image_url=_image(post, excerpt, base_url),
            )
        )
    return items, skipped

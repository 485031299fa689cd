"""WordPress sites through their REST API: posts with featured images and category names.

Owns: `fetch_wordpress`, `parse_posts`, `posts_endpoint`. Imports `models`, `errors`,
`netguard` (the time left before the deadline), `sources.clean`, `sources.summary`,
`sources.images`, `sources.categories` and `sources.feeds` (for `FetchResult`).

`GET {base}/wp-json/wp/v2/posts` with `after=` (posts published since a cursor),
`per_page=100`, `_embed` (featured image, category terms, author) and `_fields` (only the
fields we read). Pages are followed through `X-WP-TotalPages`; a 400 on a later page (the
posts shrank while we paged) ends paging quietly. The site's category tree is read once
per run from `/wp-json/wp/v2/categories` (all pages), so each post carries its categories'
ancestors and a new child category lands in its parent's section; a site that disabled
that endpoint falls back to the embedded names, reported once. A 5xx, a 429, a
timeout or a lost connection is tried again with a doubling delay, unless the wait would
pass the fetch's deadline (`netguard.deadline`). Posts become `FeedItem`s
exactly as feed items do, with the same guid WordPress puts in its RSS feed (`?p=123`) and
the canonical link, so the site's feed and its API never give the same article twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import SourceError
from ..models import FeedItem, ImageSize
from ..netguard import time_left
from .categories import CategoryTree
from .clean import canonical_url, plain_text, safe_url, shorten, why_left_out
from .feeds import FetchResult
from .images import DEFAULT_MIN_HERO, DEFAULT_SLOT, html_images, same_image, settle_image, sized
from .summary import clean_summary

API_PATH = "/wp-json/wp/v2"
PER_PAGE = 100
EMBED = "author,wp:featuredmedia,wp:term"
FIELDS = "id,guid,link,date_gmt,title,excerpt,content,categories,featured_media,_links,_embedded"
#: Most pages of categories read (100 each): a broken site cannot keep an ingest paging.
MAX_CATEGORY_PAGES = 50
ACCEPT = {"Accept": "application/json"}
NO_API = "no WordPress REST API at {url} ({why}); check the url, or read the site's RSS feed with [[feeds]]"


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
    tree: CategoryTree | None = None
    #: Why the categories endpoint could not be read ("" when it was).
    tree_trouble: str = ""

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

    def category_tree(self) -> CategoryTree:
        """The site's categories with their parents, read once per run, page by page.

        A site that disabled the endpoint (or answers it wrongly) gives an empty tree and
        `tree_trouble` says why: posts then keep their embedded category names."""
        if self.tree is not None:
            return self.tree
        self.tree = CategoryTree()
        page, pages = 1, 1
        url = f"{self.base_url}{API_PATH}/categories"
        try:
            while page <= min(pages, MAX_CATEGORY_PAGES):
                params: dict[str, str | int] = {"per_page": PER_PAGE, "page": page, "_fields": "id,name,parent", "orderby": "id"}
                status, data, headers = self.get(url, params)
                if status == 400 and page > 1:
                    break
                if status != 200 or not isinstance(data, list):
                    what = f"HTTP {status}" if status != 200 else "not a list of categories"
                    self.tree_trouble = f"{what}{_rest_error(data)}"
                    break
                self.tree.add(data)
                total = headers.get("x-wp-totalpages", "")
                pages = int(total) if total.isdigit() else (page + 1 if len(data) >= PER_PAGE else page)
                page += 1
        except SourceError as exc:
            self.tree_trouble = str(exc)
        return self.tree


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
    tree = fetcher.category_tree() if posts else None
    warnings = []
    if fetcher.tree_trouble:
        warnings.append(f"categories endpoint unavailable ({fetcher.tree_trouble}); sections follow the posts' "
                        "category names only, not their parents")
    items, skipped = parse_posts(posts, base_url=fetcher.base_url, summary_chars=summary_chars, tree=tree)
    if tree is not None:
        warnings += tree.problems
    return FetchResult(
        "failed" if error else "fetched", items=tuple(items), skipped=tuple(skipped), error=error, warnings=tuple(warnings)
    )


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


def _images(post: Mapping[str, Any], html: str, base_url: str) -> tuple[ImageSize, ...]:
    """Every size of the featured image (`media_details.sizes`, and the original), else the
    images of the excerpt and content."""
    offered: list[ImageSize] = []
    for media in _embedded(post, "wp:featuredmedia"):
        # A private or deleted image embeds as an error object without `source_url`.
        if not isinstance(media, dict):
            continue
        details = media.get("media_details")
        details = details if isinstance(details, dict) else {}
        url = safe_url(str(media.get("source_url", "")), base_url)
        if url:
            offered.append(sized(url, details.get("width"), details.get("height")))
        sizes = details.get("sizes")
        sizes = sizes if isinstance(sizes, dict) else {}
        for size in sizes.values():
            if isinstance(size, dict):
                size_url = safe_url(str(size.get("source_url", "")), base_url)
                if size_url:
                    offered.append(sized(size_url, size.get("width"), size.get("height")))
    return same_image(offered + html_images(html, base_url))


def _categories(post: Mapping[str, Any], tree: CategoryTree | None) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The post's category names in the site's order, and each one's ancestors."""
    ids = [i for i in post.get("categories") or [] if isinstance(i, int)]
    terms = [t for group in _embedded(post, "wp:term") if isinstance(group, list) for t in group if isinstance(t, dict)]
    embedded = {t.get("id"): plain_text(str(t.get("name", ""))) for t in terms if t.get("taxonomy") == "category"}
    found: dict[str, tuple[str, ...]] = {}
    for category_id in ids or [i for i in embedded if isinstance(i, int)]:
        name = embedded.get(category_id) or (tree.name(category_id) if tree else "")
        if name and name not in found:
            found[name] = tree.ancestors(category_id) if tree else ()
    # Embedded terms without an id in `categories` (a site that strips the list) still count.
    for name in embedded.values():
        if name and name not in found:
            found[name] = ()
    return tuple(found), tuple(found.values()) if any(found.values()) else ()


def _author(post: Mapping[str, Any]) -> str:
    authors = _embedded(post, "author")
    first = authors[0] if authors and isinstance(authors[0], dict) else {}
    return shorten(plain_text(str(first.get("name", ""))), 200)


def parse_posts(
    posts: Iterable[Any],
    *,
    base_url: str,
    summary_chars: int,
    tree: CategoryTree | None = None,
) -> tuple[list[FeedItem], list[str]]:
    """Posts of the REST API as cleaned items, and a line for each post left out and why.

    `tree` gives category names for ids a post does not embed, and their ancestors.
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
        excerpt, content = _rendered(post, "excerpt"), _rendered(post, "content")
        summary = clean_summary(excerpt, limit=summary_chars, post_url=url, title=title, site_url=base_url, content=content)
        categories, ancestors = _categories(post, tree)
        item = FeedItem(
            guid=guid[:1000],
            url=url,
            title=shorten(title, 300),
            author=_author(post),
            published_at=_date(post.get("date_gmt")),
            categories=categories,
            summary=summary.text,
            image_url="",
            image_sizes=_images(post, f"{excerpt} {content}", base_url),
            category_ancestors=ancestors,
            summary_cleaned=summary.cleaned,
        )
        items.append(settle_image(item, slot=DEFAULT_SLOT, min_hero=DEFAULT_MIN_HERO))
    return items, skipped

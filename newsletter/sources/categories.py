"""A WordPress site's category tree, as `/wp-json/wp/v2/categories` gives it.

Owns: `CategoryTree`, `Category`. Imports `sources.clean`.

Each category has an id, a name and a parent id (0 for a top-level one). A broken site
may name a parent that is not in the list, or have categories that are each other's
ancestors; neither may hang an ingest or lose a post. A missing parent makes its child a
top-level category, a loop is cut where it closes, and each is reported once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .clean import plain_text


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    parent: int


@dataclass
class CategoryTree:
    """Categories by id, with what was wrong in them (a line each)."""

    categories: dict[int, Category] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _reported: set[frozenset[int]] = field(default_factory=set)

    def add(self, terms: Iterable[Any]) -> None:
        """Add the terms of one page of the categories endpoint; anything else is ignored."""
        for term in terms:
            if not isinstance(term, dict) or not isinstance(term.get("id"), int):
                continue
            parent = term.get("parent")
            name = plain_text(str(term.get("name", "")))
            if name:
                self.categories[term["id"]] = Category(term["id"], name, parent if isinstance(parent, int) else 0)

    def name(self, category_id: int) -> str:
        found = self.categories.get(category_id)
        return found.name if found else ""

    def ancestors(self, category_id: int) -> tuple[str, ...]:
        """Names of the category's parent, grandparent and so on, nearest first."""
        path = [category_id]
        current = self.categories.get(category_id)
        while current is not None and current.parent:
            parent = self.categories.get(current.parent)
            if parent is None:
                self._report(frozenset({current.id}), f"category {current.name!r} names parent {current.parent}, "
                             "which the site does not list; it is treated as a top-level category")
                break
            if parent.id in path:
                loop = path[path.index(parent.id):]
                names = " and ".join(repr(self.name(i)) for i in sorted(loop))
                self._report(frozenset(loop), f"categories {names} are each other's ancestors; the loop is cut where it closes")
                break
            path.append(parent.id)
            current = parent
        return tuple(self.name(i) for i in path[1:])

    def _report(self, key: frozenset[int], line: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.problems.append(line)


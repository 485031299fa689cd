"""Which section an article belongs to. Pure functions, no I/O.

Owns: `SectionRule`, `assign_section`. Imports nothing of ours.

An article lands in exactly one section: the first section, in configured order, that
lists one of the article's categories (compared without regard to case, entities or
surrounding space). When none does and the source knows the category tree (WordPress),
the categories' parents are tried the same way, then their grandparents, and so on: a
section may list only a parent category, and a new child category lands under it.
Otherwise the fallback section, or none when there is no fallback.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SectionRule:
    slug: str
    name: str
    categories: frozenset[str]


def fold(category: str) -> str:
    """The form categories are compared in."""
    return " ".join(html.unescape(category).casefold().split())


def make_rules(sections: Iterable[tuple[str, str, Iterable[str]]]) -> tuple[SectionRule, ...]:
    """Rules from (slug, name, categories) triples, in matching order."""
    return tuple(SectionRule(slug, name, frozenset(fold(c) for c in cats)) for slug, name, cats in sections)


def assign_section(
    categories: Iterable[str],
    rules: Sequence[SectionRule],
    fallback: str | None,
    ancestors: Sequence[Sequence[str]] = (),
) -> str | None:
    """The slug of the section for an article with these categories, or None to leave it
    out. `ancestors` gives, for each category, its parents nearest first."""
    levels = [list(categories)]
    depth = max((len(a) for a in ancestors), default=0)
    levels += [[a[level] for a in ancestors if len(a) > level] for level in range(depth)]
    for level in levels:
        folded = {fold(c) for c in level}
        for rule in rules:
            if rule.categories & folded:
                return rule.slug
    return fallback or None

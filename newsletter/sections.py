"""Which section an article belongs to. Pure functions, no I/O.

Owns: `SectionRule`, `assign_section`. Imports nothing of ours.

An article lands in exactly one section: the first section, in configured order, that
lists one of the article's categories (compared without regard to case, entities or
surrounding space); otherwise the fallback section, or none when there is no fallback.
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


def assign_section(categories: Iterable[str], rules: Sequence[SectionRule], fallback: str | None) -> str | None:
    """The slug of the section for an article with these categories, or None to leave it out."""
    folded = {fold(c) for c in categories}
    for rule in rules:
        if rule.categories & folded:
            return rule.slug
    return fallback or None

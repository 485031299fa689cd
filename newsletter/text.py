"""Words for people: counts with the right plural.

Owns: `counted`. Imports nothing of ours.
"""

from __future__ import annotations


def counted(number: int, word: str, plural: str = "") -> str:
    """`number` and `word` with its plural when the number is not one: `1 error`,
    `2 errors`, `1,200 batches` (give `plural` where adding an s is wrong)."""
    return f"{number:,} {word if number == 1 else (plural or word + 's')}"

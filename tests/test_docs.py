"""The README stays true: the Quickstart has exactly two command lines, CI runs the test
line verbatim, and every setting and command is documented (generated blocks current)."""

from __future__ import annotations

import shutil
from pathlib import Path

from newsletter.reference import README, update_readme

ROOT = README.parent


def quickstart_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def test_the_quickstart_has_exactly_two_command_lines() -> None:
    demo, tests = quickstart_lines()
    assert demo.endswith("newsletter demo") and "pip install ." in demo
    assert "pytest" in tests and "[test]" in tests


def test_ci_runs_the_readme_test_line_verbatim() -> None:
    _, tests = quickstart_lines()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()


def test_every_setting_and_command_is_documented(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    assert not update_readme(copy), "README.md is out of date: run `python -m newsletter.reference`"

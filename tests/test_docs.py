"""The documentation stays true: the README's Quickstart has exactly two command lines and CI
runs its test line verbatim; the MkDocs site under docs/ builds with `mkdocs build --strict`
(a broken link, a missing heading or a page left out of the navigation fails it) and
documents every setting and every command (its two references are generated at build)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer.main

from newsletter.cli import app
from newsletter.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


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


def test_the_readme_links_lead_to_files_of_the_repository() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    local = [link.split("#", 1)[0] for link in links if not link.startswith(("http://", "https://"))]
    assert "docs/getting-started.md" in local and "docs/configuration.md" in local
    for path in local:
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"


def mkdocs_build(folder: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of the mkdocs.yml in `folder`, run there, into `site`."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = mkdocs_build(ROOT, out)
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}{built.stderr}"
    return out


def test_the_site_builds_strictly_with_every_page_in_it(site: Path) -> None:
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    for page in pages:
        built = site / "index.html" if page == "index" else site / page / "index.html"
        assert built.is_file(), f"docs/{page}.md was not built"
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "How it works" in home and 'src="email/demo-overview.png"' in home


def test_a_broken_link_a_missing_heading_or_a_page_left_out_fails_the_build(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as index:
        index.write("\nSee [the desk](no-such-page.md) and [its key](configuration.md#no-such-table).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Nobody links here\n", encoding="utf-8")
    built = mkdocs_build(tmp_path, tmp_path / "site")
    assert built.returncode != 0
    log = built.stdout + built.stderr
    assert "no-such-page.md" in log and "#no-such-table" in log and "orphan.md" in log


def section(page: str, anchor: str) -> str:
    """The HTML of a page from the heading with id `anchor` up to the next heading as high."""
    match = re.search(rf'<h([1-6]) id="{re.escape(anchor)}"', page)
    assert match, f"no heading #{anchor}"
    level = int(match.group(1))
    end = re.compile(rf"<h[1-{level}][ >]").search(page, match.end())
    return html.unescape(page[match.start():end.start() if end else len(page)])


def test_every_setting_is_on_the_configuration_page(site: Path) -> None:
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    tables = {name: field for name, field in Settings.model_fields.items() if name != "base_dir"}
    assert len(tables) >= 20
    for table, field in tables.items():
        model = field.annotation
        if typing.get_origin(model) is list:
            model = typing.get_args(model)[0]
        assert isinstance(model, type)
        text = section(page, table)
        for key, sub in model.model_fields.items():
            assert f"<code>{key}</code>" in text, f"[{table}] {key} is not on the configuration page"
            assert sub.description, f"[{table}] {key} has no help text"
            assert " ".join(sub.description.replace("`", "").split()) in re.sub(r"<[^>]+>", "", text)
    assert "<code>NEWSLETTER_DELIVERY__TRANSPORT</code>" in section(page, "delivery")
    assert "<code>SENDGRID_API_KEY</code>" in section(page, "sendgrid")


def test_every_command_and_option_is_on_the_cli_page(site: Path) -> None:
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")

    def walk(group: typing.Any, path: str) -> typing.Iterator[tuple[str, typing.Any]]:
        for name, command in group.commands.items():
            yield f"{path} {name}", command
            if hasattr(command, "commands"):
                yield from walk(command, f"{path} {name}")

    root = typer.main.get_command(app)
    commands = [("newsletter", root), *walk(root, "newsletter")]
    assert len(commands) >= 35
    for path, command in commands:
        text = section(page, path.replace(" ", "-"))
        assert f"<code>{path}</code>" in text
        for param in command.params:
            for opt in param.opts if param.param_type_name == "option" else []:
                assert opt in text, f"{path} {opt} is not on the command line page"

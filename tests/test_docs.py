"""The documentation cannot drift from the code: docs/cli.md is the parser's own help, every recipe the
docs describe is RECIPES as it is, every command line in the docs names real commands and flags, and every
relative link in README.md and docs/*.md points to a file that exists."""

import re
from pathlib import Path

import pytest

from cnnlab.cli import build_parser, cli_reference
from cnnlab.engine.config import RECIPES, describe_recipe

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# A command line in a code block: `cnnlab CMD ...`, `$ cnnlab CMD ...`, `python -m cnnlab CMD ...`, torchrun's.
# A command as typed, not an error it prints ("cnnlab evaluate: error: ... cnnlab train --model x.py").
COMMAND_LINE = re.compile(r"^(?:\$ )?(?:\S*python3? -m |torchrun .*-m )?cnnlab ([a-z][\w-]*)(?![\w:-])(.*)$")
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")


def _prose(text: str) -> str:
    """`text` without its fenced code blocks and inline code spans, where brackets are not links."""
    return INLINE.sub("", FENCED.sub("", text))


def _code(text: str) -> list[str]:
    """Every line of the fenced code blocks of `text`, and every inline code span."""
    return [line.strip() for block in FENCED.findall(text) for line in block.splitlines()] + INLINE.findall(
        FENCED.sub("", text)
    )


def test_cli_reference_is_current():
    assert (ROOT / "docs" / "cli.md").read_text() == cli_reference(), "docs/cli.md is out of date: run `make docs`"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page: lower case, punctuation dropped, spaces -> '-'."""
    headings = re.findall(r"^#+ (.+)$", FENCED.sub("", page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files(page):
    targets = [t for t in LINK.findall(_prose(page.read_text())) if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"
    sections = [t.split("#", 1) for t in targets if "#" in t and t not in missing]
    unknown = [
        f"{path}#{anchor}" for path, anchor in sections if anchor not in _anchors(page.parent / path if path else page)
    ]
    assert not unknown, f"{page.name} links to sections that do not exist: {unknown}"


def test_every_recipe_is_described_as_it_is():
    training = (ROOT / "docs" / "training.md").read_text()
    stale = [name for name in RECIPES if describe_recipe(name) not in training]
    assert not stale, f"docs/training.md does not describe these recipes as RECIPES has them: {stale}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_command_lines_use_real_commands_and_flags(page):
    commands = build_parser().commands
    wrong = []
    for line in _code(page.read_text()):
        match = COMMAND_LINE.match(line)
        if match is None:
            continue
        name, rest = match.groups()
        if name not in commands:
            wrong.append(line)
            continue
        usage = commands[name].format_help()
        wrong += [
            f"{line}  ({flag})"
            for flag in FLAG.findall(rest.split("#")[0])
            if not re.search(rf"(?<![\w-]){flag}(?![\w-])", usage)
        ]
    assert not wrong, f"{page.name} shows command lines the CLI does not take: {wrong}"

"""The documentation stays inside the repository, and its links and citations resolve.

A user who clones simsys has only the repository, so nothing in it may point to a path outside
it (a sibling ``shared`` folder of the developers' machine, an absolute path on one machine).
Sources are cited by an anchor of ``docs/references.md`` (``docs/references.md#<anchor>``); each
cited anchor must be a heading there, computed as GitHub computes heading anchors. Every relative
link of the user-facing Markdown (``README.md``, ``scenarios/README.md``, ``docs/*.md``) must
point to a file of the repository, and to a heading of it when the link names one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCES = REPO / "docs" / "references.md"

# Directories that are never part of a clone (virtualenvs, caches, run outputs, build products);
# only used when git cannot list the files.
_SKIP_DIRS = {".git", ".venv", "venv", "outputs", "build", "dist", "__pycache__", ".pytest_cache",
              ".ruff_cache", "node_modules"}

# Patterns of paths outside the repository, written so that this file does not match them itself.
_OUTSIDE = {
    "a parent-relative shared folder": re.compile(r"\.\./+shared\b"),
    "an absolute path on a developer's machine": re.compile(r"(?<![\w.:/-])/(?:wor[k]|home|Users)/"),
}

_CITATION = re.compile(r"references\.md#([\w-]+)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _repository_files() -> list[Path]:
    """Files of the repository: git's tracked and not-ignored files, else a walk of the tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout
        names = [name for name in out.decode("utf-8", "replace").split("\0") if name]
        files = [REPO / name for name in names]
        return sorted(path for path in files if path.is_file())
    except (OSError, subprocess.CalledProcessError):
        files = []
        for path in REPO.rglob("*"):
            parts = path.relative_to(REPO).parts
            if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in parts):
                continue
            if path.is_file():
                files.append(path)
        return sorted(files)


def _text(path: Path) -> str | None:
    """The file's text, or None for binary files."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def _without_code(markdown: str) -> list[str]:
    """The Markdown's lines with fenced code blocks blanked and inline code spans replaced."""
    lines = []
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else re.sub(r"`[^`]*`", "code", line))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (before de-duplication).

    Link syntax keeps its text; the text is lower-cased; every character that is not a letter,
    digit, underscore, hyphen or space is dropped; spaces become hyphens.
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(markdown: str) -> list[str]:
    """Every heading anchor of a Markdown text, de-duplicated as GitHub does (-1, -2, ...)."""
    anchors: list[str] = []
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        anchor = github_anchor(match.group(2))
        if anchor in seen:
            seen[anchor] += 1
            anchor = f"{anchor}-{seen[anchor]}"
        else:
            seen[anchor] = 0
        anchors.append(anchor)
    return anchors


def _relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline or reference link that is not a URL."""
    links = []
    for number, line in enumerate(_without_code(path.read_text(encoding="utf-8")), start=1):
        targets = [m.group(1) for m in _INLINE_LINK.finditer(line)]
        definition = _REFERENCE_DEF.match(line)
        if definition:
            targets.append(definition.group(1))
        links.extend((number, target) for target in targets if not _SCHEME.match(target))
    return links


def _user_docs() -> list[Path]:
    docs = [REPO / "README.md", REPO / "scenarios" / "README.md"]
    docs += sorted((REPO / "docs").glob("*.md"))
    return [path for path in docs if path.is_file()]


# --- tests of the helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Obermeyer 2019", "obermeyer-2019"),
    ("Seyyed-Kalantari 2021", "seyyed-kalantari-2021"),
    ("Chest X-ray scenario", "chest-x-ray-scenario"),
    ("Blum & Stangl 2020", "blum--stangl-2020"),
    ("The `experiment` block: what *run* does", "the-experiment-block-what-run-does"),
    ("Random numbers (and common random numbers)", "random-numbers-and-common-random-numbers"),
    ("[Params](#params) and __init__", "params-and-__init__"),
])
def test_github_anchor_follows_githubs_rule(heading, anchor):
    assert github_anchor(heading) == anchor


def test_heading_anchors_skip_code_and_number_duplicates():
    text = "# Title\n\n```\n# not a heading\n```\n## Notes\n### Notes\n#no space\n"
    assert heading_anchors(text) == ["title", "notes", "notes-1"]


def test_relative_links_skip_urls_and_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](a.md#x), ![img](img/p.png) and [web](https://example.org/a.md).\n"
        "`[not](code.md)`\n```\n[not](fenced.md)\n```\n[ref]: other.md\n",
        encoding="utf-8",
    )
    assert _relative_links(page) == [(1, "a.md#x"), (1, "img/p.png"), (6, "other.md")]


# --- the repository -------------------------------------------------------------------------------


def test_no_file_points_outside_the_repository():
    offences = []
    for path in _repository_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for what, pattern in _OUTSIDE.items():
                if pattern.search(line):
                    offences.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not offences, "\n".join(offences)


def test_references_have_one_heading_per_anchor():
    anchors = heading_anchors(REFERENCES.read_text(encoding="utf-8"))
    duplicated = sorted(anchor for anchor in set(anchors) if anchors.count(anchor) > 1)
    numbered = sorted(anchor for anchor in anchors if re.search(r"-\d+$", anchor)
                      and anchor.rsplit("-", 1)[0] in anchors)
    assert not duplicated and not numbered, (duplicated, numbered)


def test_every_cited_reference_anchor_exists():
    anchors = set(heading_anchors(REFERENCES.read_text(encoding="utf-8")))
    cited = {}
    for path in _repository_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _CITATION.finditer(line):
                cited.setdefault(match.group(1), []).append(f"{path.relative_to(REPO)}:{number}")
    # the scenarios and the bias mechanisms cite their sources this way; an empty set means the
    # pattern no longer finds them
    assert {"bias-mechanisms", "melanoma-scenario", "bradford-2009"} <= set(cited)
    missing = {anchor: places for anchor, places in cited.items() if anchor not in anchors}
    assert not missing, "\n".join(f"#{anchor} cited at {', '.join(places)}"
                                  for anchor, places in sorted(missing.items()))


def test_relative_links_of_the_docs_resolve():
    problems = []
    checked = 0
    for page in _user_docs():
        for number, target in _relative_links(page):
            checked += 1
            where = f"{page.relative_to(REPO)}:{number}: {target}"
            path_part, _, fragment = target.partition("#")
            linked = page if not path_part else (page.parent / path_part).resolve()
            if not linked.is_relative_to(REPO):
                problems.append(f"{where}: points outside the repository")
                continue
            if not linked.exists():
                problems.append(f"{where}: no such file")
                continue
            if fragment and linked.suffix == ".md":
                if fragment not in heading_anchors(linked.read_text(encoding="utf-8")):
                    problems.append(f"{where}: no heading with anchor #{fragment}")
    assert checked > 0
    assert not problems, "\n".join(problems)

"""Every relative link in README.md, docs/, analysis/ and the config comments points at a file that exists
(and, with an #anchor, at a heading of that file)."""

import re
from pathlib import Path

from tests.helpers import ROOT


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")

CONFIG_PATH = re.compile(r"\b((?:docs|sweeps|analysis)/[\w./-]+\.(?:md|yaml|ipynb))")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "analysis").glob("*.md"))]
    return [f for f in files if f.is_file()]


def broken_links() -> list[str]:
    broken = []
    for md in markdown_files():
        for target in MARKDOWN_LINK.findall(md.read_text()):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:: not checked offline
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            where = f"{md.relative_to(ROOT)} -> {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading #{anchor}")
    for config in sorted((ROOT / "conf").rglob("*.yaml")):
        for path in CONFIG_PATH.findall(config.read_text()):
            if not (ROOT / path).exists():
                broken.append(f"{config.relative_to(ROOT)} -> {path}: no such file")
    return broken


def test_every_relative_link_resolves():
    assert markdown_files() and not broken_links(), "\n".join(broken_links())


def test_the_checker_finds_a_broken_link(tmp_path, monkeypatch):
    """The check itself fails on a missing file and a missing heading."""
    from tests.unit import test_links

    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "README.md").write_text("# Top\n[ok](docs/a.md#a-heading) [gone](docs/b.md) [bad](docs/a.md#nope)\n")
    (docs / "a.md").write_text("## A heading\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.yaml").write_text("k: 1  # see docs/missing.md\n")
    monkeypatch.setattr(test_links, "ROOT", tmp_path)
    assert sorted(test_links.broken_links()) == [
        "README.md -> docs/a.md#nope: no heading #nope",
        "README.md -> docs/b.md: no such file",
        "conf/x.yaml -> docs/missing.md: no such file",
    ]

"""Every code pointer in docs/ resolves: `path/to/module.py::Class.method` imports the module and finds the
attribute; a bare `path/to/file.py` exists; a relative Markdown link points at an existing page."""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
POINTER = re.compile(r"`([\w./-]+\.py)(?:::([\w.]+))?`")
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)(?:#[^)]*)?\)")


def _pointers() -> list[tuple[str, str, str | None]]:
    found = []
    for page in DOCS:
        for path, attr in POINTER.findall(page.read_text(encoding="utf-8")):
            found.append((page.name, path, attr or None))
    return found


POINTERS = _pointers()


def test_docs_exist_with_pointers():
    names = {p.name for p in DOCS}
    for page in ("dense.md", "losses.md", "optimizers.md", "conv1d.md", "recurrent.md"):
        assert page in names, f"docs/{page} is missing"
    for page in DOCS:
        if page.name != "index.md":
            assert any(p[0] == page.name and p[2] for p in POINTERS), f"docs/{page.name} points at no code"


@pytest.mark.parametrize("page, path, attr", POINTERS, ids=[f"{p}:{f}::{a}" for p, f, a in POINTERS])
def test_code_pointer_resolves(page, path, attr):
    file = ROOT / path
    assert file.is_file(), f"docs/{page}: {path} does not exist"
    if attr is None:
        return
    module_name = ".".join(pathlib.PurePosixPath(path).with_suffix("").parts)
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        assert hasattr(obj, part), f"docs/{page}: {path}::{attr} — {obj!r} has no attribute {part!r}"
        obj = getattr(obj, part)


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        assert (page.parent / target).exists(), f"docs/{page.name} links to missing {target}"


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_math_delimiters_balance(page):
    text = re.sub(r"`[^`\n]*`", "", page.read_text(encoding="utf-8"))  # code spans may contain $
    blocks = text.count("$$")
    assert blocks % 2 == 0, f"docs/{page.name}: unbalanced $$"
    inline = text.replace("$$", "").replace(r"\$", "").count("$")
    assert inline % 2 == 0, f"docs/{page.name}: unbalanced $"

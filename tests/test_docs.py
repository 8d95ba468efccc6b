"""The pages of docs/ stay exact and render on GitHub.

* Every code pointer resolves: `path/to/module.py::Class.method` imports the module and finds the attribute; a
  bare `path/to/file.py` exists; a relative Markdown link points at an existing page, and a `#section` at a heading.
* The math renders on GitHub (``math_problems``: the constructs GitHub's Markdown drops or mangles).
* Each layer page's symbol table names variables that exist in the code it names; in every section the reference
  function (tinynn/kernels/reference/) comes before the fast kernel.
* The two-occurrence Embedding example of docs/optimizers.md is what tinynn (and Keras) compute.
* docs/figures/make_figures.py draws every figure the pages show.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import re

import numpy as np
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


# ------------------------------------------------------------------------------------ math that renders on GitHub
# GitHub finds `$...$` / `$$...$$` math in the Markdown text, and Markdown's own rules still act on it (GitHub's
# "Writing mathematical expressions" page; github/markup issues 1575, 1612, 1644, 1741, 1742, 1747; the
# community threads they cite): a backslash before punctuation is a Markdown escape (`\{` arrives as `{`, `\,` as
# `,`, `\\` as `\`), `*`, `_` and `~` can pair up as emphasis / strikethrough, `<b` opens an HTML tag, `[a](b)`
# is a link; inline math is not recognised with a space just inside a dollar, a non-space right before the
# opening dollar (`($x$`) or a letter or digit right after the closing one, and two display blocks in a row fail.
MATH_CONTENT_RULES = [
    (re.compile(r"\\[^\w\s]"), r"a backslash before punctuation is a Markdown escape (\{ arrives as {, \, as ,): "
                               r"write \lbrace \rbrace, \thinspace, \Vert, \cr instead"),
    (re.compile(r"\*"), "'*' can pair up as Markdown emphasis: write \\ast or \\cdot"),
    (re.compile(r"(?<![A-Za-z0-9])_(?!\s)"), "'_' after a non-alphanumeric (}_ ]_ )_ '_) can open Markdown "
                                             "emphasis: put a letter right before it (h_t', not h'_t)"),
    (re.compile(r"~"), "'~' is GitHub's strikethrough: write \\ for a space"),
    (re.compile(r"<[A-Za-z/!?]"), "'<' before a letter reads as an HTML tag: write \\lt or '< '"),
    (re.compile(r"&(#\d+|[A-Za-z]+);"), "an HTML entity is decoded before the math is typeset"),
    (re.compile(r"\]\("), "'](' reads as a Markdown link"),
]
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
DOLLAR = re.compile(r"(?<!\\)\$")
BLOCK_START = re.compile(r"^\s*([-+*>]|#{1,6}|\d+[.)])(\s|$)")


def _content_problems(math: str, where: str) -> list[str]:
    return [f"{where}: {message}: {math!r}" for rule, message in MATH_CONTENT_RULES if rule.search(math)]


def math_problems(text: str) -> list[str]:
    """What GitHub would drop or mangle in the math of one Markdown page (empty: it renders)."""
    problems: list[str] = []
    lines = text.split("\n")
    in_fence, block, previous_was_block = False, None, False
    for no, line in enumerate(lines, 1):
        where = f"line {no}"
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        stripped = line.strip()
        if block is not None:  # inside a display block opened by a line starting with $$
            body = stripped[:-2] if stripped.endswith("$$") else stripped
            if not stripped:
                problems.append(f"{where}: a blank line ends the paragraph inside a $$ block")
            elif BLOCK_START.match(body):
                problems.append(f"{where}: a line of a $$ block starts like a Markdown list/quote/heading")
            if "$" in body:
                problems.append(f"{where}: '$' inside a $$ block")
            block.append(body)
            if stripped.endswith("$$"):
                problems += _content_problems("\n".join(block), f"$$ block ending on line {no}")
                block, previous_was_block = None, True
            continue
        if stripped.startswith("$$"):
            if previous_was_block:
                problems.append(f"{where}: a $$ block right after another one (put text or a blank line between)")
            body = stripped[2:]
            if body.endswith("$$") and len(body) >= 2:  # $$ ... $$ on one line
                if "$" in body[:-2]:
                    problems.append(f"{where}: '$' inside a $$ block")
                problems += _content_problems(body[:-2], where)
                previous_was_block = True
            else:
                block = [body]
            continue
        previous_was_block = False
        plain = CODE_SPAN.sub(lambda m: "`" * len(m.group(0)), line)  # code spans may hold any $ or _
        if "$$" in plain:
            problems.append(f"{where}: $$ inside a line (display math starts a line: $$ ... $$)")
            continue
        dollars = [m.start() for m in DOLLAR.finditer(plain)]
        if len(dollars) % 2:
            problems.append(f"{where}: an odd number of $ (inline math must close on the line it opens)")
            continue
        for a, b in zip(dollars[::2], dollars[1::2]):
            math, before, after = plain[a + 1:b], plain[a - 1:a], plain[b + 1:b + 2]
            if not math or math != math.strip():
                problems.append(f"{where}: a space just inside the dollars: ${math}$")
            if before and not before.isspace():
                problems.append(f"{where}: {before!r} right before the opening $ (only a space or the line start "
                                f"may precede it): {plain[max(a - 12, 0):b + 1]}")
            if after.isalnum():
                problems.append(f"{where}: {after!r} right after the closing $: {plain[a:b + 4]}")
            if "|" in math:
                problems.append(f"{where}: '|' in inline math splits table cells: write \\lvert \\rvert or \\mid")
            problems += _content_problems(math, where)
    if block is not None:
        problems.append("a $$ block is never closed")
    return problems


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_math_renders_on_github(page):
    problems = math_problems(page.read_text(encoding="utf-8"))
    assert not problems, f"docs/{page.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("bad", [
    r"sets $\{0, 1\}$ here", r"a thin $a\,b$ space", r"$h'_t = 0$", r"$[a]_k$", r"$x_{i}*y$", r"$a\\b$",
    r"($x$)", r"word$x$", r"$x$th", r"$ x$", r"$x $", r"$a<b$", r"$[a](b)$", r"$a~b$", r"$|x|$",
    r"one $x", r"$$x$$ inline", "$$\nx\n\ny\n$$", "$$\na\n$$\n$$\nb\n$$", "$$\n- x\n$$", "$$\nx\n",
])
def test_math_lint_catches_each_pitfall(bad):
    assert math_problems(bad), f"not flagged: {bad!r}"


@pytest.mark.parametrize("good", [
    r"$m_t \in \lbrace 0, 1 \rbrace$, $h_t'$ and $h_{t-1}$ (with $x$), $\lvert e\rvert$; `$not math$` and `a_*`",
    "text\n\n$$\nz = x W + b, \\qquad \\delta h_{t-1} = \\delta h_t\n$$\n\ntext",
    "$$y = \\begin{pmatrix} a \\cr b \\end{pmatrix}$$",
    "```\n$ anything * goes _{here}\n```",
])
def test_math_lint_passes_clean_math(good):
    assert math_problems(good) == []


# ------------------------------------------------------------------------------------ links into a page's sections
def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\$", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


ANCHORED_LINK = re.compile(r"\]\((?!https?://)([^)#\s]*)#([^)\s]+)\)")


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_section_links_point_at_headings(page):
    for target, anchor in ANCHORED_LINK.findall(page.read_text(encoding="utf-8")):
        file = page if not target else page.parent / target
        headings = re.findall(r"^#{1,6} (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
        assert anchor in {_slug(h) for h in headings}, f"docs/{page.name}: no heading for #{anchor} in {file.name}"


# ------------------------------------------------------------------------------------ symbol -> code tables
SYMBOLS_MARKER = re.compile(r"<!-- symbols: reference=([^;]+); fast=([^ ]+) -->\n(\|.*\n)(\|[-| ]+\n)((?:\|.*\n)+)")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _words(paths: str) -> set[str]:
    words: set[str] = set()
    for path in paths.split(","):
        words |= set(IDENTIFIER.findall((ROOT / path.strip()).read_text(encoding="utf-8")))
    return words


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


SYMBOL_PAGES = ("dense.md", "losses.md", "optimizers.md", "conv1d.md", "conv2d.md", "recurrent.md")


@pytest.mark.parametrize("name", SYMBOL_PAGES)
def test_symbol_tables_name_variables_that_exist(name):
    """Each page has a symbol table (symbol, meaning, shape, reference code, fast kernel); every identifier in a
    code span of its two code columns occurs in the files the table's marker names, so a renamed variable fails
    here instead of leaving the table stale."""
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    tables = SYMBOLS_MARKER.findall(text)
    assert tables, f"docs/{name} has no '<!-- symbols: reference=...; fast=... -->' table"
    for reference_files, fast_files, header, _, body in tables:
        assert len(_cells(header)) == 5, f"docs/{name}: a symbol table has 5 columns, got {header!r}"
        known = (_words(reference_files), _words(fast_files))
        for row in body.splitlines():
            cells = _cells(row)
            assert len(cells) == 5, f"docs/{name}: row {row!r}"
            for column, words in zip(cells[3:], known):
                for span in re.findall(r"`([^`]+)`", column):
                    if span.endswith(".py") or "::" in span:
                        continue  # a pointer, checked by test_code_pointer_resolves
                    missing = [w for w in IDENTIFIER.findall(span) if w not in words]
                    assert not missing, f"docs/{name}: {missing} of `{span}` not found in the named code"


def test_pages_point_to_the_reference_before_the_fast_kernel():
    """In every section that names both, a reference function (tinynn/kernels/reference/) comes first."""
    for page in DOCS:
        for section in re.split(r"\n(?=## )", page.read_text(encoding="utf-8")):
            pointers = [path for path, _ in POINTER.findall(section) if path.startswith("tinynn/kernels/")]
            fast = [i for i, p in enumerate(pointers) if not p.startswith("tinynn/kernels/reference/")]
            reference = [i for i, p in enumerate(pointers) if p.startswith("tinynn/kernels/reference/")]
            if fast and reference:
                title = section.splitlines()[0]
                assert reference[0] < fast[0], f"docs/{page.name}, {title}: the fast kernel is named first"


# ------------------------------------------------------------------------------------ the two-occurrence example
TWO_OCCURRENCES_MARKER = "<!-- two-occurrence example:"
TWO_OCCURRENCES = {  # row label -> (optimizer class, arguments, what the row shows)
    "RMSprop(0.01): velocity of row 1": ("RMSprop", {"learning_rate": 0.01}, "velocity"),
    "RMSprop(0.01): change of row 1": ("RMSprop", {"learning_rate": 0.01}, "change"),
    "Adam(0.01): change of row 1": ("Adam", {"learning_rate": 0.01}, "change"),
    "Adagrad(0.01): change of row 1": ("Adagrad", {"learning_rate": 0.01}, "change"),
    "SGD(1.0, clipnorm=0.5): change of row 1": ("SGD", {"learning_rate": 1.0, "clipnorm": 0.5}, "change"),
    "SGD(1.0, clipvalue=0.25): change of row 1": ("SGD", {"learning_rate": 1.0, "clipvalue": 0.25}, "change"),
}
IDS, UPSTREAM = np.array([[1, 1]]), np.array([[[0.3, -0.4], [0.1, 0.2]]])
TABLE0 = np.array([[0.5, -0.2], [0.1, 0.3], [-0.4, 0.6]])


def _tinynn_step(name, kwargs, what, dense):
    from tinynn import layers, optimizers

    emb = layers.Embedding(3, 2, dtype="float64")
    emb(IDS)
    emb.set_weights([TABLE0])
    emb(IDS)
    emb.backward(UPSTREAM)
    (grad,) = emb.gradients
    assert type(grad).__name__ == "IndexedSlices"
    opt = getattr(optimizers, name)(**kwargs)
    opt.apply([np.asarray(grad) if dense else grad], emb.weights)
    return opt.slot(0, "velocity")[1] if what == "velocity" else emb.embeddings[1] - TABLE0[1]


def _keras_change(name, kwargs):
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    emb = keras.layers.Embedding(3, 2, dtype="float64")
    emb.build(IDS.shape)
    emb.set_weights([TABLE0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(tf.constant(IDS)) * UPSTREAM)
    grads = tape.gradient(loss, emb.trainable_variables)
    assert isinstance(grads[0], tf.IndexedSlices)
    getattr(keras.optimizers, name)(**kwargs).apply(grads, emb.trainable_variables)
    return emb.get_weights()[0][1] - TABLE0[1]


def test_two_occurrence_example_is_what_tinynn_and_keras_compute():
    """docs/optimizers.md's table: the per-occurrence column is tinynn's step on the Embedding's IndexedSlices
    (and Keras's, from its GradientTape, when installed), the other column the same optimizer given the dense
    sum; the page prints them to 4 decimals."""
    text = (ROOT / "docs" / "optimizers.md").read_text(encoding="utf-8")
    assert TWO_OCCURRENCES_MARKER in text
    rows = text.split(TWO_OCCURRENCES_MARKER, 1)[1].split("\n\n", 1)[0].splitlines()[3:]
    table = {cells[0]: cells[1:] for cells in map(_cells, rows)}
    assert set(table) == set(TWO_OCCURRENCES), "the table's rows and the test's list differ"
    have_keras = importlib.util.find_spec("keras") is not None
    for label, (name, kwargs, what) in TWO_OCCURRENCES.items():
        per_occurrence = _tinynn_step(name, kwargs, what, dense=False)
        summed = _tinynn_step(name, kwargs, what, dense=True)
        for printed, value in zip(table[label], (per_occurrence, summed)):
            assert printed == ", ".join(f"{v:.4f}" for v in value), f"{label}: the page says {printed}, got {value}"
        assert not np.allclose(per_occurrence, summed), f"{label}: the two columns should differ"
        if what == "change" and have_keras:
            np.testing.assert_allclose(per_occurrence, _keras_change(name, kwargs), rtol=1e-10, atol=0,
                                       err_msg=label)


# ------------------------------------------------------------------------------------ figures
def test_figure_script_draws_every_figure_the_pages_show(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "figures" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.main(tmp_path)
    assert {p.name for p in written} == set(module.FIGURES)
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    shown = set()
    for page in DOCS:
        shown |= set(re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", page.read_text(encoding="utf-8")))
    assert shown == set(module.FIGURES), f"figures drawn {set(module.FIGURES)} vs shown in docs/ {shown}"

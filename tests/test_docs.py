"""The docs say what the code is: the development page's layout names every module of the package
and nothing else, the stage list of the overview (and README) is the one ``convert()`` runs, the
signature on the convert page is ``convert()``'s, every public name has an API entry, README stays
short and its links and headline figures lead to pages that hold them. Nothing here imports torch
or builds the site (``make docs`` does, with ``--strict``)."""

from __future__ import annotations

import ast
import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PACKAGE = ROOT / "octify"

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


# --------------------------------------------------------------------------- helpers

def _slug(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's toc (mkdocs) makes it; for plain headings
    also GitHub's."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _headings(text: str) -> list:
    """(level, slug, start offset) of each Markdown heading outside code blocks."""
    blanked = re.sub(r"^```.*?^```", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S | re.M)
    return [(len(m.group(1)), _slug(m.group(2)), m.start()) for m in re.finditer(r"^(#{1,6}) (.+)$", blanked, re.M)]


def _section(text: str, anchor: str) -> str:
    """The text under the heading whose anchor is ``anchor``, up to the next heading of its level or above."""
    heads = _headings(text)
    for i, (level, slug, start) in enumerate(heads):
        if slug == anchor:
            end = next((s for lv, _, s in heads[i + 1:] if lv <= level), len(text))
            return text[start:end]
    raise AssertionError(f"no heading with anchor #{anchor}")


def _layout_block() -> list:
    """The lines of the tree under "## Layout" on the development page."""
    section = _section((DOCS / "development.md").read_text(), "layout")
    blocks = re.findall(r"^```\n(octify/\n.*?)^```", section, re.S | re.M)
    assert len(blocks) == 1, "the Layout section holds one tree, starting at octify/"
    return blocks[0].splitlines()


def _layout_paths() -> dict:
    """Every path the layout names (relative to the repository), with its description."""
    paths, stack = {}, []
    for line in _layout_block():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"layout line indented by an odd number of spaces: {line!r}"
        name, _, description = line.strip().partition(" ")
        depth = indent // 2
        assert depth <= len(stack), f"layout line deeper than its folder: {line!r}"
        stack = stack[:depth]
        path = "/".join(stack + [name.rstrip("/")])
        paths[path] = description.strip()
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
    return paths


def _module_files(folder: Path) -> set:
    return {p.relative_to(ROOT).as_posix() for p in folder.glob("*.py")}


# --------------------------------------------------------------------------- the layout list

def test_the_layout_names_only_files_that_exist():
    paths = _layout_paths()
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/development.md's layout names files that do not exist: {missing}"


def test_the_layout_names_every_module_of_every_subpackage():
    paths = _layout_paths()
    folders = sorted({PACKAGE, *(p.parent for p in PACKAGE.rglob("__init__.py") if "__pycache__" not in p.parts)})
    unnamed = sorted(f for folder in folders for f in _module_files(folder) if f not in paths)
    assert not unnamed, f"modules missing from docs/development.md's layout (one line each, with what it holds): {unnamed}"
    for folder in folders:
        assert folder.relative_to(ROOT).as_posix() in paths, f"the layout does not list the subpackage {folder.name}/"


def test_each_layout_line_says_what_the_file_holds():
    empty = sorted(p for p, description in _layout_paths().items() if p != "octify" and len(description.split()) < 2)
    assert not empty, f"layout lines without a description: {empty}"


def test_the_layout_parser_catches_drift(tmp_path, monkeypatch):
    # The tests above must fail when the page and the package part: a module the page does not
    # name, and a name the page keeps for a file that is gone.
    page = (DOCS / "development.md").read_text()
    trimmed = page.replace("    kernel_choice.py        which 1x1 octave convs of a frozen model run as matrix products (timed)\n", "")
    assert trimmed != page, "the layout line of fx/kernel_choice.py changed: update this test"
    (tmp_path / "development.md").write_text(trimmed)
    monkeypatch.setattr(sys.modules[__name__], "DOCS", tmp_path)
    with pytest.raises(AssertionError, match="kernel_choice.py"):
        test_the_layout_names_every_module_of_every_subpackage()
    (tmp_path / "development.md").write_text(page.replace("    fuse.py ", "    fused.py"))
    with pytest.raises(AssertionError, match="fused.py"):
        test_the_layout_names_only_files_that_exist()


# --------------------------------------------------------------------------- the stages of the pass

def _convert_stages() -> list:
    """The stage modules of the pass, in the order it runs them (``octify.fx.stages.STAGES``);
    ``octify/convert.py``'s docstring lists the same (1. ``tracer``, ...)."""
    from octify.fx.stages import STAGES

    modules = [s.module for s in STAGES]
    doc = ast.get_docstring(ast.parse((PACKAGE / "convert.py").read_text()))
    assert re.findall(r"^\d+\. ``(\w+)``", doc, re.M) == modules, "octify/convert.py's docstring lists other stages than STAGES"
    return modules


def _stated_stage_lists() -> list:
    """Each "in N stages" statement of README and the docs, with the list that follows it."""
    found = []
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        text = _without_code_blocks(path.read_text())
        for m in re.finditer(r"\bin\s+(\w+)\s+stages\b", text):
            count = NUMBER_WORDS.get(m.group(1).lower(), int(m.group(1)) if m.group(1).isdigit() else None)
            rest = text[m.end():]
            numbered = re.match(r"[^\n]*\n\n((?:\d+\. .*\n(?: {2,}.*\n)*)+)", rest)
            if numbered:
                items = re.findall(r"^\d+\. (.*)$", numbered.group(1), re.M)
            else:  # an inline list: "...stages: a, b, c and d."
                inline = re.match(r":\s*(.*?)\.(?:\s|$)", rest, re.S)
                assert inline, f"{path.name}: 'in {m.group(1)} stages' is followed by no list"
                items = re.split(r",\s*|\s+and\s+", " ".join(inline.group(1).split()))
            found.append((path.name, count, items))
    return found


def test_convert_lists_its_stages():
    assert len(_convert_stages()) >= 5, "octify/convert.py's docstring no longer lists the stages 1. ``tracer`` ..."


def test_the_stage_count_stated_is_the_length_of_the_list_that_follows():
    stated = _stated_stage_lists()
    assert {name for name, _, _ in stated} >= {"README.md", "index.md"}
    for name, count, items in stated:
        assert count == len(items), f"{name}: 'in {count} stages' followed by {len(items)}: {items}"
        assert count == len(_convert_stages()), f"{name} says {count} stages; octify/convert.py runs {len(_convert_stages())}"


def test_the_overview_names_each_stage_file_in_the_order_convert_runs_them():
    items = next(items for name, _, items in _stated_stage_lists() if name == "index.md")
    first_files = [re.search(r"`(\w+)\.py`", item).group(1) for item in items]
    assert first_files == _convert_stages()
    for item in items:
        for name in re.findall(r"`([\w/]+\.py)`", item):
            assert (PACKAGE / "fx" / name).exists() or (PACKAGE / name).exists(), f"docs/index.md names {name}, not in octify/fx/"


# --------------------------------------------------------------------------- the convert page and the API pages

def test_the_signature_on_the_convert_page_is_converts():
    import inspect

    import octify

    # The real defaults, as convert() reads them (from octify.ConvertOptions), against the page's literals.
    params = inspect.signature(octify.convert).parameters.values()
    real = [(p.name, None if p.default is inspect.Parameter.empty else repr(p.default)) for p in params]

    page = (DOCS / "convert.md").read_text()
    block = re.search(r"```python\n(octify\.convert\(.*?\)) -> ", page, re.S).group(1)
    call = ast.parse(block.replace("octify.convert(", "def convert(", 1) + ": pass").body[0]
    stated_defaults = dict(zip([a.arg for a in call.args.args][-len(call.args.defaults):], call.args.defaults))
    stated_defaults.update({a.arg: d for a, d in zip(call.args.kwonlyargs, call.args.kw_defaults) if d is not None})
    stated = [(a.arg, repr(ast.literal_eval(stated_defaults[a.arg])) if a.arg in stated_defaults else None)
              for a in call.args.args + call.args.kwonlyargs]
    assert stated == real, "docs/convert.md's signature differs from octify/convert.py's convert()"
    for name, _ in real[1:]:
        assert f"`{name}" in _without_code_blocks(page), f"docs/convert.md does not say what {name} does"


def _api_entries() -> set:
    return {m for page in ("api.md", "api-nn.md") for m in re.findall(r"^::: ([\w.]+)$", (DOCS / page).read_text(), re.M)}


def test_every_public_name_has_an_api_entry_under_its_module():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    exports = ast.literal_eval(next(n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_EXPORTS"))
    entries = _api_entries()
    for name, module in exports.items():
        assert f"octify{module}.{name}" in entries, f"docs/api*.md: no '::: octify{module}.{name}' for octify.{name}"


def test_every_layer_has_an_api_entry():
    tree = ast.parse((PACKAGE / "nn" / "__init__.py").read_text())
    names = ast.literal_eval(next(n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__all__"))
    missing = sorted(set(names) - {e.rsplit(".", 1)[1] for e in _api_entries() if e.startswith("octify.nn.")})
    assert not missing, f"docs/api-nn.md has no entry for {missing}"


def test_the_doctest_extension_fences_what_markdown_would_misread():
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        from doctest_fences import markdown_docstring
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    text = 'Tuned.\n\n>>> rec.finetune["history"][0]["step"]\n0\n\nSee :func:`octify.convert`.'
    out = markdown_docstring(text)
    assert '```pycon\n>>> rec.finetune["history"][0]["step"]\n0\n```' in out
    assert out.endswith("See `octify.convert`.")


# --------------------------------------------------------------------------- README

def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    head = "\n".join(text.splitlines()[:20])
    assert "make demo" in head and "make test" in head


def _readme_links() -> list:
    text = _without_code_blocks(README.read_text())
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def test_the_readmes_relative_links_lead_to_files_and_headings_that_exist():
    links = _readme_links()
    assert any(t.startswith("docs/") for t in links)
    for target in links:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in {slug for _, slug, _ in _headings((ROOT / path).read_text())}, f"README links to {target}: no such heading"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {t.partition("#")[0] for t in _readme_links()}
    missing = sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md") if p.relative_to(ROOT).as_posix() not in linked)
    assert not missing, f"README does not link to {missing}"


def _rendered(path: Path) -> str:
    """A page as the site shows it: its benchmark tables filled in from benchmarks/results/ by the
    same hook the build runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_results_hook", DOCS / "hooks" / "results.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook.on_page_markdown(path.read_text())


def test_each_headline_figure_is_in_the_section_it_links_to():
    text = README.read_text()
    rows = re.findall(r"^\| (?!what |---)(.+?) \| (.+?) \| \[.*?\]\((docs/[\w-]+\.md)#([\w-]+)\) \|$", text, re.M)
    assert len(rows) >= 5, "README's table of headline figures is missing or changed its form (| what | figure | [page](docs/page.md#section) |)"
    for what, figure, page, anchor in rows:
        section = _section(_rendered(ROOT / page), anchor)
        numbers = re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-\d+)?", figure)
        assert numbers, f"README's figure for {what!r} holds no number"
        for number in numbers:
            assert re.search(rf"(?<![\w.]){re.escape(number)}(?![\w]|\.\d)", section), (
                f"README states {number} for {what!r}, which {page}#{anchor} does not hold"
            )


# --------------------------------------------------------------------------- figures written by the benchmarks

RESULTS = ROOT / "benchmarks" / "results"


def test_each_saved_benchmark_table_is_shown_once_and_each_shown_one_exists():
    shown = []
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        shown += re.findall(r"^<!-- results: ([\w.-]+) -->$", path.read_text(), re.M)
    saved = sorted(p.stem for p in RESULTS.glob("*.json"))
    assert sorted(shown) == saved, f"pages show {sorted(shown)}; benchmarks/results/ holds {saved}"
    for name in saved:
        data = json.loads((RESULTS / f"{name}.json").read_text())
        assert data["rows"] and all(len(r) == len(data["columns"]) for r in data["rows"]), name
        assert len(data["align"]) == len(data["columns"]) and set(data["align"]) <= {"-", ":"}, name
        assert data["command"].startswith("python benchmarks/") and re.fullmatch(r"\d{4}-\d\d-\d\d", data["date"]), name
        assert "torch" in data["machine"], name

"""What the help, the docstrings and the docs say is what the code is: every module or file a
docstring names exists, every page an option's help cites exists (with its section), the
architecture page lists every bench script, the command pages' synopses show the code's defaults,
and the README speaks of the product, not of how it was made."""
from __future__ import annotations

import ast
import importlib
import re

import click

from conftest import REPO

DOTTED = re.compile(r"\b((?:c2f|pipeline)(?:\.[A-Za-z_]\w*)+)")
FILE_NAME = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*\w+\.py)\b")


def _named_module_exists(name: str) -> bool:
    """`pipeline.decode.reader` or `c2f.predict.engine.BatchResult`: a module, or a name in one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        path = REPO.joinpath(*parts[:end])
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            found = importlib.import_module(".".join(parts[:end]))
            for attribute in parts[end:]:
                if not hasattr(found, attribute):
                    return False
                found = getattr(found, attribute)
            return True
    return False


def _docstrings(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                yield getattr(node, "name", "module"), text


def test_every_module_a_docstring_names_exists():
    """A module named by its dotted name (c2f.x.y), or a file by its name (x.py, beside the docstring's
    module or from the repository's root), is there."""
    wrong = []
    for path in sorted((REPO / "pipeline").rglob("*.py")) + sorted((REPO / "c2f").rglob("*.py")):
        for where, text in _docstrings(path):
            wrong += [f"{path.relative_to(REPO)} ({where}): {name}" for name in DOTTED.findall(text)
                      if not _named_module_exists(name.rstrip("."))]
            wrong += [f"{path.relative_to(REPO)} ({where}): {name}" for name in FILE_NAME.findall(text)
                      if not (path.parent / name).exists() and not (REPO / name).exists()]
    assert not wrong, wrong


def _anchors(page) -> set[str]:
    """The section anchors of a markdown page, as GitHub makes them."""
    titles = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}


def test_every_page_an_option_help_cites_exists():
    """An option's help cites the docs page (and section) that holds a figure or a rule, never the
    README (the front door: it keeps a summary, not the figures an option's help rests on)."""
    from c2f.cli import main
    context = click.Context(main)
    commands = [main.get_command(context, name) for name in main.list_commands(context)]
    for command in commands:
        for param in command.params:
            text = getattr(param, "help", None) or ""
            assert "README" not in text, f"c2f {command.name} {param.opts[0]} cites the README: {text!r}"
            for page, anchor in re.findall(r"(docs/[\w/.-]+\.md)(?:#([\w-]+))?", text):
                assert (REPO / page).exists(), f"c2f {command.name} {param.opts[0]} cites {page}, absent"
                assert not anchor or anchor in _anchors(REPO / page), f"{page} has no section #{anchor}"


def test_the_architecture_page_lists_every_bench_script():
    """docs/architecture.md's tree names each bench/ script once, with what it measures, and no script
    that is not there."""
    tree = (REPO / "docs" / "architecture.md").read_text().split("bench/", 1)[1].split("tests/", 1)[0]
    listed = re.findall(r"^  (\w+\.(?:py|sh))\s", tree, re.MULTILINE)
    present = sorted(p.name for p in (REPO / "bench").iterdir() if p.suffix in (".py", ".sh") and p.name != "_demo.py")
    assert sorted(listed) == present


def _as_numbers(value) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else [value]))
    except (TypeError, ValueError):
        return None


def test_the_commands_pages_show_the_codes_defaults():
    """`[--option VALUE]` in a docs/commands page's synopsis is the option's default (for train-head,
    one method's): a default changed in the code and not in its page fails here."""
    from test_structure import _code_defaults, _every_command
    commands = _every_command()
    checked = 0
    for page in sorted((REPO / "docs" / "commands").glob("*.md")):
        command = commands[page.stem]
        code = _code_defaults(page.stem, command)
        flags = {flag: p.name for p in command.params for flag in getattr(p, "opts", [])}
        for synopsis in re.findall(r"```\n(.*?)```", page.read_text(), re.DOTALL):
            for flag, value in re.findall(r"\[(--[a-z-]+) ([0-9][0-9.e,-]*)\]", synopsis):
                known = [_as_numbers(v) for v in code[flags[flag]]]
                assert _as_numbers(value.split(",")) in known, f"{page.name}: [{flag} {value}], the code {known}"
                checked += 1
    assert checked > 10


def test_the_readme_speaks_of_the_product():
    """The README and the docs say what c2f does and what has not been measured, in the product's terms;
    how the project was worked on (sessions, machines lent to them) is not the reader's business."""
    text = (REPO / "README.md").read_text()
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for phrase in ("session", "lent to", "a lent", "helper"):
            assert phrase not in page.read_text().lower(), f"{page.relative_to(REPO)}: {phrase}"
    not_measured = text.split("**Not measured yet.**", 1)[1].split("\n\n", 1)[0]
    assert "bench/gpu.sh" in not_measured and "docs/measurements/gpu.md" in not_measured

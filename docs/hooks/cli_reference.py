"""mkdocs hook: the command-line reference, generated from octify's typer app on every build.

A page holding the marker line ``<!-- octify-cli-reference -->`` gets, in its place, a section
per command of ``octify.cli.app`` (``typer.main.get_command(app)``, a click group): its help,
its usage line, a table of its arguments and options with their values and defaults, and its
epilog (examples, notes). The text comes from the same strings ``octify COMMAND --help``
prints, so the page cannot drift from the command line. Importing the app does not import
torch, so the hook costs a fraction of a second.

Registered in mkdocs.yml under ``hooks:``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, List, Optional

MARKER = "<!-- octify-cli-reference -->"

# rich markup in octify's help texts: [b]..[/b], [cyan]..[/], [dim]..[/]; "\[" is a literal bracket
_TAG = re.compile(r"(?<!\\)\[(/?)([a-z ]*)\]")
_DEFAULT = re.compile(r"\s*\\?\[default: (.*?)\]\s*$")


def _plain(text: str) -> str:
    """Help text without rich markup, literal brackets unescaped."""
    return _TAG.sub("", text).replace("\\[", "[")


def _escape(text: str) -> str:
    """Plain text as Markdown that shows it as typed (in a paragraph or a table cell); spans
    the help puts in backticks stay code."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(
        _code(p[1:-1]) if p.startswith("`") and p.endswith("`") and len(p) > 1 else re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", p)
        for p in parts
    )


def _markdown(text: str) -> str:
    """One paragraph of rich-marked help as Markdown: [b] bold, [cyan] code, [dim] as text."""
    out: List[str] = []
    pos, style = 0, []
    code = False
    for m in _TAG.finditer(text):
        chunk = text[pos:m.start()].replace("\\[", "[")
        out.append(chunk if code else _escape(chunk))
        pos = m.end()
        closing, name = m.group(1) == "/", m.group(2).strip()
        if not closing:
            style.append(name)
            if name == "b":
                out.append("**")
            elif name == "cyan":
                out.append("`")
                code = True
        else:
            name = style.pop() if style else name
            if name == "b":
                out.append("**")
            elif name == "cyan":
                out.append("`")
                code = False
    chunk = text[pos:].replace("\\[", "[")
    out.append(chunk if code else _escape(chunk))
    return "".join(out)


def _code(text: str) -> str:
    """``text`` as an inline code span (a pipe inside one does not split a table cell)."""
    return "`" + text + "`"


def _epilog(text: str) -> str:
    """An epilog as Markdown: runs of indented lines (the examples) as one shell block, the
    other paragraphs as text."""
    blocks: List[str] = []
    commands: List[str] = []
    for para in re.split(r"\n\s*\n", text.strip("\n")):
        lines = para.splitlines()
        if all(line.startswith("  ") for line in lines):
            commands += [_plain(line).strip() for line in lines]
            continue
        if commands:
            blocks.append("```bash\n" + "\n".join(commands) + "\n```")
            commands = []
        blocks.append(_markdown(" ".join(line.strip() for line in lines)))
    if commands:
        blocks.append("```bash\n" + "\n".join(commands) + "\n```")
    return "\n\n".join(blocks)


def _default(param: Any, help_text: str) -> tuple[str, str]:
    """The default column for a parameter, and its help with any "[default: ...]" moved out."""
    m = _DEFAULT.search(help_text)
    if m:
        return _escape(m.group(1)), help_text[:m.start()]
    if getattr(param, "required", False):
        return "required", help_text
    if getattr(param, "is_flag", False):
        if param.secondary_opts:
            return _code(param.opts[0] if param.default else param.secondary_opts[0]), help_text
        return ("on" if param.default else "off"), help_text
    if param.default is None or getattr(param, "show_default", True) is False:
        return "", help_text
    if isinstance(param.default, (list, tuple)):
        return (_code(" ".join(map(str, param.default))) if param.default else ""), help_text
    return _code(str(param.default)), help_text


def _params_table(command: Any) -> str:
    rows = ["| argument or option | value | default | what it does |", "|---|---|---|---|"]
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        help_text = _plain(getattr(param, "help", None) or "")
        default, help_text = _default(param, help_text)
        if param.param_type_name == "argument":
            name = _code(param.metavar or param.name.upper())
            value = ""
        else:
            names = list(param.opts)
            if param.secondary_opts:
                names = [f"{param.opts[0]} / {param.secondary_opts[0]}", *param.opts[1:]]
            name = ", ".join(_code(n) for n in names)
            value = "" if param.is_flag else _code(param.metavar or param.type.name.upper())
            if getattr(param, "multiple", False) and "repeatable" not in help_text:
                value += " (repeatable)"
        rows.append(f"| {name} | {value} | {default} | {_escape(help_text.strip())} |")
    return "\n".join(rows)


def _section(command: Any, ctx: Any, level: int) -> str:
    hashes = "#" * level
    parts = [f"{hashes} `{ctx.command_path}`", _markdown((command.help or "").strip())]
    usage = re.sub(r"\{([^}]*)\}", r"\1", command.get_usage(ctx).replace("Usage: ", "", 1))
    parts.append("```text\n" + usage + "\n```")
    parts.append(_params_table(command))
    parts.append("`-h`, `--help` shows this help and exits.")
    if command.epilog:
        parts.append(_epilog(command.epilog))
    return "\n\n".join(p for p in parts if p)


def cli_reference() -> str:
    """The Markdown of every command of ``octify.cli.app``."""
    import click
    import typer.main

    from octify.cli.app import app

    group = typer.main.get_command(app)
    root = click.Context(group, info_name="octify")
    parts = [_section(group, root, 2)]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is None or command.hidden:
            continue
        parts.append(_section(command, click.Context(command, info_name=name, parent=root), 2))
    return "\n\n".join(parts) + "\n"


def on_config(config: Any, **kwargs: Any) -> Any:
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # octify from this checkout, installed or not
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> Optional[str]:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())

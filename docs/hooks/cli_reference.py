"""MkDocs hook: the command-line reference, generated from the Typer app at build time.

A page holding the line ``<!-- cli-reference -->`` gets, in its place, every command of
``batchdigits.cli.app`` with its usage, help text and a table of its arguments and
options (names, type, default, help), in the order ``batchdigits --help`` lists them.
Nothing is written twice: the help texts live in the code.
"""

from __future__ import annotations

import re

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())


def reference() -> str:
    import typer.main

    from batchdigits.cli import app

    group = typer.main.get_command(app)
    parts = [_command("batchdigits", group, top=True)]
    parts += [_command(f"batchdigits {name}", cmd) for name, cmd in group.commands.items()]
    return "\n\n".join(parts)


def _command(title: str, command, top: bool = False) -> str:
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    arguments = [p.name.upper() for p in params if p.param_type_name == "argument"]
    usage = " ".join([title, "[OPTIONS]", *arguments] + (["COMMAND [ARGS]..."] if top else []))
    lines = [
        "## `batchdigits` (global options)" if top else f"## `{title}`",
        "",
        _text(command.help or ""),
        "",
        "```text",
        usage,
        "```",
        "",
        "| argument or option | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    return "\n".join(lines + [_row(param) for param in params])


def _row(param) -> str:
    if param.param_type_name == "argument":
        names = f"`{param.name.upper()}`"
    else:
        names = " / ".join(", ".join(f"`{o}`" for o in opts) for opts in _opts(param) if opts)
    flag = bool(getattr(param, "is_flag", False))
    kind = "flag" if flag else _type(param)
    help_text = _cell(getattr(param, "help", None) or "")
    if getattr(param, "multiple", False):
        help_text += " (repeatable)"
    return f"| {names} | {kind} | {_default(param, flag)} | {help_text} |"


def _opts(param):
    return (param.opts, param.secondary_opts)


def _type(param) -> str:
    """The value's kind, from the annotation Typer keeps (or click's type, for a Typer
    that has no annotation on its parameters), with its range."""
    import enum
    import pathlib
    import typing

    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:
        name = getattr(getattr(param, "type", None), "name", "text")
        choices = getattr(getattr(param, "type", None), "choices", None)
        return " \\| ".join(f"`{c}`" for c in choices) if choices else str(name).lower()
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    annotation = args[0] if args else annotation
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    kinds = {int: "integer", float: "number", str: "text", bool: "flag", pathlib.Path: "path"}
    kind = kinds.get(annotation, getattr(annotation, "__name__", "text"))
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None or high is not None:
        kind += f" ({low if low is not None else ''}..{high if high is not None else ''})"
    return kind


def _default(param, flag: bool) -> str:
    if getattr(param, "required", False):
        return "required"
    value = param.default
    if value is None or value == () or value == []:
        return ""
    if hasattr(value, "value"):  # an Enum member
        value = value.value
    if flag:
        return "on" if value else "off"
    return f"`{value}`"


def _text(text: str) -> str:
    """Typer help text as Markdown: escapes Rich's ``\\[`` and joins wrapped lines."""
    text = text.replace("\\[", "[")
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text).strip()


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|")

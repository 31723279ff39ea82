"""The README's and docs' `codeclm` commands parse as written, and the README's configuration
table names only flags and variables that exist. (tests/integration/test_readme_commands.py runs
the broker commands and every --help.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from streams.cli import build_parser
from streams.settings import SECTIONS

ROOT = Path(__file__).resolve().parents[4]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"sh", "bash", "shell"}
SUBSTITUTION = re.compile(r"\$\((codeclm[^)]*)\)")  # eval "$(codeclm broker start)"
INLINE = re.compile(r"`(codeclm [^`]*)`")
SHELL_OPERATORS = {"|", "&", "&&", "||", ";", ">", ">>", "2>", "<"}


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced block, continued lines joined."""
    blocks: list[tuple[str, list[str]]] = []
    inside = False
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            inside = not inside
            if inside:
                blocks.append((line[3:].strip(), []))
        elif inside:
            blocks[-1][1].append(line)
    return blocks


def command_lines(text: str) -> list[str]:
    """The commands of the shell blocks: the lines after `$ ` in a block that shows output, else
    every line of a block marked sh (an unmarked block without `$ ` is output only)."""
    lines: list[str] = []
    for language, block in fenced_blocks(text):
        prompted = [line[2:] for line in block if line.startswith("$ ")]
        lines += prompted if prompted or language not in SHELL_LANGUAGES else block
    return [line for line in lines if "codeclm " in line]


def codeclm_commands(line: str) -> list[list[str]]:
    """The arguments of each `codeclm` command on a shell line."""
    commands = [shlex.split(inner)[1:] for inner in SUBSTITUTION.findall(line)]
    tokens = shlex.split(SUBSTITUTION.sub("", line), comments=True)
    for start, token in enumerate(tokens):
        if token == "codeclm":
            args = []
            for arg in tokens[start + 1 :]:
                if arg in SHELL_OPERATORS:
                    break
                args.append(arg)
            commands.append(args)
    return commands


def inline_commands(text: str) -> list[list[str]]:
    """`codeclm lag --members` in the prose: those with arguments (`codeclm export` alone names
    the command) and without alternatives (`codeclm broker start|stop|status`)."""
    spans = (shlex.split(span)[1:] for span in INLINE.findall(text) if "|" not in span)
    return [args for args in spans if len(args) > 1]


def documented_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for path in DOCUMENTS:
        text = path.read_text()
        found = [args for line in command_lines(text) for args in codeclm_commands(line)] + inline_commands(text)
        commands += [(f"{path.name}: codeclm {' '.join(args)}", args) for args in found]
    return commands


COMMANDS = documented_commands()


def test_the_documents_show_commands():
    shown = {args[0] for _, args in COMMANDS}
    assert {"broker", "worker", "feed", "export", "lag", "status"} <= shown


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses_as_written(where, args):
    if "--help" in args:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(args)
        assert exit_.value.code == 0
    else:
        build_parser().parse_args(args)  # exits (a failure here) on a flag or a value it does not take


def configuration_table() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    return [line for line in section.splitlines() if line.startswith("| ")][2:]


def worker_flags() -> set[str]:
    parser = build_parser()
    worker = parser._subparsers._group_actions[0].choices["worker"]  # type: ignore[union-attr]
    return {flag for action in worker._actions for flag in action.option_strings}


def test_every_flag_in_the_configuration_table_is_a_worker_flag():
    flags = worker_flags()
    named = {flag for row in configuration_table() for flag in re.findall(r"`(--[a-z0-9-]+)", row)}
    assert named, "the table names flags"
    assert named <= flags, named - flags


def test_every_variable_in_the_configuration_table_is_a_setting():
    for row in configuration_table():
        section = None
        for name in re.findall(r"`(CODECLM_\w+|__\w+)", row):
            if name.startswith("CODECLM_"):
                section, field = name.removeprefix("CODECLM_").split("__", 1)
            else:
                field = name.removeprefix("__")  # `__MODEL` after `CODECLM_STRONG__BASE_URL`
            if field in ("", "..."):
                continue
            assert section is not None
            assert field.lower() in SECTIONS[section.lower()].model_fields, name

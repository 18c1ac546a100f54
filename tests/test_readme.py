"""README.md's examples stay true: its TOML parses (and names settings that exist), its
Python compiles, and its ``evaldock …`` commands use only subcommands, flags and choices
that the command's own ``--help`` lists."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from evaldock.server.load import load_settings
from evaldock.server.surface import declarations

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
# Tables whose keys are the core's or a surface's typed settings (free-form tables such as
# [auth.*], [engines.*], [judge] are not checked key by key).
_CHECKED_TABLES = ("server", "jobs")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # of the opening fence, 1-based

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def _blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(m["lang"].lower(), m["body"], text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def _of(lang: str) -> list[Block]:
    return [b for b in _blocks() if b.lang == lang]


def test_readme_has_examples() -> None:
    langs = {b.lang for b in _blocks()}
    assert {"toml", "python", "bash"} <= langs


# -- TOML ---------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("toml"), ids=str)
def test_toml_block_parses(block: Block) -> None:
    try:
        tomllib.loads(block.body)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block}: not valid TOML: {exc}")


@pytest.mark.parametrize("block", _of("toml"), ids=str)
def test_toml_block_names_real_settings(block: Block) -> None:
    """Every key of [server], [jobs] and a surface's own table exists in the defaults."""
    doc = tomllib.loads(block.body)
    defaults = load_settings(None, {}, environ={}).tree
    tables = (*_CHECKED_TABLES, *(d.name for d in declarations()))
    unknown = [
        f"[{table}] {key}"
        for table in tables
        for key in doc.get(table, {})
        if key not in defaults.get(table, {})
    ]
    assert not unknown, f"{block}: settings that do not exist: {', '.join(unknown)}"


# -- Python -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("python"), ids=str)
def test_python_block_compiles(block: Block) -> None:
    compile(block.body, str(block), "exec")


# -- evaldock commands --------------------------------------------------------------------


@dataclass
class Help:
    """What one (sub)command's ``--help`` accepts."""

    options: dict[str, str | None] = field(default_factory=dict)  # flag -> metavar or None
    subcommands: set[str] = field(default_factory=set)


@functools.cache
def _help(path: tuple[str, ...]) -> Help:
    out = subprocess.run(
        [sys.executable, "-m", "evaldock.server", *path, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, f"evaldock {' '.join(path)} --help failed:\n{out.stderr}"
    found = Help()
    section = ""
    for line in out.stdout.splitlines():
        if line and not line[0].isspace():
            section = line.rstrip(":").strip()
            continue
        stripped = line.strip()
        if section == "positional arguments":
            choices = re.match(r"^\{([^}]*)\}", stripped)
            if choices:
                found.subcommands.update(choices[1].split(","))
        elif section == "options" and stripped.startswith("-"):
            invocation = re.split(r"\s{2,}", stripped)[0]
            for variant in invocation.split(", "):
                flag, _, metavar = variant.partition(" ")
                found.options[flag] = metavar or None
    return found


def _command_lines(script: str) -> list[str]:
    """Logical shell lines: continuations joined, quotes spanning lines kept whole."""
    lines: list[str] = []
    pending = ""
    for raw in script.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{raw}" if pending else raw
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the next line continues it
            continue
        lines.append(pending)
        pending = ""
    assert not pending, f"unterminated quote in: {pending!r}"
    return lines


def _evaldock_commands(script: str) -> list[list[str]]:
    """Arguments of every ``evaldock`` (or ``python -m evaldock.server``) command."""
    found = []
    for line in _command_lines(script):
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        command: list[str] = []
        for token in [*lex, ";"]:
            if token and set(token) <= set("();<>|&"):
                args = _evaldock_args(command)
                if args is not None:
                    found.append(args)
                command = []
            else:
                command.append(token)
    return found


def _evaldock_args(command: list[str]) -> list[str] | None:
    while command and re.match(r"^[A-Za-z_]\w*=", command[0]):  # VAR=value evaldock ...
        command = command[1:]
    if not command:
        return None
    if Path(command[0]).name == "evaldock":
        return command[1:]
    if Path(command[0]).name.startswith("python") and command[1:3] == ["-m", "evaldock.server"]:
        return command[3:]
    return None


def _check_command(args: list[str]) -> list[str]:
    """What in ``evaldock <args>`` the parsers would not accept (empty: all of it)."""
    problems: list[str] = []
    path: tuple[str, ...] = ()
    tokens = iter(args)
    for token in tokens:
        here = _help(path)
        where = " ".join(("evaldock", *path))
        if token.startswith("-"):
            flag, eq, inline = token.partition("=")
            if flag not in here.options:
                problems.append(f"{where} has no option {flag}")
                continue
            metavar = here.options[flag]
            if metavar is None:
                continue
            value = inline if eq else next(tokens, None)
            if value is None:
                problems.append(f"{where} {flag} needs a value")
                continue
            choices = re.fullmatch(r"\{([^}]*)\}", metavar)
            if choices and value not in choices[1].split(","):
                problems.append(f"{where} {flag} takes one of {{{choices[1]}}}, not {value!r}")
        elif here.subcommands:
            if token in here.subcommands:
                path = (*path, token)
            else:
                problems.append(f"{where} has no subcommand {token!r}")
                break
        # else: a positional argument (a model name, an id)
    if not problems and _help(path).subcommands:
        problems.append(f"{' '.join(('evaldock', *path))} needs a subcommand")
    return problems


def _inline_commands() -> list[list[str]]:
    """``evaldock …`` commands quoted inline in the prose (`evaldock serve --mode mock`)."""
    text = _FENCE.sub("", README.read_text(encoding="utf-8"))
    spans = re.findall(r"`(evaldock [^`]+)`", text)
    # A pattern such as `evaldock <vendor> …` is prose, not a command.
    concrete = [s for s in spans if not re.search(r"<\w+>|…", s)]
    return [shlex.split(" ".join(span.split()))[1:] for span in concrete]


def _all_commands() -> list[tuple[str, list[str]]]:
    commands = [
        (str(block), args) for block in _of("bash") for args in _evaldock_commands(block.body)
    ]
    commands += [("README.md (inline)", args) for args in _inline_commands()]
    return commands


def test_readme_shows_evaldock_commands() -> None:
    assert any(args[:1] == ["serve"] for _, args in _all_commands())


@pytest.mark.parametrize(
    ("where", "args"), _all_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_evaldock_command_is_accepted(where: str, args: list[str]) -> None:
    problems = _check_command(args)
    assert not problems, f"{where}: evaldock {shlex.join(args)}: {'; '.join(problems)}"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("evaldock serve --mode mock  # comment", [["serve", "--mode", "mock"]]),
        ("a && .venv/bin/evaldock config | jq .", [["config"]]),
        ("evaldock serve \\\n  --port 1", [["serve", "--port", "1"]]),
        ("X=1 python3 -m evaldock.server serve; echo 'evaldock x'", [["serve"]]),
        ("curl -d '{\n evaldock \n}'\nevaldock config", [["config"]]),
    ],
)
def test_command_extraction(script: str, expected: list[list[str]]) -> None:
    assert _evaldock_commands(script) == expected


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["serve", "--mode", "real|mock"], "takes one of"),
        (["serve", "--no-such-flag"], "has no option --no-such-flag"),
        (["frobnicate"], "has no subcommand"),
        (["serve", "--port"], "needs a value"),
        (["marqtune"], "needs a subcommand"),
    ],
)
def test_check_command_catches(args: list[str], problem: str) -> None:
    assert any(problem in p for p in _check_command(args)), _check_command(args)

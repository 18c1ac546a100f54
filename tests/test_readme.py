"""README.md and docs/**/*.md stay true: their examples run against a live mock server
(the fence convention is in tests/docs_examples.py and docs/architecture.md#tests), their
TOML parses and names settings that exist, their Python compiles, their ``evaldock …``
commands use only subcommands, flags and choices that the command's own ``--help``
lists, their links resolve, and docs/configuration.md lists every typed setting."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from evaldock.server.load import load_settings
from evaldock.server.surface import declarations
from tests import docs_settings
from tests.conftest import clients_python_path
from tests.docs_examples import (
    DOCS,
    EXECUTABLE,
    README,
    ROOT,
    Block,
    blocks,
    pages,
    prose,
    run_block,
)
from tests.serverproc import ServerProcess

# Tables whose keys are the core's or a surface's typed settings (free-form tables such as
# [auth.*], [engines.*], [judge] are not checked key by key).
_CHECKED_TABLES = ("server", "jobs", "control")
SURFACE_PAGES = ("objective", "marqtune", "oxen", "spice", "qianfan")


def _of(lang: str) -> list[Block]:
    return [b for b in blocks() if b.lang == lang]


def test_docs_have_examples() -> None:
    langs = {b.lang for b in blocks()}
    assert {"toml", "python", "bash"} <= langs


def test_every_surface_has_a_page_and_a_row() -> None:
    readme = README.read_text(encoding="utf-8")
    table = readme[: readme.index("## ")]
    for name in (d.name for d in declarations()):
        assert (DOCS / f"{name}.md").exists(), f"docs/{name}.md is missing"
        assert f"(docs/{name}.md)" in table, f"README's first table has no row for {name}"


def test_readme_is_one_page() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 150, f"README.md has {lines} lines: move detail to docs/"


# -- fence convention ---------------------------------------------------------------------


@pytest.mark.parametrize("block", [b for b in blocks() if b.lang in EXECUTABLE], ids=str)
def test_block_says_what_happens_to_it(block: Block) -> None:
    assert block.mode, (
        f"{block}: say after the language whether it runs (`run`, `run-client`, `pytest`) "
        "or why not (`shown: <why>`)"
    )
    if block.mode == "shown":
        assert block.reason, f"{block}: `shown:` needs its reason"
    if "pending" in block.info:
        assert block.pending and block.mode in ("run", "run-client", "pytest"), (
            f"{block}: write `<run mode> pending: <issue item>`"
        )
    if block.lang == "bash":
        assert block.mode in ("run", "shown"), f"{block}: bash runs as `run`"


# -- TOML ---------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("toml"), ids=str)
def test_toml_block_parses(block: Block) -> None:
    try:
        tomllib.loads(block.body)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block}: not valid TOML: {exc}")


@pytest.mark.parametrize("block", _of("toml"), ids=str)
def test_toml_block_names_real_settings(block: Block) -> None:
    """Every key of [server], [jobs], [control] and a surface's own table exists."""
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


# -- configuration reference --------------------------------------------------------------

_ROW = re.compile(r"^\| `(?P<key>\w+)` \| `(?P<default>[^`]*)` \|", re.M)
_TABLE = re.compile(r"^### `\[(?P<table>\w+)\]`", re.M)


def _documented_settings() -> dict[tuple[str, str], str]:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    begin, end = text.index("<!-- settings:"), text.index("<!-- /settings -->")
    section = text[begin:end]
    found: dict[tuple[str, str], str] = {}
    heads = list(_TABLE.finditer(section))
    for i, head in enumerate(heads):
        stop = heads[i + 1].start() if i + 1 < len(heads) else len(section)
        for row in _ROW.finditer(section, head.end(), stop):
            found[(head["table"], row["key"])] = row["default"]
    return found


def test_configuration_lists_every_setting_with_its_default() -> None:
    documented = _documented_settings()
    expected = {(r.table, r.key): r.default_text for r in docs_settings.rows()}
    missing = sorted(f"[{t}] {k}" for t, k in expected.keys() - documented.keys())
    unknown = sorted(f"[{t}] {k}" for t, k in documented.keys() - expected.keys())
    wrong = sorted(
        f"[{t}] {k}: docs say {documented[t, k]}, code says {v}"
        for (t, k), v in expected.items()
        if (t, k) in documented and documented[t, k] != v
    )
    fix = "; regenerate with `.venv/bin/python -m tests.docs_settings`"
    assert not missing, f"docs/configuration.md lacks {', '.join(missing)}{fix}"
    assert not unknown, f"docs/configuration.md lists settings that do not exist: {unknown}"
    assert not wrong, f"docs/configuration.md has stale defaults: {wrong}{fix}"


# -- links --------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs of ``page`` plus its explicit ``<a id="…">`` anchors."""
    text = prose(page)
    found = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def _links() -> list[tuple[str, Path, str]]:
    out = []
    for page in pages():
        for m in _LINK.finditer(prose(page)):
            out.append((f"{page.relative_to(ROOT)} -> {m['target']}", page, m["target"]))
    return out


@pytest.mark.parametrize(("where", "page", "target"), _links(), ids=lambda v: str(v))
def test_link_resolves(where: str, page: Path, target: str) -> None:
    if re.match(r"^[a-z]+:", target):
        return  # an external URL: not fetched
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{where}: {dest.relative_to(ROOT)} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{where}: no heading or anchor #{anchor}"


# -- examples run against a live mock server ----------------------------------------------


@dataclass
class Live:
    server: ServerProcess
    root: Path
    clients_python: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("docs")
    server = ServerProcess(root / "evaldock-data")
    with server:
        yield Live(server, root, clients_python_path())


_RUNNABLE = [b for b in blocks() if b.mode in ("run", "run-client", "pytest")]


@pytest.mark.parametrize("block", _RUNNABLE, ids=str)
def test_example_runs(block: Block, live: Live) -> None:
    if block.pending:
        pytest.skip(f"{block}: pending: {block.pending}")
    if block.mode == "run-client" and not live.clients_python:
        pytest.skip(
            f"{block}: needs the official clients: set EVALDOCK_CLIENTS_PYTHON "
            "(bash scripts/test.sh builds .venv-clients and sets it)"
        )
    page = block.page.relative_to(ROOT).with_suffix("")
    out = run_block(
        block,
        port=live.server.port,
        data_dir=live.server.data_dir,
        workdir=live.root / "pages" / str(page).replace("/", "_"),
        home=live.root / "home",
        clients_python=live.clients_python,
    )
    assert out.returncode == 0, (
        f"{block} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        f"\nserver log:\n{live.server.output()[-3000:]}"
    )
    if block.lang == "bash":
        # curl -s answers 4xx quietly: a 5xx or an unknown route in an example is a bug.
        assert "internal_server_error" not in out.stdout, f"{block}: {out.stdout[-2000:]}"


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


def _inline_commands() -> list[tuple[str, list[str]]]:
    """``evaldock …`` commands quoted inline in the prose (`evaldock serve --mode mock`)."""
    found = []
    for page in pages():
        spans = re.findall(r"`(evaldock [^`]+)`", prose(page))
        # A pattern such as `evaldock <vendor> …` is prose, not a command.
        concrete = [s for s in spans if not re.search(r"<\w+>|…", s)]
        where = f"{page.relative_to(ROOT)} (inline)"
        found += [(where, shlex.split(" ".join(span.split()))[1:]) for span in concrete]
    return found


def _all_commands() -> list[tuple[str, list[str]]]:
    commands = [
        (str(block), args) for block in _of("bash") for args in _evaldock_commands(block.body)
    ]
    return commands + _inline_commands()


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

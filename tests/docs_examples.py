"""The fenced blocks of README.md and docs/**/*.md, and how each one is checked or run.

The words after a block's language say what tests/test_readme.py does with it (the
convention is documented in docs/architecture.md#tests):

- ``python run``: run with the server's own interpreter against the live mock server;
- ``python run-client``: run with the official clients' interpreter
  (``EVALDOCK_CLIENTS_PYTHON``); skipped, saying so, when there is none;
- ``python pytest``: run as a pytest module (the package's plugin starts its server);
- ``bash run``: run with ``bash -e``, the server's ``evaldock`` first on PATH;
- ``shown: <why>``: only compiled (Python) or command-checked (bash);
- ``<mode> pending: <issue item>`` (``python run-client pending: issue 18 Oxen``): skipped
  with that reason, a change still being made; delete ``pending: …`` once it is done.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# Pages in the order their examples run against the one shared server: the control
# plane's page resets everything, so it runs last.
_LAST = ("control-plane.md",)


def pages() -> list[Path]:
    found = sorted(DOCS.rglob("*.md"), key=lambda p: (p.name in _LAST, str(p)))
    return [README, *found]


_FENCE = re.compile(
    r"^```(?P<lang>[\w+-]*)[ \t]*(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S
)
RUN_MODES = ("run", "run-client", "pytest")
EXECUTABLE = ("python", "bash")


@dataclass(frozen=True)
class Block:
    page: Path
    lang: str
    info: str  # the words after the language
    body: str
    line: int  # of the opening fence, 1-based

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where} ({self.lang} {self.info})".replace(" )", ")")

    @property
    def mode(self) -> str:
        """``run``, ``run-client``, ``pytest``, ``shown`` or ``""`` (none said)."""
        word = self.info.split(" ", 1)[0].rstrip(":").strip()
        return word if word in (*RUN_MODES, "shown") else ""

    @property
    def reason(self) -> str:
        """Why a ``shown:`` block does not run."""
        return self.info.partition("shown:")[2].strip()

    @property
    def pending(self) -> str:
        """The issue item a runnable example waits for ("" when it runs now)."""
        return self.info.partition("pending:")[2].strip()


def blocks(page: Path | None = None) -> list[Block]:
    out: list[Block] = []
    for p in [page] if page else pages():
        text = p.read_text(encoding="utf-8")
        out += [
            Block(
                p,
                m["lang"].lower(),
                m["info"].strip(),
                m["body"],
                text.count("\n", 0, m.start()) + 1,
            )
            for m in _FENCE.finditer(text)
        ]
    return out


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


# -- running ------------------------------------------------------------------------------

_DOC_HOSTS = re.compile(r"\b(?:localhost|127\.0\.0\.1):8700\b")


def pointed_at(body: str, port: int) -> str:
    """The example with the documented address replaced by the live server's."""
    return _DOC_HOSTS.sub(f"127.0.0.1:{port}", body)


def run_block(
    block: Block,
    *,
    port: int,
    data_dir: Path,
    workdir: Path,
    home: Path,
    clients_python: str,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """Run one example in ``workdir`` (shared by the blocks of its page, in order)."""
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "evaldock-data"
    if not link.exists():
        link.symlink_to(data_dir)
    home.mkdir(parents=True, exist_ok=True)
    body = pointed_at(block.body, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALDOCK_")}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if block.mode != "pytest":  # the plugin starts its own server
        env.update(
            EVALDOCK_HOST="127.0.0.1",
            EVALDOCK_PORT=str(port),
            EVALDOCK_DATA=str(data_dir),
            EVALDOCK_MODE="mock",
        )
    script = workdir / f"example_{block.line}.{'sh' if block.lang == 'bash' else 'py'}"
    if block.mode == "pytest":
        script = workdir / f"test_example_{block.line}.py"
    script.write_text(body, encoding="utf-8")
    if block.lang == "bash":
        args = ["bash", "-e", script.name]
    elif block.mode == "pytest":
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
    elif block.mode == "run-client":
        args = [clients_python, script.name]
    else:
        args = [sys.executable, script.name]
    return subprocess.run(
        args,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

"""Scaffold a new surface from the echo test surface (moto's ``scripts/scaffold.py``).

    python scripts/new_surface.py acme [--root DIR]

writes ``openapi/acme.yaml``, ``server/acme/{__init__,provider,backend,jobs}.py``,
``server/acme/migrations/0001_acme.sql`` and ``tests/acme/{__init__,test_api}.py`` with
every ``echo`` renamed; it never overwrites a file that exists. The shape is every
surface's: the provider parses and renders, the backend decides and runs the jobs, the
heavy steps are task functions in ``jobs.py`` run in worker processes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "tests" / "echo"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")

INIT = '''"""The {name} surface."""

from evaldock.server.surface import JobKind, SurfaceDeclaration

from .backend import JOB_KIND, STATUSES, {cls}Backend, {cls}Settings
from .provider import {cls}Provider

SURFACE = SurfaceDeclaration(
    name="{name}",
    provider={cls}Provider,
    backend={cls}Backend,
    settings={cls}Settings,
    jobs={{JOB_KIND: JobKind({cls}Backend.run_job, STATUSES)}},
)
'''

FIXTURE = """from tests.echo.helpers import poll_item

AUTH = {{"Authorization": "Bearer test"}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        None,
        {{
            "server.data": str(tmp_path / "data"),
            "server.mode": "mock",
            "server.surfaces": ["{name}"],
        }},
        environ={{}},
    )
    with TestClient(create_app(settings)) as c:
        yield c


def poll_{name}(client: TestClient, item_id: str) -> dict:
    return poll_item(client, item_id, AUTH, "/{name}-v1/items/")
"""


def rename(text: str, name: str) -> str:
    cls = "".join(p.capitalize() for p in name.split("_"))
    return text.replace("Echo", cls).replace("ECHO", name.upper()).replace("echo", name)


def render(name: str) -> dict[str, str]:
    """Relative path -> text of every file the scaffold writes."""
    cls = "".join(p.capitalize() for p in name.split("_"))
    provider = rename((TEMPLATE / "provider.py").read_text(), name)
    test = (TEMPLATE / "test_api.py").read_text()
    head, _, rest = test.partition("# --- scaffold: fixture ---\n")
    _, _, tail = rest.partition("# --- scaffold: end ---\n")
    head = head.replace(
        "from starlette.testclient import TestClient\n",
        "from starlette.testclient import TestClient\n\n"
        "from evaldock.server.app import create_app\n"
        "from evaldock.server.load import load_settings\n",
    )
    tail = tail.replace("poll_item(client, ", f"poll_{name}(client, ")
    test_api = rename(head, name) + FIXTURE.format(name=name) + rename(tail, name)
    return {
        f"openapi/{name}.yaml": rename((TEMPLATE / "echo.yaml").read_text(), name),
        f"server/{name}/__init__.py": INIT.format(name=name, cls=cls),
        f"server/{name}/provider.py": provider,
        f"server/{name}/backend.py": rename((TEMPLATE / "backend.py").read_text(), name),
        f"server/{name}/jobs.py": rename((TEMPLATE / "jobs.py").read_text(), name),
        f"server/{name}/migrations/0001_{name}.sql": rename(
            (TEMPLATE / "migrations" / "0001_echo.sql").read_text(), name
        ),
        f"tests/{name}/__init__.py": "",
        f"tests/{name}/test_api.py": test_api,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="surface name: lower case, digits, underscores")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root to write into")
    args = parser.parse_args(argv)
    if not NAME.match(args.name) or args.name in ("echo", "evaldock"):
        parser.error(f"{args.name!r} is not a usable surface name (^[a-z][a-z0-9_]{{1,30}}$)")
    files = render(args.name)
    existing = [p for p in files if (args.root / p).exists()]
    if existing:
        print(f"refusing to overwrite: {', '.join(existing)}", file=sys.stderr)
        return 1
    for rel, text in files.items():
        path = args.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    print(f"next: describe the API in openapi/{args.name}.yaml; handlers are named by operationId")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

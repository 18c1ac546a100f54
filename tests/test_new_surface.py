"""scripts/new_surface.py writes a surface that parses, and never overwrites."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "new_surface.py"
EXPECTED = [
    "openapi/acme_lab.yaml",
    "server/acme_lab/__init__.py",
    "server/acme_lab/provider.py",
    "server/acme_lab/backend.py",
    "server/acme_lab/jobs.py",
    "server/acme_lab/migrations/0001_acme_lab.sql",
    "tests/acme_lab/test_api.py",
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_scaffold_writes_parseable_files(tmp_path: Path) -> None:
    r = _run("acme_lab", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for rel in EXPECTED:
        assert (tmp_path / rel).is_file(), rel
    doc = yaml.safe_load((tmp_path / "openapi/acme_lab.yaml").read_text())
    assert doc["x-evaldock"] == {
        "surface": "acme_lab",
        "prefix": "/acme_lab",
        "claims": ["/acme_lab-v1"],
    }
    assert "/acme_lab-v1/items" in doc["paths"]
    for rel in EXPECTED:
        if rel.endswith(".py"):
            text = (tmp_path / rel).read_text()
            compile(text, rel, "exec")
            assert "echo" not in text.replace("tests.echo.helpers", ""), rel
    provider = (tmp_path / "server/acme_lab/provider.py").read_text()
    assert "class AcmeLabProvider(Provider)" in provider
    backend = (tmp_path / "server/acme_lab/backend.py").read_text()
    assert "class AcmeLabBackend(Backend[AcmeLabSettings])" in backend
    assert 'JOB_KIND = "acme_lab.job"' in backend
    assert "await job.run_task(jobs.measure" in backend
    assert "def measure(ctx: TaskContext" in (tmp_path / "server/acme_lab/jobs.py").read_text()
    sql = (tmp_path / "server/acme_lab/migrations/0001_acme_lab.sql").read_text()
    assert "CREATE TABLE acme_lab_items" in sql


def test_scaffold_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "server/acme_lab/provider.py"
    target.parent.mkdir(parents=True)
    target.write_text("# mine\n")
    r = _run("acme_lab", "--root", str(tmp_path))
    assert r.returncode == 1
    assert "refusing to overwrite" in r.stderr
    assert target.read_text() == "# mine\n"
    assert not (tmp_path / "openapi/acme_lab.yaml").exists()


def test_scaffold_rejects_bad_names(tmp_path: Path) -> None:
    for name in ("Acme", "1x", "echo", "a-b"):
        assert _run(name, "--root", str(tmp_path)).returncode == 2, name

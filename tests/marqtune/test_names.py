"""Names users choose on the Marqtune surface (dataset names, dataSchema columns, model
names): printable and not path-like, else the vendor's 400 (names.name_problem)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from evaldock.server.cli import main

from .helpers import AUTH, SCHEMA, dataset_body

HOSTILE = [
    ("a\x00b", "U+0000"),
    ("invoice\u202efdp.exe", "U+202E"),
    ("line\nforged", "U+000A"),
    ("bad\ufffddecode", "U+FFFD"),
    ("\u2066isolate", "U+2066"),
    ("..", "'..'"),
    ("...", "'...'"),
    ("sets\\eval", "backslash"),
    ("../../etc", "'/'"),
]


@pytest.mark.parametrize(("name", "shown"), HOSTILE)
def test_hostile_dataset_names_are_a_400(client: TestClient, name: str, shown: str) -> None:
    r = client.post("/datasets", json=dataset_body(datasetName=name), headers=AUTH)
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["message"]
    assert r.json()["message"].startswith("datasetName ") and shown in r.json()["message"]
    assert client.get("/datasets", headers=AUTH).json()["datasets"] == []


@pytest.mark.parametrize(("name", "shown"), HOSTILE)
def test_hostile_column_names_are_a_400(client: TestClient, name: str, shown: str) -> None:
    schema = {**SCHEMA, name: "text"}
    r = client.post("/datasets", json=dataset_body(schema=schema), headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("dataSchema column ") and shown in r.json()["message"]
    assert client.get("/datasets", headers=AUTH).json()["datasets"] == []


def test_names_in_any_script_are_kept(client: TestClient) -> None:
    for name in ("eval set", "評価セット 2024-05", "קבוצת הערכה", "v2 (recall@10)"):
        created = client.post("/datasets", json=dataset_body(datasetName=name), headers=AUTH)
        assert created.status_code == 200, created.text
        shown = client.get(f"/datasets/{created.json()['datasetId']}", headers=AUTH).json()
        assert shown["datasetName"] == name


@pytest.mark.parametrize(("name", "shown"), HOSTILE)
def test_hostile_model_names_are_refused_by_add_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, shown: str
) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "epoch_1.pt").write_bytes(b"weights")
    data = ["marqtune", "--data", str(tmp_path / "data")]
    argv = [*data, "add-model", name, "--base-model", "ViT-B-32", "--checkpoints", str(folder)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "model name " in err and shown in err
    assert main([*data, "list-models"]) == 0
    assert "ViT-B-32" not in capsys.readouterr().out


def test_a_hostile_name_in_the_models_table_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "epoch_1.pt").write_bytes(b"weights")
    config = tmp_path / "evaldock.toml"
    config.write_text(
        f'[marqtune.models."tuned\\u202eexe"]\nbase_model = "ViT-B-32"\ncheckpoints = "{folder}"\n'
    )
    argv = ["marqtune", "--config", str(config), "--data", str(tmp_path / "data"), "list-models"]
    assert main(argv) == 2
    assert "U+202E" in capsys.readouterr().err

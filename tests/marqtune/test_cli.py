"""``evaldock marqtune ...`` with no server running: the commands open the surface's
backend over the data folder (the core's ``open_backend``) and leave it closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaldock.server.cli import main


def test_add_list_remove_through_the_main_command(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"epoch_{i}.pt").write_bytes(b"weights")
    data = ["marqtune", "--data", str(tmp_path / "data")]
    add = [*data, "add-model", "tuned", "--base-model", "ViT-B-32", "--checkpoints"]
    assert main([*add, str(folder)]) == 0
    model_id = capsys.readouterr().out.split()[2]
    assert main([*data, "list-models"]) == 0
    listed = capsys.readouterr().out
    assert f"{model_id}  tuned  base=ViT-B-32  checkpoints=epoch_1,epoch_2  (shared)" in listed
    assert main([*data, "remove-model", model_id]) == 0
    assert f"removed {model_id} (tuned)" in capsys.readouterr().out
    assert main([*data, "remove-model", model_id]) == 1
    assert "is not in the registered models" in capsys.readouterr().err
    # The surface's folder was made private, as the server makes it.
    assert (tmp_path / "data" / "marqtune").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[marqtune.models.broken]\ncheckpoints = "/nowhere"\n', "needs base_model"),
        (
            '[marqtune.models.lost]\nbase_model = "ViT-B-32"\ncheckpoints = "/nowhere"\n',
            "checkpoints folder not found",
        ),
    ],
)
def test_a_bad_models_table_is_refused_with_the_fix(
    tmp_path: Path, capsys, table: str, message: str
) -> None:
    config = tmp_path / "evaldock.toml"
    config.write_text(table)
    argv = ["marqtune", "--config", str(config), "--data", str(tmp_path / "data"), "list-models"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err

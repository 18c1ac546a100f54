"""Which model names a ranker can load, answered the same in mock and real mode, no torch.

``open_clip_catalog.json`` beside this file is open_clip's own listing
(``open_clip.list_models()`` and ``open_clip.list_pretrained()``), written once from the
installed version by ``python -m evaldock.engines.ranker.catalog`` and checked against it by
a ``models`` test. :func:`known_architectures` adds the architecture files of an installed
open_clip (read from its folder, not imported), architectures registered in this process
when open_clip is already imported, and the configured ``model_configs``;
:func:`is_known` says whether a name (with ``pretrained``) names weights the CLIP ranker
could load, so a mock evaluation refuses exactly the names a real one would.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from evaldock.engines.ranker.models import ModelSpec, parse_model

CATALOG_FILE = "open_clip_catalog.json"
# A Hugging Face repository id as the Hub names them (huggingface_hub's validate_repo_id):
# "name" or "namespace/name", each 1-96 of [A-Za-z0-9_.-] (the Hub's \b[\w.-]{1,96}\b,
# ASCII: the Hub takes no other letters), not starting or ending with "-" or ".", no
# "--" or "..", not ending ".git". Anything else ("hf-hub:/etc/passwd", "hf-hub:a/b/c")
# cannot be a repository, so no ranker could load it.
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HF_REPO_ID = re.compile(rf"(?:{_HF_PART}/)?{_HF_PART}")


def is_hf_repo_id(name: str) -> bool:
    """Whether ``name`` is a well-formed Hugging Face repository id (it may not exist)."""
    return (
        _HF_REPO_ID.fullmatch(name) is not None
        and "--" not in name
        and ".." not in name
        and not name.endswith(".git")
    )


@functools.cache
def catalog() -> dict[str, Any]:
    """``{"open_clip": version, "architectures": [...], "pretrained": {arch: [tag, ...]}}``."""
    text = (resources.files("evaldock.engines.ranker") / CATALOG_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _installed_configs() -> set[str]:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.origin:
        return set()
    return {p.stem for p in (Path(spec.origin).parent / "model_configs").glob("*.json")}


def _live() -> Any | None:
    """open_clip, when this process has imported it already (never imported here)."""
    return sys.modules.get("open_clip")


def known_architectures(extra_configs: Iterable[str] = ()) -> set[str]:
    """Architecture names: the catalog's, an installed open_clip's, those registered in
    this process, and ``extra_configs`` (architecture JSON files, or folders of them)."""
    names = set(catalog()["architectures"]) | _installed_configs()
    live = _live()
    if live is not None:
        names.update(live.list_models())
    for entry in extra_configs:
        path = Path(str(entry)).expanduser()
        if path.is_dir():
            names.update(p.stem for p in path.glob("*.json"))
        else:
            names.add(path.stem)
    return names


def pretrained_tags(arch: str) -> set[str]:
    """open_clip's pretrained tags for ``arch`` (normalised: lower case, ``_`` for ``-``)."""
    tags = set(catalog()["pretrained"].get(arch, ()))
    live = _live()
    if live is not None:
        tags.update(live.list_pretrained_tags_by_model(arch))
    return {t.lower().replace("-", "_") for t in tags}


def is_known(
    model: str,
    pretrained: str | None = None,
    *,
    extra_configs: Iterable[str] = (),
    checkpoints: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``model`` (with ``pretrained``) names weights the CLIP ranker could load.

    Known: an architecture with one of its pretrained tags or an existing checkpoint file;
    a name the ``checkpoints`` mapping points at an existing file or folder; a
    ``local-dir:`` folder holding ``open_clip_config.json``; any ``hf-hub:`` name spelled
    as a Hub repository id (whether it exists cannot be known offline). Unknown: anything
    else, including an architecture with no weights named, which the CLIP ranker would
    refuse to load.
    """
    archs = known_architectures(extra_configs)
    if pretrained and os.path.isfile(pretrained):
        beside = Path(pretrained).parent / f"{model.strip()}.json"
        if beside.is_file():  # an architecture shipped beside its checkpoint
            archs.add(beside.stem)
    try:
        spec = parse_model(model, pretrained, archs.__contains__)
    except ValueError:
        return False
    if not spec.file and _mapped(spec, checkpoints, archs):
        return True
    if spec.source == "hf-hub":
        return is_hf_repo_id(spec.name)
    if spec.source == "local-dir":
        return (Path(spec.name).expanduser() / "open_clip_config.json").is_file()
    if spec.name not in archs:
        return False
    if spec.file:
        return os.path.isfile(os.path.expanduser(spec.file))
    return spec.tag is not None and spec.tag in pretrained_tags(spec.name)


def _mapped(spec: ModelSpec, checkpoints: Mapping[str, str] | None, archs: set[str]) -> bool:
    for key, target in (checkpoints or {}).items():
        try:
            same = parse_model(str(key), None, archs.__contains__).key == spec.key
        except ValueError:
            continue
        if same:
            return os.path.exists(os.path.expanduser(str(target)))
    return False


def _write(path: Path) -> dict[str, Any]:
    import open_clip

    pretrained: dict[str, list[str]] = {}
    for arch, tag in open_clip.list_pretrained():
        pretrained.setdefault(arch, []).append(tag)
    data = {
        "open_clip": open_clip.__version__,
        "architectures": sorted(open_clip.list_models()),
        "pretrained": {arch: sorted(tags) for arch, tags in sorted(pretrained.items())},
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data


if __name__ == "__main__":  # regenerate the catalog from the installed open_clip
    written = _write(Path(__file__).with_name(CATALOG_FILE))
    print(
        f"{CATALOG_FILE}: open_clip {written['open_clip']}, "
        f"{len(written['architectures'])} architectures, "
        f"{sum(map(len, written['pretrained'].values()))} pretrained weights"
    )

"""Where a CLIP ranker's weights come from, decided before open_clip can touch the network.

:class:`WeightResolver` turns a client's model name (see :mod:`.models`) into a
:class:`Plan`: what to hand ``open_clip.create_model_and_transforms``. Local sources win:
the ``checkpoints`` mapping, then a checkpoint file, a ``local-dir:`` folder, the
open_clip / Hugging Face caches; a download is planned only when allowed and the host
answers, otherwise :class:`EngineUnavailable` says how to supply the weights locally.

Checkpoints are pickles, so they are read with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers: :func:`create_kwargs` asks open_clip
for that where it supports the flag (2.27 and later), and :func:`load_weights_only`
loads the file itself where it does not.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evaldock.engines.errors import EngineUnavailable

from .models import ModelSpec, parse_model

HF_HOST = "huggingface.co"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pth", "*.pt")
NAMES_HINT = (
    "name an open_clip architecture with weights (ViT-B-32/laion2b_s34b_b79k, "
    "Marqo/ViT-B-32.laion2b_s34b_b79k, or pretrained=<tag or checkpoint file>), "
    "hf-hub:<org/repo>, or local-dir:<folder>"
)


@dataclass
class Plan:
    """What to hand open_clip, decided before it can touch the network."""

    create_name: str  # architecture, "local-dir:..." or "hf-hub:..."
    pretrained: str | None = None  # checkpoint file or (download allowed) tag
    weights: str | None = None  # file whose hash goes in the signature, when known
    label: str = ""  # weights, for the signature
    kwargs: dict[str, Any] = field(default_factory=dict)


class WeightResolver:
    """Options: ``checkpoints``, ``checkpoints_table``, ``model_configs``,
    ``allow_download``, ``cache_dir`` (see :mod:`.clip`)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.checkpoints: Mapping[str, Any] = options.get("checkpoints") or {}
        self.model_configs = [str(p) for p in options.get("model_configs") or []]
        self.allow_download = bool(options.get("allow_download", True))
        self.cache_dir: str | None = options.get("cache_dir")
        self.checkpoints_table = str(
            options.get("checkpoints_table", "[engines.ranker.checkpoints]")
        )
        self._configs_added = False

    def _register_configs(self) -> None:
        import open_clip

        if self._configs_added:
            return
        for path in self.model_configs:
            if not Path(path).exists():
                raise EngineUnavailable(f"model config not found: {path}", hint="fix model_configs")
            open_clip.add_model_config(path)
        self._configs_added = True

    def parse(self, model: str, pretrained: str | None) -> ModelSpec:
        import open_clip

        self._register_configs()
        known = set(open_clip.list_models())
        if pretrained and model not in known and os.path.isfile(pretrained):
            # A checkpoint shipped beside its architecture file ("<model>.json").
            beside = Path(pretrained).parent / f"{model}.json"
            if beside.is_file():
                open_clip.add_model_config(beside)
                known = set(open_clip.list_models())
        try:
            return parse_model(model, pretrained, known.__contains__)
        except ValueError as exc:
            raise EngineUnavailable(str(exc), hint=NAMES_HINT) from None

    def plan(self, spec: ModelSpec, model: str) -> Plan:
        mapped = None if spec.file else self._mapped_checkpoint(spec)
        if mapped is not None:
            return self._local_plan(spec, mapped, model)
        if spec.source == "local-dir":
            return self._local_plan(spec, spec.name, model)
        if spec.source == "hf-hub":
            return self._hf_plan(spec, model)
        return self._builtin_plan(spec, model)

    def _mapped_checkpoint(self, spec: ModelSpec) -> str | None:
        import open_clip

        known = set(open_clip.list_models()).__contains__
        for key, target in self.checkpoints.items():
            try:
                if parse_model(str(key), None, known).key == spec.key:
                    return str(target)
            except ValueError:
                continue
        return None

    def _local_plan(self, spec: ModelSpec, target: str, model: str) -> Plan:
        path = Path(target).expanduser()
        if not path.exists():
            raise EngineUnavailable(
                f"local weights for '{model}' not found: {path}",
                hint=self.offline_hint(spec)
                if spec.source == "local-dir"
                else f"fix the path in {self.checkpoints_table}",
            )
        if path.is_dir() and (path / "open_clip_config.json").is_file():
            return Plan(
                f"local-dir:{path}", weights=weights_in(path), label=f"local-dir:{path.name}"
            )
        if spec.source != "builtin":
            raise EngineUnavailable(
                f"'{model}' needs a folder with open_clip_config.json and weights, got {path}",
                hint="download the whole model repository into one folder",
            )
        file = weights_in(path) if path.is_dir() else str(path)
        if file is None:
            raise EngineUnavailable(
                f"no checkpoint (*.safetensors, *.bin, *.pth, *.pt) in {path}",
                hint=f"point {self.checkpoints_table} at the checkpoint file",
            )
        return _file_plan(spec, file)

    def _builtin_plan(self, spec: ModelSpec, model: str) -> Plan:
        import open_clip

        if spec.name not in open_clip.list_models():
            raise EngineUnavailable(
                f"unknown ranker model '{model}'",
                hint=NAMES_HINT + "; a custom architecture needs its JSON in model_configs",
            )
        if spec.file:
            if not os.path.isfile(spec.file):
                raise EngineUnavailable(
                    f"checkpoint file not found: {spec.file}", hint="pass an existing file"
                )
            return _file_plan(spec, spec.file)
        if not spec.tag:
            raise EngineUnavailable(
                f"no weights named for '{model}'",
                hint=f"add a pretrained tag ({spec.name}/<tag>; known: "
                f"{_tags(spec.name)}) or pass a checkpoint path as pretrained",
            )
        cfg = open_clip.get_pretrained_cfg(spec.name, spec.tag)
        if not cfg:
            raise EngineUnavailable(
                f"unknown pretrained tag '{spec.tag}' for {spec.name}",
                hint=f"known tags: {_tags(spec.name)}; or pass a checkpoint path as pretrained",
            )
        cached = self._cached_tag_weights(cfg)
        if cached:
            return _file_plan(spec, cached)
        self._need_download(spec, model, _download_host(cfg))
        return Plan(spec.name, pretrained=spec.tag, label=spec.tag, kwargs=tag_kwargs(spec))

    def _hf_plan(self, spec: ModelSpec, model: str) -> Plan:
        folder = self._cached_hf_folder(spec.name)
        if folder:
            # The cached snapshot is exactly open_clip's local-dir layout: no network call.
            return Plan(f"local-dir:{folder}", weights=weights_in(Path(folder)), label="hf")
        self._need_download(spec, model, HF_HOST)
        return Plan(f"hf-hub:{spec.name}", label="hf")

    def _need_download(self, spec: ModelSpec, model: str, host: str) -> None:
        why = None
        if not self.allow_download:
            why = "downloads are off (allow_download = false)"
        elif os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            why = "HF_HUB_OFFLINE is set"
        elif not network_reachable(host):
            why = f"no network ({host} unreachable)"
        if why:
            raise EngineUnavailable(
                f"weights for ranker model '{model}' are not in the local cache and {why}",
                hint=self.offline_hint(spec),
            )

    def offline_hint(self, spec: ModelSpec) -> str:
        if spec.source == "local-dir":
            return "the folder must hold open_clip_config.json and the weights"
        if spec.source == "hf-hub":
            return (
                f"download the files of https://huggingface.co/{spec.name} into a folder and "
                f'register it: {self.checkpoints_table} "{spec.key}" = "/path/to/folder", '
                "or name the model local-dir:/path/to/folder"
            )
        source = _source_of(spec) if spec.tag else ""
        return (
            f"register a local checkpoint{f' ({source})' if source else ''}: "
            f'{self.checkpoints_table} "{spec.key}" = "/path/to/open_clip_pytorch_model.bin", '
            "or pass a checkpoint path as pretrained"
        )

    def _cached_tag_weights(self, cfg: Mapping[str, Any]) -> str | None:
        if cfg.get("file") and os.path.isfile(cfg["file"]):
            return str(cfg["file"])
        hub = cfg.get("hf_hub") or ""
        if hub:
            repo, filename = os.path.split(hub)
            names = (filename,) if filename else WEIGHT_FILES
            for name in names:
                found = _hf_cached(repo, name, self.cache_dir)
                if found:
                    return found
        url = cfg.get("url") or ""
        if url:
            folder = self.cache_dir or os.path.expanduser("~/.cache/clip")
            path = os.path.join(folder, os.path.basename(urlsplit(url).path))
            if os.path.isfile(path):
                return path
        return None

    def _cached_hf_folder(self, repo: str) -> str | None:
        config = _hf_cached(repo, "open_clip_config.json", self.cache_dir)
        if not config:
            return None
        folder = Path(config).parent
        return str(folder) if weights_in(folder) else None

    def weights_after_download(self, spec: ModelSpec) -> str | None:
        """The file a download just put in a cache (for the signature's hash)."""
        import open_clip

        if spec.source == "builtin" and spec.tag:
            return self._cached_tag_weights(open_clip.get_pretrained_cfg(spec.name, spec.tag))
        if spec.source == "hf-hub":
            folder = self._cached_hf_folder(spec.name)
            return weights_in(Path(folder)) if folder else None
        return None


# -- loading safely ----------------------------------------------------------------------


def create_kwargs(create: Any) -> dict[str, Any]:
    """``weights_only=True`` for open_clip's ``create`` function, where it takes the flag."""
    return {"weights_only": True} if "weights_only" in inspect.signature(create).parameters else {}


def load_weights_only(net: Any, file: str) -> None:
    """Load a checkpoint into ``net`` with ``torch.load(weights_only=True)`` (safetensors
    as they are), for open_clip versions that cannot be told to; open_clip's conversions of
    third-party layouts are not applied."""
    import torch

    if file.endswith(".safetensors"):
        from safetensors.torch import load_file

        state: Any = load_file(file, device="cpu")
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if state and next(iter(state)).startswith("module."):
        state = {k[len("module.") :]: v for k, v in state.items()}
    net.load_state_dict(state, strict=True)


# -- helpers -----------------------------------------------------------------------------


def _file_plan(spec: ModelSpec, file: str) -> Plan:
    plan = Plan(spec.name, pretrained=file, weights=file, label=Path(file).name)
    if spec.tag:
        plan.label = f"{spec.tag}={Path(file).name}"
        plan.kwargs = tag_kwargs(spec)
    return plan


def tag_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """The tag's training-time activation and preprocessing, also when loading from a file."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.tag or "")
    kwargs: dict[str, Any] = {}
    if cfg.get("quick_gelu") and not spec.name.endswith("-quickgelu"):
        kwargs["force_quick_gelu"] = True
    for ours, theirs in (
        ("image_mean", "mean"),
        ("image_std", "std"),
        ("image_interpolation", "interpolation"),
        ("image_resize_mode", "resize_mode"),
    ):
        if cfg.get(theirs) is not None:
            kwargs[ours] = cfg[theirs]
    return kwargs


def _tags(arch: str) -> str:
    import open_clip

    return ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"


def _source_of(spec: ModelSpec) -> str:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.tag or "")
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        return f"https://huggingface.co/{repo} file {filename or WEIGHT_FILES[1]}"
    return str(cfg.get("url") or "")


def _download_host(cfg: Mapping[str, Any]) -> str:
    if cfg.get("hf_hub"):
        return HF_HOST
    return urlsplit(str(cfg.get("url") or "")).hostname or HF_HOST


def _hf_cached(repo: str, filename: str, cache_dir: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    return found if isinstance(found, str) and os.path.isfile(found) else None


def weights_in(path: Path) -> str | None:
    """The weights file of a checkpoint path or model folder, if there is one."""
    if path.is_file():
        return str(path)
    for name in (*WEIGHT_FILES, "open_clip_pytorch_model.pth", "model.safetensors"):
        if (path / name).is_file():
            return str(path / name)
    for pattern in WEIGHT_GLOBS:
        found = sorted(path.glob(pattern))
        if found:
            return str(found[0])
    return None


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A quick TCP connect, so an offline machine fails in seconds, not after retries."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

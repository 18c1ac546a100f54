"""The CLIP ranker: open_clip models, offline first.

Options (all optional):

- ``model`` / ``pretrained``: load at construction (see :mod:`.models` for spellings);
  otherwise call :meth:`ClipRanker.load`.
- ``checkpoints``: ``{"ViT-B-32/laion2b_s34b_b79k": "/path/ckpt.bin", ...}``; any spelling
  of a model name as key, a checkpoint file or an open_clip folder (``open_clip_config.json``
  plus weights) as value. Consulted before any cache or download.
- ``checkpoints_table``: where users set that mapping, quoted in error hints.
- ``model_configs``: extra open_clip architecture JSON files or folders to register.
- ``allow_download`` (true): fetch weights missing from the local caches, when the host
  answers; otherwise fail at once with how to supply a local checkpoint.
- ``cache_dir``: open_clip / Hugging Face cache folder (their defaults otherwise).
- ``device`` ("auto": CUDA when available, else CPU), ``amp`` (true: fp16 autocast, GPU
  only), ``batch_size`` (256), ``workers`` (image decoding threads; 0 decodes inline),
  ``prefetch`` (batches decoded while one encodes: 2 on GPU, 0 on CPU).
- ``image_root``: folder that relative image paths are relative to.
- ``fetcher``: a ``callable(url) -> bytes`` for ``http(s)://`` images (none: refused).
- ``hash_weights`` (true): put the checkpoint's sha256 in :attr:`signature`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import EngineError, EngineUnavailable, require
from .base import FieldRanker
from .images import read_image_bytes
from .models import ModelSpec, parse_model
from .retrieval import topk_cosine

DEFAULT_BATCH = 256
# Batches prepared while one encodes. On CPU the encoder already uses every core, and
# decoding beside it oversubscribes them (torch's threads then wait on each other), so
# there batches are decoded in parallel *between* encodes instead.
GPU_PREFETCH = 2
HF_HOST = "huggingface.co"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pth", "*.pt")


@dataclass
class _Plan:
    """What to hand open_clip, decided before it can touch the network."""

    create_name: str  # architecture, "local-dir:..." or "hf-hub:..."
    pretrained: str | None = None  # checkpoint file or (download allowed) tag
    weights: str | None = None  # file whose hash goes in the signature, when known
    label: str = ""  # weights, for the signature
    kwargs: dict[str, Any] = field(default_factory=dict)


class ClipRanker(FieldRanker):
    def __init__(self, options: Mapping[str, Any]) -> None:
        require("open_clip", purpose="the CLIP ranker")
        require("torch", purpose="the CLIP ranker")
        require("PIL", purpose="the CLIP ranker")
        self.options = dict(options)
        self.batch_size = int(options.get("batch_size") or DEFAULT_BATCH)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        self.workers = int(options.get("workers", min(4, os.cpu_count() or 1)))
        self.allow_download = bool(options.get("allow_download", True))
        self.cache_dir: str | None = options.get("cache_dir")
        self.checkpoints_table = str(
            options.get("checkpoints_table", "[engines.ranker.checkpoints]")
        )
        self.fetcher: Callable[[str], bytes] | None = options.get("fetcher")
        self.image_root: str | None = options.get("image_root")
        self.hash_weights = bool(options.get("hash_weights", True))
        self.device_name = self._pick_device(str(options.get("device") or "auto"))
        gpu = self.device_name.startswith("cuda")
        self.amp = bool(options.get("amp", True)) and gpu
        self.prefetch = int(options.get("prefetch", GPU_PREFETCH if gpu else 0))
        self.model_name = ""
        self.signature = "ranker:clip|model:-"
        self.dim = 0
        self.model: Any = None
        self._configs_added = False
        if options.get("model"):
            self.load(str(options["model"]), options.get("pretrained"))

    # -- loading ---------------------------------------------------------------------

    @staticmethod
    def _pick_device(wanted: str) -> str:
        import torch

        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(
                f"device '{wanted}' requested but torch sees no CUDA device",
                hint='set device = "auto" or "cpu", or install a CUDA build of torch',
            )
        return wanted

    def _register_configs(self) -> None:
        import open_clip

        if self._configs_added:
            return
        for path in self.options.get("model_configs") or []:
            if not Path(path).exists():
                raise EngineUnavailable(f"model config not found: {path}", hint="fix model_configs")
            open_clip.add_model_config(path)
        self._configs_added = True

    def _parse(self, model: str, pretrained: str | None) -> ModelSpec:
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
            raise EngineUnavailable(str(exc), hint=_NAMES_HINT) from None

    def load(self, model: str, pretrained: str | None = None) -> None:
        """Load weights (replacing any loaded model); EngineUnavailable when impossible."""
        import open_clip
        import torch

        spec = self._parse(model, pretrained)
        plan = self._plan(spec, model)
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(
                plan.create_name,
                pretrained=plan.pretrained,
                device=self.device_name,
                precision="fp32",
                cache_dir=self.cache_dir,
                **plan.kwargs,
            )
            tokenizer = open_clip.get_tokenizer(plan.create_name, cache_dir=self.cache_dir)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineUnavailable(
                f"could not load ranker model '{model}': {exc}", hint=self._offline_hint(spec)
            ) from exc
        net.eval()
        self.model, self.preprocess, self.tokenizer = net, preprocess, tokenizer
        self.spec = spec
        self.model_name = model
        with torch.inference_mode():
            self.dim = int(net.encode_text(tokenizer([""]).to(self.device_name)).shape[-1])
        weights = plan.weights or self._cached_weights_after_download(spec)
        digest = _sha256(weights)[:12] if weights and self.hash_weights else "-"
        self.signature = (
            f"ranker:clip|model:{spec.key}|weights:{plan.label}|sha256:{digest}"
            f"|device:{self.device_name}|precision:{'amp-fp16' if self.amp else 'fp32'}"
            f"|open_clip:{open_clip.__version__}"
        )

    def _plan(self, spec: ModelSpec, model: str) -> _Plan:
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
        for key, target in (self.options.get("checkpoints") or {}).items():
            try:
                if parse_model(str(key), None, known).key == spec.key:
                    return str(target)
            except ValueError:
                continue
        return None

    def _local_plan(self, spec: ModelSpec, target: str, model: str) -> _Plan:
        path = Path(target).expanduser()
        if not path.exists():
            raise EngineUnavailable(
                f"local weights for '{model}' not found: {path}",
                hint=self._offline_hint(spec)
                if spec.source == "local-dir"
                else f"fix the path in {self.checkpoints_table}",
            )
        if path.is_dir() and (path / "open_clip_config.json").is_file():
            return _Plan(
                f"local-dir:{path}", weights=_weights_in(path), label=f"local-dir:{path.name}"
            )
        if spec.source != "builtin":
            raise EngineUnavailable(
                f"'{model}' needs a folder with open_clip_config.json and weights, got {path}",
                hint="download the whole model repository into one folder",
            )
        file = _weights_in(path) if path.is_dir() else str(path)
        if file is None:
            raise EngineUnavailable(
                f"no checkpoint (*.safetensors, *.bin, *.pth, *.pt) in {path}",
                hint=f"point {self.checkpoints_table} at the checkpoint file",
            )
        return self._file_plan(spec, file)

    def _file_plan(self, spec: ModelSpec, file: str) -> _Plan:
        plan = _Plan(spec.name, pretrained=file, weights=file, label=Path(file).name)
        if spec.tag:
            plan.label = f"{spec.tag}={Path(file).name}"
            plan.kwargs = _tag_kwargs(spec)
        return plan

    def _builtin_plan(self, spec: ModelSpec, model: str) -> _Plan:
        import open_clip

        if spec.name not in open_clip.list_models():
            raise EngineUnavailable(
                f"unknown ranker model '{model}'",
                hint=_NAMES_HINT + "; a custom architecture needs its JSON in model_configs",
            )
        if spec.file:
            if not os.path.isfile(spec.file):
                raise EngineUnavailable(
                    f"checkpoint file not found: {spec.file}", hint="pass an existing file"
                )
            return self._file_plan(spec, spec.file)
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
            return self._file_plan(spec, cached)
        self._need_download(spec, model, _download_host(cfg))
        return _Plan(spec.name, pretrained=spec.tag, label=spec.tag, kwargs=_tag_kwargs(spec))

    def _hf_plan(self, spec: ModelSpec, model: str) -> _Plan:
        folder = self._cached_hf_folder(spec.name)
        if folder:
            # The cached snapshot is exactly open_clip's local-dir layout: no network call.
            return _Plan(f"local-dir:{folder}", weights=_weights_in(Path(folder)), label="hf")
        self._need_download(spec, model, HF_HOST)
        return _Plan(f"hf-hub:{spec.name}", label="hf")

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
                hint=self._offline_hint(spec),
            )

    def _offline_hint(self, spec: ModelSpec) -> str:
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
        return str(folder) if _weights_in(folder) else None

    def _cached_weights_after_download(self, spec: ModelSpec) -> str | None:
        import open_clip

        if spec.source == "builtin" and spec.tag:
            return self._cached_tag_weights(open_clip.get_pretrained_cfg(spec.name, spec.tag))
        if spec.source == "hf-hub":
            folder = self._cached_hf_folder(spec.name)
            return _weights_in(Path(folder)) if folder else None
        return None

    # -- embedding -------------------------------------------------------------------

    def _need_model(self) -> None:
        if self.model is None:
            raise EngineError("no ranker model loaded: call load(model, pretrained) first")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _encode(
        self,
        n: int,
        prepare: Callable[[ThreadPoolExecutor, int, int], Callable[[], Any]],
        encode: Callable[[Any], Any],
    ) -> np.ndarray:
        """Run ``encode`` over batches prepared in threads, ``self.prefetch`` batches ahead."""
        import torch
        import torch.nn.functional as F

        out = np.empty((n, self.dim), dtype=np.float32)
        starts: Iterator[int] = iter(range(0, n, self.batch_size))
        pool = ThreadPoolExecutor(max(1, self.workers), thread_name_prefix="ranker")
        try:
            pending: deque[tuple[int, Callable[[], Any]]] = deque()

            def fill() -> None:
                while len(pending) <= self.prefetch:
                    start = next(starts, None)
                    if start is None:
                        return
                    stop = min(start + self.batch_size, n)
                    pending.append((start, prepare(pool, start, stop)))

            fill()
            with torch.inference_mode(), self._autocast():
                while pending:
                    start, ready = pending.popleft()
                    batch = ready().to(self.device_name, non_blocking=True)
                    if self.prefetch:
                        fill()  # the next batches decode while this one encodes
                    feats = F.normalize(encode(batch).float(), dim=-1)
                    if not self.prefetch:
                        fill()
                    out[start : start + feats.shape[0]] = feats.cpu().numpy()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32, L2-normalised; texts longer than the context are truncated."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]

        def prepare(pool: ThreadPoolExecutor, start: int, stop: int) -> Callable[[], Any]:
            return pool.submit(self.tokenizer, texts[start:stop]).result

        self._need_model()
        return self._encode(len(texts), prepare, self.model.encode_text)

    def embed_images(self, refs: Sequence[str]) -> np.ndarray:
        """(N, D) float32, L2-normalised; refs are paths, file:// or data: URIs."""
        import torch

        refs = list(refs)

        def prepare(pool: ThreadPoolExecutor, start: int, stop: int) -> Callable[[], Any]:
            if self.workers <= 0:
                return lambda: torch.stack([self._pixels(r) for r in refs[start:stop]])
            futures: list[Future[Any]] = [pool.submit(self._pixels, r) for r in refs[start:stop]]
            return lambda: torch.stack([f.result() for f in futures])

        self._need_model()
        return self._encode(len(refs), prepare, self.model.encode_image)

    def _pixels(self, ref: str) -> Any:
        from PIL import Image

        data = read_image_bytes(ref, fetcher=self.fetcher, root=self.image_root)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return self.preprocess(image)
        except Exception as exc:  # PIL raises many types for bad files
            shown = ref if len(ref) <= 120 else ref[:120] + "..."
            raise EngineError(f"cannot decode image {shown}: {exc}") from exc

    def topk(self, queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # numpy beats torch's CPU kernels here (measured); the GPU wins when there is one.
        device = self.device_name if self.device_name.startswith("cuda") else None
        return topk_cosine(queries, docs, k, device=device)


_NAMES_HINT = (
    "name an open_clip architecture with weights (ViT-B-32/laion2b_s34b_b79k, "
    "Marqo/ViT-B-32.laion2b_s34b_b79k, or pretrained=<tag or checkpoint file>), "
    "hf-hub:<org/repo>, or local-dir:<folder>"
)


def _tag_kwargs(spec: ModelSpec) -> dict[str, Any]:
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


def _weights_in(path: Path) -> str | None:
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


def _sha256(path: str) -> str:
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

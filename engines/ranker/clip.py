"""The CLIP ranker: open_clip models, offline first. Where the weights come from is
:mod:`.weights`'s business; this module loads the model, encodes and ranks.

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

Threads share one loaded model through :meth:`~.base.FieldRanker.using`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from evaldock.engines.errors import EngineError, EngineUnavailable, require
from evaldock.engines.signature import Signature

from .base import FieldRanker
from .images import read_image_bytes
from .retrieval import topk_cosine
from .weights import WeightResolver, create_kwargs, load_weights_only, sha256

DEFAULT_BATCH = 256
# Batches prepared while one encodes. On CPU the encoder already uses every core, and
# decoding beside it oversubscribes them (torch's threads then wait on each other), so
# there batches are decoded in parallel *between* encodes instead.
GPU_PREFETCH = 2


class ClipRanker(FieldRanker):
    implementation = "clip"

    def __init__(self, options: Mapping[str, Any]) -> None:
        require("open_clip", purpose="the CLIP ranker")
        require("torch", purpose="the CLIP ranker")
        require("PIL", purpose="the CLIP ranker")
        super().__init__(options)
        self.batch_size = int(options.get("batch_size") or DEFAULT_BATCH)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        self.workers = int(options.get("workers", min(4, os.cpu_count() or 1)))
        self.resolver = WeightResolver(options)
        self.cache_dir: str | None = options.get("cache_dir")
        self.fetcher: Callable[[str], bytes] | None = options.get("fetcher")
        self.image_root: str | None = options.get("image_root")
        self.hash_weights = bool(options.get("hash_weights", True))
        self.device_name = self._pick_device(str(options.get("device") or "auto"))
        gpu = self.device_name.startswith("cuda")
        self.amp = bool(options.get("amp", True)) and gpu
        self.prefetch = int(options.get("prefetch", GPU_PREFETCH if gpu else 0))
        self.model_name = ""
        self.signature = Signature.of("ranker", "clip", model="-").format()
        self.dim = 0
        self.model: Any = None
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

    def _load(self, model: str, pretrained: str | None) -> None:
        import open_clip
        import torch

        spec = self.resolver.parse(model, pretrained)
        plan = self.resolver.plan(spec, model)
        create = open_clip.create_model_and_transforms
        safe = create_kwargs(create)
        # An open_clip that cannot be told weights_only=True gets no file: we load it.
        by_hand = None
        if not safe and plan.pretrained is not None and os.path.isfile(plan.pretrained):
            by_hand = plan.pretrained
        try:
            net, _, preprocess = create(
                plan.create_name,
                pretrained=None if by_hand else plan.pretrained,
                device=self.device_name,
                precision="fp32",
                cache_dir=self.cache_dir,
                **safe,
                **plan.kwargs,
            )
            if by_hand:
                load_weights_only(net, by_hand)
            tokenizer = open_clip.get_tokenizer(plan.create_name, cache_dir=self.cache_dir)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineUnavailable(
                f"could not load ranker model '{model}': {exc}",
                hint=self.resolver.offline_hint(spec),
            ) from exc
        net.eval()
        self.model, self.preprocess, self.tokenizer = net, preprocess, tokenizer
        self.spec = spec
        self.model_name = model
        with torch.inference_mode():
            self.dim = int(net.encode_text(tokenizer([""]).to(self.device_name)).shape[-1])
        weights = plan.weights or self.resolver.weights_after_download(spec)
        digest = sha256(weights)[:12] if weights and self.hash_weights else "-"
        self.signature = Signature.of(
            "ranker",
            "clip",
            model=spec.key,
            weights=plan.label,
            sha256=digest,
            device=self.device_name,
            precision="amp-fp16" if self.amp else "fp32",
            open_clip=open_clip.__version__,
        ).format()

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


if TYPE_CHECKING:  # mypy proves the class serves what the server calls
    from evaldock.engines.protocols import Ranker

    def _ranker(engine: ClipRanker) -> Ranker:
        return engine

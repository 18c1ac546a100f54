"""Model names as clients write them, parsed into what open_clip needs. No torch here.

Accepted spellings (``is_arch`` says which names are open_clip architectures):

- ``"ViT-B-32"`` with ``pretrained`` a tag (``"laion2b_s34b_b79k"``) or a checkpoint file;
- ``"ViT-B-32/laion2b_s34b_b79k"``, ``"ViT-B-32:laion2b_s34b_b79k"`` (open_clip's listing);
- Marqo's ``"Marqo/ViT-B-32.laion2b_s34b_b79k"``;
- ``"hf-hub:org/repo"``, or a bare ``"org/repo"`` whose first part is not an architecture
  (``"Marqo/marqo-ecommerce-embeddings-B"``);
- ``"local-dir:/folder"``: open_clip's layout, ``open_clip_config.json`` plus weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Source = Literal["builtin", "hf-hub", "local-dir"]
SCHEMAS: tuple[Source, ...] = ("local-dir", "hf-hub")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


@dataclass(frozen=True)
class ModelSpec:
    source: Source
    name: str  # architecture (builtin), repo id (hf-hub) or folder (local-dir)
    tag: str | None = None  # builtin: pretrained tag, normalised as open_clip does
    file: str | None = None  # builtin: checkpoint file to load instead of the tag's download

    @property
    def key(self) -> str:
        """Canonical spelling, used to match the ``checkpoints`` mapping."""
        if self.source == "hf-hub":
            return f"hf-hub:{self.name}"
        if self.source == "local-dir":
            return f"local-dir:{os.path.abspath(self.name)}"
        return f"{self.name}/{self.tag}" if self.tag else self.name


def looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith((".", "~"))
        or value.lower().endswith(CHECKPOINT_SUFFIXES)
        or os.path.exists(value)
    )


def parse_model(model: str, pretrained: str | None, is_arch: Callable[[str], bool]) -> ModelSpec:
    """Split a client's model name (and optional pretrained tag/file) into a :class:`ModelSpec`.

    A tag inside the name and a different ``pretrained`` tag conflict (ValueError); a
    ``pretrained`` file keeps the name's tag for preprocessing.
    """
    model = model.strip()
    pretrained = pretrained.strip() if pretrained and pretrained.strip() else None
    if not model:
        raise ValueError("empty model name")
    for schema in SCHEMAS:
        if model.startswith(schema + ":"):
            if pretrained:
                raise ValueError(f"'{model}' brings its own weights; pretrained does not apply")
            return ModelSpec(schema, _nonempty(model[len(schema) + 1 :], model))
    arch, tag = _split_arch_tag(model, is_arch)
    if arch is None:
        if pretrained:
            raise ValueError(f"'{model}' brings its own weights; pretrained does not apply")
        return ModelSpec("hf-hub", model)
    if pretrained and looks_like_path(pretrained):
        # The name's tag (if any) still says how the weights were trained: preprocessing.
        return ModelSpec("builtin", arch, _clean(tag) if tag else None, pretrained)
    if tag and pretrained and _clean(tag) != _clean(pretrained):
        raise ValueError(f"model '{model}' names weights '{tag}' but pretrained is '{pretrained}'")
    chosen = pretrained or tag
    return ModelSpec("builtin", arch, _clean(chosen) if chosen else None)


def _split_arch_tag(model: str, is_arch: Callable[[str], bool]) -> tuple[str | None, str | None]:
    if is_arch(model):
        return model, None
    for sep in ("/", ":"):
        head, found, tail = model.partition(sep)
        if found and tail and is_arch(head):
            return head, tail
    _org, found, rest = model.partition("/")
    if found and "/" not in rest:
        # Marqo-style "<org>/<arch>.<tag>"; arch names have no dots, tags none either.
        head, dot, tail = rest.partition(".")
        if dot and tail and is_arch(head):
            return head, tail
        return None, None
    if "/" not in model and "." in model:
        head, _, tail = model.partition(".")
        if is_arch(head):
            return head, tail
    if "/" not in model:
        # Not a known architecture nor an org/repo id: report it as an unknown model.
        return model, None
    return None, None


def _clean(tag: str) -> str:
    return tag.lower().replace("-", "_")


def _nonempty(value: str, model: str) -> str:
    if not value.strip():
        raise ValueError(f"nothing after the schema in '{model}'")
    return value.strip()

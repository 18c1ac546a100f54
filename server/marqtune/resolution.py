"""Which weights an evaluation request names, resolved to what the ranker loads.

A request may name open_clip architectures and pretrained tags, ``hf-hub:`` names,
models registered with evaldock (by id or name, with an ``epoch_N`` checkpoint) and
``local-dir:`` folders inside the directories ``[marqtune] weight_dirs`` lists. It never
names an arbitrary server path: in real mode that path would reach ``torch.load``, and
a 202 for an existing folder against a 400 for a missing one would tell any key holder
which directories exist. Unlisted and absent paths therefore get the same 400.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaldock.engines.ranker.models import parse_model

from .errors import bad_request, invalid_checkpoint, model_not_found
from .registry import CHECKPOINT_NAME, ModelEntry, ModelRegistry
from .store import is_uuid

# A pretrained tag as open_clip names them (laion2b_s34b_b79k, openai): never a path.
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


@dataclass(frozen=True)
class ResolvedModel:
    display: str  # as the evaluation reports it: the base name or "{modelId}/{checkpoint}"
    load_model: str  # what the ranker loads
    load_pretrained: str | None = None
    model_id: str | None = None
    checkpoint: str | None = None


class ModelResolver:
    def __init__(
        self,
        registry: ModelRegistry,
        base_overrides: Mapping[str, str],
        weight_dirs: Sequence[str],
        knows: Callable[[str, str | None], bool],
        architectures: Callable[[], set[str]],
    ) -> None:
        self.registry = registry
        self.base_overrides = dict(base_overrides)
        self.weight_dirs = [Path(d).expanduser().resolve() for d in weight_dirs]
        # The ranker's word on (model, pretrained): could it load those weights?
        self.knows = knows
        self.architectures = architectures

    def _base_override(self, model: str) -> str | None:
        if model in self.base_overrides:
            return self.base_overrides[model]
        is_arch = self.architectures().__contains__
        try:
            key = parse_model(model, None, is_arch).key
        except ValueError:
            return None
        for name, path in self.base_overrides.items():
            try:
                if parse_model(name, None, is_arch).key == key:
                    return path
            except ValueError:
                continue
        return None

    def _allowed_dir(self, raw: str) -> bool:
        """A ``local-dir:`` folder inside a configured weight directory, that exists."""
        try:
            path = Path(raw).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        inside = any(path == root or root in path.parents for root in self.weight_dirs)
        return inside and path.is_dir()

    def base(self, model: str, pretrained: str | None) -> ResolvedModel:
        override = None if pretrained else self._base_override(model)
        if override is not None:
            if (Path(override) / "open_clip_config.json").is_file():
                return ResolvedModel(display=model, load_model=f"local-dir:{override}")
            return ResolvedModel(display=model, load_model=model, load_pretrained=override)
        if pretrained is not None and not _TAG.match(pretrained):
            raise model_not_found(model)
        try:
            spec = parse_model(model, pretrained, self.architectures().__contains__)
        except ValueError:
            raise model_not_found(model) from None
        if spec.source == "local-dir":
            if not self._allowed_dir(spec.name):
                raise model_not_found(model)
        elif not self.knows(model, pretrained):
            raise model_not_found(model)
        return ResolvedModel(
            display=model, load_model=model, load_pretrained=pretrained, checkpoint=pretrained
        )

    @staticmethod
    def tuned(entry: ModelEntry, checkpoint: str | None) -> ResolvedModel:
        available = list(entry.checkpoints)
        checkpoint = checkpoint or available[-1]  # no checkpoint named: the latest
        if checkpoint not in entry.checkpoints:
            raise invalid_checkpoint(available)
        path = entry.checkpoints[checkpoint]
        if not os.path.isfile(path):
            raise bad_request(
                f"Checkpoint {checkpoint} of model {entry.id} is missing its file; "
                "restore it or register the model again"
            )
        return ResolvedModel(
            display=f"{entry.id}/{checkpoint}",
            load_model=entry.base_model,
            load_pretrained=path,
            model_id=entry.id,
            checkpoint=checkpoint,
        )

    async def resolve(self, body: Mapping[str, Any], tenant: str) -> ResolvedModel:
        model = body["model"].strip()
        model_type = body.get("modelType")
        # Old clients send `checkpoint`: a registered model's epoch_N, or an open_clip
        # pretrained tag; never a path.
        legacy_checkpoint = (body.get("checkpoint") or "").strip() or None
        if model_type == "open_clip":
            return self.base(model, legacy_checkpoint)
        if model_type == "hugging_face":
            name = model if model.startswith("hf-hub:") else f"hf-hub:{model}"
            return self.base(name, None)
        head, _, tail = model.partition("/")
        checkpoint = legacy_checkpoint or (tail or None)
        if is_uuid(head) or model_type == "marqtuned":
            entry = await self.registry.get(head, tenant) if is_uuid(head) else None
            entry = entry or await self.registry.by_name(head, tenant)
            if entry is None:
                raise model_not_found(head)
            return self.tuned(entry, checkpoint)
        if not tail or CHECKPOINT_NAME.match(tail):
            # A registered model named in place of its id ("my-tuned/epoch_2").
            entry = await self.registry.by_name(head, tenant)
            if entry is not None:
                return self.tuned(entry, checkpoint)
        if tail and CHECKPOINT_NAME.match(tail):
            # "<modelId>/epoch_N" is how Marqtune names a tuned model's checkpoint (the
            # docs write "model_id/epoch_4"): with no such model it is the vendor's 400,
            # never a Hugging Face repository called "epoch_N" (mock mode evaluated it,
            # real mode failed it after a 202).
            raise model_not_found(head)
        return self.base(model, None)

"""Randomly initialised CLIPs for tests and benchmarks: no download, seconds to build.

:func:`build_tiny_clip` writes, into one folder, the architecture JSON (named after the
model, so :class:`~.clip.ClipRanker` finds it beside the checkpoint), the checkpoint, and
``open_clip_config.json``, so the same folder also loads as ``local-dir:<folder>``.
:func:`build_random_clip` does the same for any open_clip architecture (``ViT-B-32``):
real sizes and speed, meaningless vectors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

TINY_MODEL = "evaldock-tiny-clip"
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    # The default tokenizer (BPE vocabulary shipped inside open_clip) and its context.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CHECKPOINT = "open_clip_pytorch_model.bin"


def build_tiny_clip(dirpath: str | Path, seed: int = 0) -> tuple[str, str]:
    """Create the tiny model in ``dirpath``; returns ``(model_name, checkpoint_path)``.

    Load it as ``ClipRanker({"model": model_name, "pretrained": checkpoint_path})`` or
    ``ClipRanker({"model": f"local-dir:{dirpath}"})``. Also registers the architecture
    with open_clip in this process.
    """
    import open_clip

    folder = Path(dirpath)
    folder.mkdir(parents=True, exist_ok=True)
    arch = folder / f"{TINY_MODEL}.json"
    arch.write_text(json.dumps(TINY_CONFIG, indent=2))
    open_clip.add_model_config(arch)
    return build_random_clip(folder, TINY_MODEL, seed)


def build_random_clip(dirpath: str | Path, model_name: str, seed: int = 0) -> tuple[str, str]:
    """Random weights for a registered open_clip architecture, saved as a checkpoint."""
    import open_clip
    import torch

    folder = Path(dirpath)
    folder.mkdir(parents=True, exist_ok=True)
    previous = logging.root.manager.disable
    # open_clip warns that the model is randomly initialised: here that is the point.
    logging.disable(logging.WARNING)
    try:
        # fork_rng: a fixed seed without disturbing the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    finally:
        logging.disable(previous)
    checkpoint = folder / CHECKPOINT
    torch.save(model.state_dict(), checkpoint)
    local = {
        "model_cfg": open_clip.get_model_config(model_name),
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
        },
    }
    (folder / "open_clip_config.json").write_text(json.dumps(local, indent=2))
    return model_name, str(checkpoint)

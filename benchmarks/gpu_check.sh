#!/usr/bin/env bash
# The prepared CUDA check (under 9 minutes): device agreement, export across devices, the bench
# table for batch 32/128/512/2048 x fp32/bf16/fp16, eager and TorchScript, inference precision,
# and the encoder model's training and inference (SEQTAG_ENCODER=DIR: a pretrained encoder, else
# one of MiniLM's shape with random weights). Needs torch with CUDA, numpy, tqdm, transformers and
# tokenizers in the current Python; runs seqtag from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, numpy, tqdm, transformers, tokenizers; assert torch.cuda.is_available(), 'no CUDA device'"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 540 python benchmarks/gpu_check.py

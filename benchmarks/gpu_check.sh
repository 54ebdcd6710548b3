#!/usr/bin/env bash
# The prepared CUDA check (under 8 minutes): device agreement, export across devices, and the
# bench table for batch 32/128/512/2048 x fp32/bf16/fp16, eager and TorchScript.
# Needs torch with CUDA, numpy and tqdm in the current Python; runs seqtag from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, numpy, tqdm; assert torch.cuda.is_available(), 'no CUDA device'" 
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 480 python benchmarks/gpu_check.py

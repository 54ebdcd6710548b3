"""Time the CRF's training cost and Viterbi decoding against another revision of seqtag/model/crf.py.

Training cost is ``CRF.forward(emissions, tags, mask).sum().backward()`` (the negative
log-likelihood and its gradient); decoding is ``CRF.decode(emissions, mask)``. The shapes are
those of the default EWT tagger: batch 32 for training, 256 for inference, sentence lengths
bucketed (every sentence of a batch within 3 tokens of ``seq_len``), 17 tags (UPOS, no
constraints) and 13 (BIO over 6 entity types, constrained). The two implementations run
interleaved, call by call, in one process, so that a busy machine slows both alike; medians
of many calls are printed in milliseconds.

    python benchmarks/bench_crf.py                      # this checkout against git HEAD
    python benchmarks/bench_crf.py --against main~3     # ... against another revision
    python benchmarks/bench_crf.py --profile train      # torch.profiler table of this checkout

Run it from the repository root (``PYTHONPATH=$PWD``). Not part of any test run.
"""

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SHAPES = [(32, 10, 17), (32, 25, 17), (32, 40, 17), (32, 60, 17), (32, 40, 13)]
DECODE_SHAPES = [(32, 40, 17), (256, 10, 17), (256, 40, 17), (256, 40, 13)]
BIO_13 = ["O"] + [f"{p}-{kind}" for kind in "ABCDEF" for p in "BI"]


def host() -> str:
    """CPU model, cores, threads, torch version and load: numbers mean nothing without them."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{model}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load}"
    )


def load_revision(revision: str):
    """The ``seqtag.model.crf`` module of a git revision, imported under another name."""
    for where in ("seqtag/model/crf.py", "seqtag/crf.py"):  # the module's path since 0.3.0, before
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{where}"], capture_output=True, text=True)
        if shown.returncode == 0:
            break
    shown.check_returncode()
    source = shown.stdout
    path = Path(tempfile.mkdtemp()) / "crf_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("crf_at_revision", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_crfs(modules, num_tags: int):
    """The same CRF (parameters and constraints) built by each module."""
    torch.manual_seed(0)
    crfs = [module.CRF(num_tags) for module in modules]
    if num_tags == 13:
        constraints = modules[0].allowed_transitions(BIO_13, "bio")
        for crf in crfs:
            crf.set_constraints(*constraints)
    for crf in crfs[1:]:
        crf.load_state_dict(crfs[0].state_dict())
    return crfs


def make_batch(batch_size: int, seq_len: int, num_tags: int):
    """Emissions ``(batch_size, seq_len, num_tags)`` of an untrained tagger's size, random tags
    and a prefix mask with lengths in ``[seq_len - 3, seq_len]`` (a bucketed batch)."""
    lengths = torch.randint(max(1, seq_len - 3), seq_len + 1, (batch_size,))
    lengths[0] = seq_len
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)
    emissions = 3 * torch.randn(batch_size, seq_len, num_tags)
    tags = torch.randint(num_tags, (batch_size, seq_len))
    return emissions, tags, mask


def train_call(crf, emissions, tags, mask):
    emissions = emissions.detach().requires_grad_(True)
    crf.zero_grad(set_to_none=True)
    crf(emissions, tags, mask).sum().backward()


def decode_call(crf, emissions, tags, mask):
    with torch.no_grad():
        crf.decode(emissions, mask)


def interleaved(calls, args, repeats: int, warmup: int = 5) -> list[float]:
    """Median milliseconds of each call, the calls alternating (order rotated each repeat)."""
    times = [[] for _ in calls]
    for _ in range(warmup):
        for call in calls:
            call(*args)
    for r in range(repeats):
        for i in range(len(calls)):
            j = (i + r) % len(calls)
            begin = time.perf_counter()
            calls[j](*args)
            times[j].append(time.perf_counter() - begin)
    return [1000 * statistics.median(t) for t in times]


def check_equal(crfs, args) -> None:
    """The implementations must agree before their times mean anything (to 1e-3: float32
    sums over a batch's tokens, e.g. the transitions' gradient, differ by ~1e-4)."""
    emissions, tags, mask = args
    results = []
    for crf in crfs:
        e = emissions.detach().requires_grad_(True)
        crf.zero_grad(set_to_none=True)
        nll = crf(e, tags, mask)
        nll.sum().backward()
        with torch.no_grad():
            results.append((nll, e.grad, crf.transitions.grad, crf.decode(emissions, mask)))
    for other in results[1:]:
        for a, b in zip(results[0][:3], other[:3], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
        assert torch.equal(results[0][3], other[3]), "decoded paths differ"


def profile(kind: str, shape) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profiler

    import seqtag.model.crf

    (crf,) = make_crfs([seqtag.model.crf], shape[2])
    args = make_batch(*shape)
    call = train_call if kind == "train" else decode_call
    for _ in range(5):
        call(crf, *args)
    with run_profiler(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            call(crf, *args)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", default="HEAD", help="git revision to compare with (HEAD)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per case (200)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--profile", choices=["train", "decode"], help="profile this checkout only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    import seqtag.model.crf

    print(host())
    torch.manual_seed(0)
    if args.profile:
        profile(args.profile, (32, 40, 17) if args.profile == "train" else (256, 40, 17))
        return
    modules = [load_revision(args.against), seqtag.model.crf]
    print(f"{'':8} {'shape':>12} {args.against:>12} {'this':>10} {'speed-up':>9}")
    cases = [("train", TRAIN_SHAPES, train_call), ("decode", DECODE_SHAPES, decode_call)]
    for kind, shapes, call in cases:
        for shape in shapes:
            crfs = make_crfs(modules, shape[2])
            batch = make_batch(*shape)
            check_equal(crfs, batch)
            calls = [lambda *a, crf=crf, call=call: call(crf, *a) for crf in crfs]
            old, new = interleaved(calls, batch, args.repeats)
            label = "x".join(map(str, shape))
            print(f"{kind:8} {label:>12} {old:10.3f}ms {new:8.3f}ms {old / new:8.2f}x")


if __name__ == "__main__":
    main()

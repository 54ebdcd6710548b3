"""Draw tokens/s against batch size from ``seqtag bench --json`` outputs.

    python benchmarks/plot_throughput.py bench_fp32.json bench_bf16.json --out docs/img/throughput.png

The runs must come from one host (their ``host`` records agree on the CPU model and the GPU):
numbers from different hosts are not drawn side by side. The title names the host.
"""

import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSON files written by 'seqtag bench --json'")
    parser.add_argument("--out", required=True)
    return parser


def host_name(run: dict) -> str | None:
    """The CPU model (and GPU) of a run's ``host`` record; None for runs made before it existed."""
    host = run.get("host")
    if host is None:
        return None
    return host["cpu_model"] + (f", {host['cuda_device']}" if host.get("cuda_device") else "")


def main() -> None:
    args = build_parser().parse_args()
    runs = []
    for path in args.results:
        with open(path) as f:
            runs.append(json.load(f))
    hosts = {host_name(run) for run in runs}
    if len(hosts) > 1:
        sys.exit(f"plot_throughput: the runs come from different hosts ({', '.join(map(str, sorted(hosts, key=str)))}); "
                 "plot one host at a time")
    host = hosts.pop()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in runs:
        rows = sorted(run["results"], key=lambda r: r["batch_size"])
        sizes = [r["batch_size"] for r in rows]
        label = f"{run['precision']}, {run['threads']} threads"
        ax.plot(sizes, [r["train_tokens_per_s"] for r in rows], "o-", label=f"train, {label}")
        ax.plot(sizes, [r["infer_tokens_per_s"] for r in rows], "s--", label=f"inference, {label}")
        if "baseline_train_tokens_per_s" in run:
            ax.axhline(run["baseline_train_tokens_per_s"], color="gray", lw=0.8, ls=":",
                       label="train, per-sentence loop (tutorial)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (sentences)")
    ax.set_ylabel("tokens/s")
    ax.set_title(f"seqtag default model on {run['device']}" + (f" ({host})" if host else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()

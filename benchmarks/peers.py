"""seqtag's defaults against its peers on UD English-EWT UPOS: spaCy's tagger and flair's
SequenceTagger, each trained by its own loop with its own early stopping, one at a time.

    python benchmarks/peers.py --threads 2 --max-train-seconds 1800 --out peers.json --plot docs/img/peers.png
    python benchmarks/peers.py --train-sentences 500 --max-train-seconds 60 --out smoke.json
    python benchmarks/peers.py --from-report peers.json --plot docs/img/peers.png   # table and plot again

Each peer runs in a virtual environment this script makes under ``--venv-dir`` (pinned
versions; flair's gets the CPU build of torch first); seqtag runs from this checkout in the
Python that runs this script. A driver per system (benchmarks/peers/*_run.py) trains, keeps
the system's own best model, and tags dev and test; this script scores every system's tags with
one scorer and reports, per system: the dev accuracy that the system's own evaluation logged
during training against the seconds since its process started (start-up and data preparation
included), final dev and test accuracy, training tokens/s (training steps only: the tokens
trained on over the time spent in training steps, evaluation and checkpoint writes excluded)
and end-to-end inference tokens/s (token strings in, tag strings out, the saved model loaded,
the test set, median of ``--infer-repeats`` passes after one untimed pass). One JSON document
(with ``host_info()``) goes to ``--out``; ``--plot`` draws dev accuracy against time.

Everything runs on the CPU. Not part of the tests: a full run takes about an hour on two cores
(at most about 1 h 40 min with a 30-minute cap). Nothing else should run on the machine
meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import seqtag  # noqa: E402
from seqtag.host import host_info  # noqa: E402

DRIVERS = Path(__file__).resolve().parent / "peers"
CORPORA = Path(os.environ.get("SEQTAG_CORPORA", ROOT.parent / "shared" / "corpora"))
FILES = {"train": "en_ewt-ud-train.conllu", "dev": "en_ewt-ud-dev.conllu", "test": "en_ewt-ud-test.conllu"}
SYSTEMS = ("seqtag", "spacy", "flair")
# What each peer's environment installs, group after group. torch==2.13.0 first: pip keeps that
# CPU build for flair instead of pulling a CUDA build of several GB.
REQUIREMENTS = {
    "spacy": [["spacy==3.8.18"]],
    "flair": [["torch==2.13.0"], ["flair==0.15.1"]],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, run in this order (default: {','.join(SYSTEMS)})")
    parser.add_argument("--corpus-dir", type=Path, default=CORPORA / "ud_english_ewt",
                        help="folder with the EWT .conllu files (default: $SEQTAG_CORPORA/ud_english_ewt)")
    parser.add_argument("--max-train-seconds", type=float, default=None,
                        help="stop each system's training after this many seconds since its start "
                        "(default: each stops by its own early stopping)")
    parser.add_argument("--train-sentences", type=int, default=None,
                        help="train on the first N training sentences (smoke runs; default: all)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of each system (default: 2)")
    parser.add_argument("--infer-repeats", type=int, default=3, help="timed inference passes (default: 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed for flair (seqtag and spaCy keep their defaults)")
    parser.add_argument("--out", type=Path, default=Path("peers.json"), help="the JSON report (default: peers.json)")
    parser.add_argument("--plot", type=Path, default=None, help="draw dev accuracy against time into this PNG")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/peers"),
                        help="data, models and logs of each system (default: runs/peers)")
    parser.add_argument("--venv-dir", type=Path, default=ROOT / ".peers-venv",
                        help="where the peers' virtual environments are made (default: .peers-venv)")
    parser.add_argument("--from-report", type=Path, metavar="REPORT",
                        help="run nothing: print the Markdown table of an earlier report (and draw --plot)")
    return parser


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_venv(name: str, venv_dir: Path) -> Path:
    """The Python of ``name``'s environment, made and installed unless a marker says it is."""
    venv = venv_dir / name
    python = venv / "bin" / "python"
    marker = venv / "peers-requirements.json"
    wanted = json.dumps(REQUIREMENTS[name])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log(f"{name}: making {venv} (minutes)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    with open(venv_dir / f"{name}-install.log", "w") as install_log:
        for group in REQUIREMENTS[name]:
            log(f"{name}: pip install {' '.join(group)}")
            done = subprocess.run([str(python), "-m", "pip", "install", *group],
                                  stdout=install_log, stderr=subprocess.STDOUT)
            if done.returncode:
                sys.exit(f"peers: installing {' '.join(group)} for {name} failed; see {install_log.name}")
    marker.write_text(wanted)
    return python


def prepare_data(args: argparse.Namespace, data_dir: Path) -> dict:
    """The splits as JSON lines (``tokens``, ``tags``: UPOS), the training set cut by
    ``--train-sentences``; their paths and sizes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, name in FILES.items():
        path = args.corpus_dir / name
        if not path.exists():
            sys.exit(f"peers: {path} not found (use --corpus-dir or set SEQTAG_CORPORA)")
        splits[split] = seqtag.read_conllu(path, column="upos")
    if args.train_sentences:
        splits["train"] = cut_training_set(splits["train"], args.train_sentences)
    out = {}
    for split, sentences in splits.items():
        target = data_dir / f"{split}.jsonl"
        with open(target, "w", encoding="utf-8") as f:
            for s in sentences:
                f.write(json.dumps({"tokens": list(s.tokens), "tags": list(s.tags)}) + "\n")
        out[split] = {"path": str(target), "sentences": len(sentences), "tokens": sum(len(s) for s in sentences)}
    return out


def cut_training_set(sentences: list, n: int) -> list:
    """The first ``n`` sentences, and for each tag they lack the first later sentence that has
    it (every system refuses or cannot learn a tag it never saw)."""
    cut = list(sentences[:n])
    seen = {t for s in cut for t in s.tags}
    for s in sentences[n:]:
        if set(s.tags) - seen:
            cut.append(s)
            seen |= set(s.tags)
    return cut


def accuracy(gold_path: str, predicted_path: Path) -> float:
    """Token accuracy of the predicted tags (one JSON list a line) against the gold split."""
    with open(gold_path, encoding="utf-8") as f:
        gold = [json.loads(line)["tags"] for line in f]
    with open(predicted_path, encoding="utf-8") as f:
        predicted = [json.loads(line) for line in f]
    if [len(p) for p in predicted] != [len(g) for g in gold]:
        raise ValueError(f"expected one tag per gold token in {predicted_path}, got other lengths")
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    return sum(g == p for g, p in pairs) / len(pairs)


def run_system(name: str, args: argparse.Namespace, data: dict) -> dict:
    out = (args.work_dir / name).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    python = Path(sys.executable) if name == "seqtag" else ensure_venv(name, args.venv_dir)
    job = {"data": {k: v["path"] for k, v in data.items()}, "out": str(out), "threads": args.threads,
           "max_train_seconds": args.max_train_seconds, "infer_repeats": args.infer_repeats, "seed": args.seed}
    (out / "job.json").write_text(json.dumps(job, indent=1))
    threads = str(args.threads)
    env = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                        "PYTHONUNBUFFERED": "1"}
    if name == "seqtag":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    log(f"{name}: training (log: {out / 'log.txt'})")
    start = time.perf_counter()
    env["PEERS_LAUNCHED"] = repr(time.time())
    with open(out / "log.txt", "w") as driver_log:
        done = subprocess.run([str(python), str(DRIVERS / f"{name}_run.py"), str(out / "job.json")],
                              stdout=driver_log, stderr=subprocess.STDOUT, env=env, cwd=out)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"peers: {name} failed (exit {done.returncode}); see {out / 'log.txt'}")
    result = json.loads((out / "result.json").read_text())
    curve = result.pop("curve")
    timing = result.pop("inference")
    report = {
        "version": result.pop("version"),
        "stopped": result.pop("stopped"),
        "train_seconds": result.pop("train_end"),
        "dev_accuracy": accuracy(data["dev"]["path"], out / "dev_pred.jsonl"),
        "test_accuracy": accuracy(data["test"]["path"], out / "test_pred.jsonl"),
        "best_logged_dev_accuracy": max((p["dev_accuracy"] for p in curve), default=None),
        "train_tokens_per_s": result["train_tokens"] / result["train_loop_seconds"],
        "infer_tokens_per_s": timing["tokens_per_s"],
        "infer_sentences_per_s": timing["sentences"] * len(timing["seconds"]) / sum(timing["seconds"]),
        "process_seconds": seconds,
        "curve": curve,
        "inference": timing,
        **result,
        "work_dir": str(out),
    }
    # The scored dev accuracy of the kept model should be the best one the system logged: a gap
    # means the saved model is not the one that was evaluated (or the scorers disagree).
    best = report["best_logged_dev_accuracy"]
    report["dev_gap_to_logged_best"] = None if best is None else report["dev_accuracy"] - best
    if best is not None and abs(report["dev_gap_to_logged_best"]) > 0.002:
        log(f"{name}: warning: the kept model scores {100 * report['dev_accuracy']:.2f} on dev, "
            f"its training log's best was {100 * best:.2f}")
    log(f"{name}: dev {100 * report['dev_accuracy']:.2f} test {100 * report['test_accuracy']:.2f} "
        f"after {report['train_seconds']:.0f}s ({report['stopped']}); train {report['train_tokens_per_s']:,.0f} "
        f"tok/s, inference {report['infer_tokens_per_s']:,.0f} tok/s")
    return report


def first_time_at(curve: list[dict], target: float) -> float | None:
    """Seconds until the logged dev accuracy first reached ``target`` (None: never)."""
    return next((p["t"] for p in curve if p["dev_accuracy"] >= target - 1e-12), None)


def time_to_targets(systems: dict) -> list[dict]:
    """For each system's best logged dev accuracy: when every system first reached it."""
    rows = []
    for owner, report in systems.items():
        target = report["best_logged_dev_accuracy"]
        if target is not None:
            rows.append({"target": f"{owner}'s best dev", "dev_accuracy": target,
                         "seconds": {name: first_time_at(r["curve"], target) for name, r in systems.items()}})
    return rows


def threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def markdown_table(report: dict) -> str:
    """The report as the Markdown table of docs/benchmarks.md, its host line first."""
    host, settings, systems = report["host"], report["settings"], report["systems"]
    names = list(systems)
    rates = host["matmul_gflops"]
    lines = [
        f"*Host: {host['cpu_model']}, {host['logical_cores']} logical cores, {threads(settings['threads'])}, "
        f"torch {host['torch_version']}; matmul {rates['fp32']:,.0f} GFLOP/s fp32, {rates['bf16']:,.0f} bf16. "
        f"Training on {report['corpus']['train']['sentences']:,} sentences"
        + (f", cap {settings['max_train_seconds']:g} s" if settings["max_train_seconds"] else "") + ".*",
        "",
        "| | " + " | ".join(f"{n} {systems[n]['version']}" for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]

    def row(label: str, cells) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("training stopped after", [f"{r['train_seconds']:,.0f} s ({r['stopped']})" for r in systems.values()])
    row("best dev accuracy in its own log", ["–" if r["best_logged_dev_accuracy"] is None
                                             else f"{100 * r['best_logged_dev_accuracy']:.2f}" for r in systems.values()])
    row("dev accuracy, kept model", [f"{100 * r['dev_accuracy']:.2f}" for r in systems.values()])
    row("test accuracy, kept model", [f"**{100 * r['test_accuracy']:.2f}**" for r in systems.values()])
    for target in report["time_to_dev"]:
        row(f"{target['target']} ({100 * target['dev_accuracy']:.2f}) reached after",
            ["never" if t is None else f"{t:,.0f} s" for t in target["seconds"].values()])
    row("training tokens/s", [f"{r['train_tokens_per_s']:,.0f}" for r in systems.values()])
    row("inference tokens/s, strings in, tags out", [f"{r['infer_tokens_per_s']:,.0f}" for r in systems.values()])
    row("loading the kept model", [f"{r['load_seconds']:.2f} s" for r in systems.values()])
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    best = []
    for name, r in report["systems"].items():
        points = r["curve"]
        if not points:  # stopped before its first dev evaluation
            continue
        ax.plot([p["t"] for p in points], [100 * p["dev_accuracy"] for p in points], "o-", ms=3,
                drawstyle="steps-post", label=f"{name} {r['version']} (test {100 * r['test_accuracy']:.2f})")
        best.append(100 * max(p["dev_accuracy"] for p in points))
    if best:
        ax.set_ylim(max(0.0, min(best) - 10), min(100.0, max(best) + 1))
    ax.set_xlabel("seconds since the start of training (process start-up included)")
    ax.set_ylabel("dev accuracy (%), each system's own log")
    host = report["host"]
    settings = report["settings"]
    title = f"UD English-EWT UPOS dev accuracy; {host['cpu_model']}, {threads(settings['threads'])}"
    if settings["train_sentences"]:
        title += f"\nsmoke run: {report['corpus']['train']['sentences']} training sentences"
    if settings["max_train_seconds"]:
        title += f", training capped at {settings['max_train_seconds']:g} s"
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    args = build_parser().parse_args()
    if args.from_report:
        report = json.loads(args.from_report.read_text())
        print(markdown_table(report))
        if args.plot:
            plot(report, args.plot)
        return
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        sys.exit(f"peers: expected --systems from {','.join(SYSTEMS)}, got {args.systems!r}")
    args.work_dir = args.work_dir.resolve()
    args.venv_dir = args.venv_dir.resolve()
    data = prepare_data(args, args.work_dir / "data")
    import torch

    torch.set_num_threads(args.threads)
    report = {
        "benchmark": "peers",
        "command": [Path(sys.executable).name, *sys.argv],
        "host": host_info(),
        "settings": {k: getattr(args, k) for k in ("threads", "max_train_seconds", "train_sentences",
                                                     "infer_repeats", "seed")},
        "corpus": data,
        "systems": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in systems:  # the report is rewritten after each system: a stopped run keeps what it measured
        report["systems"][name] = run_system(name, args, data)
        report["time_to_dev"] = time_to_targets(report["systems"])
        args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    log(f"report: {args.out}")
    print(markdown_table(report))
    if args.plot:
        plot(report, args.plot)
        log(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

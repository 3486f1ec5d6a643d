"""Some of the CPU sweep's runs trained again on another device, next to their committed CPU results.

    python bench/sweep_on_device.py --device cuda                       # vBoN at N = 4 and 16, seed 0
    python bench/sweep_on_device.py --device cpu --preset tiny --runs vbon:2:0   # seconds (what CI runs)

It checks the whole pipeline end to end on a device (sampling, rewards, CDFs, the RLOO step and the
held-out evaluation) with the sweep's own code and settings; only ``device`` differs. Sampling on
CUDA draws other random numbers than on a CPU, so the win rates agree only within their spread over
seeds (the CPU sweep's per-seed spread is printed beside them), not to the digit. It also prints the
seconds per run on each device: for the local backend's small model the GPU is latency-bound, so this
says how much the device helps the book's own chapter 5, not the paper-size run (bench/gpu_scale.py).
On a CPU it also prints, per run, the largest relative difference between all the numbers it recorded and
the committed run's: 0 when the run reproduces bit for bit.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
import sentiment_sweep as sweep  # noqa: E402
from results_io import check_device, parse_arguments, results_path, write_atomic  # noqa: E402


def parse_run(text: str) -> dict:
    """'vbon:16:0' -> dict(variant='vbon', n=16, seed=0)."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in sweep.METHODS:
        raise ValueError(f"--runs: expected METHOD:N:SEED with METHOD in {sweep.METHODS}, got {text!r}")
    if not (parts[1].isdigit() and int(parts[1]) >= 2 and parts[2].isdigit()):
        raise ValueError(f"--runs: in {text!r}, N must be a whole number >= 2 (beta = 1/(N-1)) and SEED a whole "
                         "number >= 0")
    return dict(variant=parts[0], n=int(parts[1]), seed=int(parts[2]))


def largest_difference(run, committed, skip=("train_seconds", "wall_seconds")) -> tuple[int, float]:
    """(how many numbers the two records share, their largest relative difference |a - b| / max(|a|, |b|)),
    over every number in both, curves included; timings are skipped."""
    if isinstance(run, dict) and isinstance(committed, dict):
        parts = [largest_difference(run[k], committed[k]) for k in run.keys() & committed.keys() if k not in skip]
    elif isinstance(run, list) and isinstance(committed, list) and len(run) == len(committed):
        parts = [largest_difference(a, b) for a, b in zip(run, committed)]
    elif isinstance(run, (int, float)) and isinstance(committed, (int, float)) and not isinstance(run, bool):
        scale = max(abs(run), abs(committed))
        return 1, 0.0 if run == committed else abs(run - committed) / scale
    else:
        return 0, 0.0 if run == committed else float("inf")
    return sum(c for c, _ in parts), max((w for _, w in parts), default=0.0)


def check_arguments(args: argparse.Namespace) -> None:
    check_device(args.device)
    args.runs = [parse_run(r) for r in args.runs.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=["cpu", "tiny"], default="cpu")
    parser.add_argument("--runs", default="vbon:4:0,vbon:16:0", help="comma-separated METHOD:N:SEED")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parse_arguments(parser, argv, check_arguments, files=("--json",))
    p = dict(sweep.PRESETS[args.preset], device=args.device)
    committed = results_path(f"sentiment_sweep_{args.preset}")
    recorded = json.loads(committed.read_text()) if committed.exists() else {}
    cpu = recorded.get("runs", {})
    # the committed learning rates (chosen on the validation prompts), else the grid's first for every method
    lr_choice = recorded.get("lr_choice") or {v: p["lr_grid"][0] for v in sweep.VARIANTS}

    t = time.time()
    sweep.start_worker(p)  # loads the task on the device and samples the reference sets there
    sweep._WORKER["lr_choice"] = lr_choice
    print(f"{args.device}: task and reference sets ready in {time.time() - t:.1f} s (preset {args.preset})")
    out = []
    for run in args.runs:
        t = time.time()
        r = sweep.train_and_score(run)
        r["wall_seconds"] = time.time() - t
        out.append(r)
        line = (f"{sweep.key(run):24s} {args.device}: KL(q||bon) {r['kl_to_bon']:.3f} ± {r['kl_to_bon_se']:.3f}, "
                f"win {r['win_rate']:.3f} ± {r['win_rate_se']:.3f}, KL k1 {r['kl_k1']:.2f}, {r['wall_seconds']:.1f} s")
        same = cpu.get(sweep.key(run))
        if same:
            seeds = [v["win_rate"] for v in cpu.values() if v["variant"] == run["variant"] and v["n"] == run["n"]]
            spread = f", seed spread sd {statistics.stdev(seeds):.3f}" if len(seeds) > 1 else ""
            line += (f" | cpu: KL(q||bon) {same['kl_to_bon']:.3f}, win {same['win_rate']:.3f} ± "
                     f"{same['win_rate_se']:.3f}, KL k1 {same['kl_k1']:.2f}, {same['train_seconds']:.1f} s{spread}")
            count, worst = largest_difference(r, same)
            line += (f"\n{'':24s} all {count} recorded numbers identical to the committed run" if worst == 0 else
                     f"\n{'':24s} {count} recorded numbers, largest relative difference from the committed run "
                     f"{worst:.1e}")
        print(line, flush=True)
    if args.json:
        write_atomic(args.json, out)


if __name__ == "__main__":
    main()

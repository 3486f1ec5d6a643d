"""The paper's sentiment sweep: every method at every N (beta = 1/(N-1)), over seeds, with standard errors.

    python experiments/sentiment_sweep.py                  # CPU preset (local backend), resumes; 2 workers
    python experiments/sentiment_sweep.py --preset gpu     # hub backend on a CUDA GPU
    python experiments/sentiment_sweep.py --preset tiny --out /tmp/s.json   # seconds: checks the script

For each N in {2, 4, 8, 16, 32} and seed, it trains from the reference with the one RLOO loop:
vBoN (tie-aware exact reward), vBoN-L (mid-rank bound), BoN-SFT (N samples per prompt, at the same
number of sampled sequences per step as the RL methods) and KL-RL with the raw reward at the same
beta = 1/(N-1). BoN(N) itself is measured from a pool of reference samples per held-out prompt. An
ablation trains vBoN at N = 4 with M in {8, 32, 128} reference samples per prompt. Every run is scored
on the held-out prompts (win rate against the prompt's references with ties counted half, mean reward,
KL(q || pi) by k1 and k3), with standard errors over prompts; the summary averages seeds, with the
standard error over seeds. It also counts how often each method lies on the reward-KL and
win-rate-KL Pareto frontiers, as the paper does, and the break-even number of answers after which
vBoN's training cost (reference and training samples) is repaid by sampling N times less than BoN.

One JSON file holds everything (settings, library version, backend, seeds, every run). It is rewritten
atomically after each run, and runs already in it are skipped, so an interrupted sweep resumes. Its
``provenance`` (a SHA-256 of the data folder, or the hub models' commits, and the minivbon and torch versions)
must match the current one to resume: runs made on other data or with other versions are never mixed. A
file without one (written before provenance was recorded) is resumed only with ``--adopt-legacy``, which
records the current provenance in it; its recorded library and torch versions must still match.

``--workers W`` trains W runs at once, in W processes of cores/W torch threads each (default: 2 for the
CPU preset on a machine with 2 or more cores, else 1). On 2 cores two single-threaded processes finish
about 1.5 times as many runs per minute as one process with two threads: the small model's operations
are too short to keep two threads busy. The thread count changes only the last digits of the sums: run
with 1 or 2 workers, the CPU preset's 69 runs had identical win rates and rewards and KL estimates within 1e-6.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
import minivbon as mv  # noqa: E402
from minivbon import sentiment  # noqa: E402
from minivbon.provenance import provenance, task_fingerprint  # noqa: E402
from results_io import check_resume, check_writable, write_atomic  # noqa: E402

PRESETS = {
    "cpu": dict(backend="local", device="cpu", max_new_tokens=16, n_train=64, n_test=256, m_train=64, m_test=16,
                n_pool=32, steps=30, prompts_per_step=8, k=8, lr=5e-4, samples_per_prompt=4,
                ns=[2, 4, 8, 16, 32], seeds=[0, 1, 2], ablation_n=4, ablation_ms=[8, 32, 128]),
    "gpu": dict(backend="hub", device="cuda", max_new_tokens=40, n_train=1024, n_test=512, m_train=300, m_test=32,
                n_pool=32, steps=500, prompts_per_step=32, k=4, lr=1e-5, samples_per_prompt=4, precision="bf16",
                ns=[2, 4, 8, 16, 32], seeds=[0, 1, 2], ablation_n=4, ablation_ms=[8, 32, 128]),
    "tiny": dict(backend="local", device="cpu", max_new_tokens=6, n_train=4, n_test=4, m_train=8, m_test=8,
                 n_pool=4, steps=2, prompts_per_step=2, k=2, lr=3e-4, samples_per_prompt=2,
                 ns=[2, 4], seeds=[0, 1], ablation_n=2, ablation_ms=[4]),
}
METHODS = ["vbon", "vbon-l", "bon-sft", "kl-rl", "bonbon", "jbond"]


def mean_se(x: torch.Tensor, groups: int) -> tuple[float, float]:
    """Mean of x and its standard error over ``groups`` equal blocks (prompts): samples of one prompt are
    correlated, so the block means are the independent units."""
    blocks = x.double().view(groups, -1).mean(1)
    return blocks.mean().item(), (blocks.std(unbiased=True) / math.sqrt(groups)).item() if groups > 1 else math.nan


def score(values: dict, groups: int) -> dict:
    out = {}
    for key, x in values.items():
        out[key], out[key + "_se"] = mean_se(x, groups)
    return out


def read_results(path: Path, settings: dict) -> dict:
    """The results file at ``path`` to resume ({} if there is none), checked before any training: JSON, a dict
    with ``runs`` a dict of run records and ``bon`` a dict, made with these ``settings``."""
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path} is not a readable JSON results file ({type(e).__name__}: {e}); delete it or use "
                         "--out for a new file") from None
    if not isinstance(results, dict):
        raise SystemExit(f"{path} holds a JSON {type(results).__name__}, not a sweep results file (an object with "
                         "settings and runs); delete it or use --out")
    if results.get("settings") != settings:
        raise SystemExit(f"{path} was made with other settings; use --out for a new file or delete it")
    runs, bon = results.get("runs", {}), results.get("bon", {})
    if not isinstance(runs, dict) or not all(isinstance(r, dict) and {"method", "n", "m", "seed"} <= set(r)
                                             for r in runs.values()):
        raise SystemExit(f"{path}: 'runs' must map run keys to run records (with method, n, m and seed); the file "
                         "is corrupt")
    if not isinstance(bon, dict):
        raise SystemExit(f"{path}: 'bon' must be a dict of BoN baselines by N; the file is corrupt")
    return results


def plan(p: dict) -> list[dict]:
    runs = [dict(method=m, n=n, m=p["m_train"], seed=s) for n in p["ns"] for s in p["seeds"] for m in METHODS]
    runs += [dict(method="vbon", n=p["ablation_n"], m=m, seed=s) for m in p["ablation_ms"] for s in p["seeds"]
             if m != p["m_train"]]
    return runs


def key(run: dict) -> str:
    return f"{run['method']}|N={run['n']}|M={run['m']}|seed={run['seed']}"


def bon_baseline(task, test_cdf, p: dict) -> dict:
    """BoN(N) on held-out prompts from a pool of n_pool reference samples per prompt, in disjoint groups of N."""
    pool = task.reference.sample([q for q in task.test_prompts for _ in range(p["n_pool"])],
                                 torch.Generator().manual_seed(2))
    rewards = task.reward_fn(pool).view(len(task.test_prompts), p["n_pool"])  # (P, pool)
    out = {}
    for n in [1] + [n for n in p["ns"] if n <= p["n_pool"]]:
        best = rewards.view(len(task.test_prompts), -1, n).max(-1).values  # (P, pool/N)
        ids = [q for q in task.test_prompts for _ in range(best.shape[1])]
        out[str(n)] = {**score({"reward": best.flatten(), "win_rate": test_cdf.win_rate(ids, best.flatten())},
                               len(task.test_prompts)),
                       "kl_bound": mv.bon_kl_bound(n), "samples": best.numel()}
    return out


def frontier_counts(points: list[tuple[str, float, float]], tol: float = 1e-4) -> dict:
    """How many of each method's points lie on the upper-left Pareto frontier of (KL, value).

    A point is dominated when another has KL no larger and value no smaller, one of them by more than
    ``tol``: points closer than that count as equal (vBoN and vBoN-L at N = 2 train on the same reward and
    their KL estimates differ only by rounding, about 1e-6), far below any standard error here.
    """
    counts = {}
    for name, kl, value in points:
        dominated = any(k2 <= kl + tol and v2 >= value - tol and (k2 < kl - tol or v2 > value + tol)
                        for _, k2, v2 in points)
        counts[name] = counts.get(name, 0) + (not dominated)
    return counts


def summarise(results: dict, p: dict) -> dict:
    """Seed means with standard errors over seeds, frontier counts, the M ablation, and the break-even cost."""
    table = {}
    for run in results["runs"].values():
        table.setdefault(f"{run['method']}|N={run['n']}|M={run['m']}", []).append(run)
    summary = {}
    for name, runs in sorted(table.items()):
        row = {"seeds": len(runs)}
        for metric in ["win_rate", "reward", "kl_k1", "kl_k3"]:
            x = torch.tensor([r[metric] for r in runs], dtype=torch.float64)
            row[metric] = x.mean().item()
            row[metric + "_se"] = (x.std() / math.sqrt(len(x))).item() if len(x) > 1 else math.nan
        summary[name] = row
    main = {k: v for k, v in summary.items() if k.endswith(f"M={p['m_train']}")}
    counts, with_bon = {}, {}
    for metric in ["reward", "win_rate"]:  # among the trained methods (as the paper counts), then with BoN too
        points = [(k.split("|")[0], v["kl_k1"], v[metric]) for k, v in main.items()]
        counts[metric] = frontier_counts(points)
        with_bon[metric] = frontier_counts(points + [("bon", b["kl_bound"], b[metric])
                                                     for n, b in results["bon"].items() if n != "1"])
    reference_samples = p["n_train"] * p["m_train"]
    training_samples = p["steps"] * p["prompts_per_step"] * p["k"]
    cost = {"reference_samples": reference_samples, "training_samples": training_samples,
            "break_even_answers": {str(n): (reference_samples + training_samples) / (n - 1) for n in p["ns"]}}
    return {"table": summary, "frontier_counts": counts, "frontier_counts_with_bon": with_bon, "cost": cost}


_WORKER: dict = {}  # what one process needs to train and score runs: the preset, the task, the CDFs


def load_task(p: dict):
    extra = {"precision": p["precision"]} if "precision" in p else {}
    return sentiment.load_task(p["backend"], device=p["device"], n_train=p["n_train"], n_test=p["n_test"],
                               max_new_tokens=p["max_new_tokens"], **extra)


def start_worker(p: dict, threads: int | None = None) -> None:
    """Load the task and the reference CDFs (from the on-disk cache the parent filled) into this process."""
    if threads:
        torch.set_num_threads(threads)
    task = load_task(p)
    ms = sorted({p["m_train"], *p["ablation_ms"]})
    _WORKER.update(p=p, task=task, test_cdf=sentiment.cached_reference_cdf(task, task.test_prompts, p["m_test"], seed=1),
                   cdfs={m: sentiment.cached_reference_cdf(task, task.train_prompts, m, seed=0) for m in ms})


def train_and_score(run: dict) -> dict:
    """Train one run from the reference and score it on the held-out prompts (in whichever process)."""
    p, task = _WORKER["p"], _WORKER["task"]
    beta = 1 / (run["n"] - 1)
    config = mv.TrainConfig(method=run["method"], n=run["n"], beta=beta if run["method"] == "kl-rl" else None,
                            k=p["k"], prompts_per_step=p["prompts_per_step"], steps=p["steps"], lr=p["lr"],
                            seed=run["seed"], ties="aware")
    torch.manual_seed(run["seed"])
    t = time.time()
    trainer = mv.train(task.reference.clone(trainable=True), task.reference, task.train_prompts, task.reward_fn,
                       config, cdf=_WORKER["cdfs"][run["m"]], progress=False)
    seconds = time.time() - t
    e = sentiment.evaluate_policy(task, trainer.policy, task.test_prompts, _WORKER["test_cdf"],
                                  p["samples_per_prompt"], seed=3)
    return {**run, "beta": beta, "train_seconds": seconds, "eval_samples": len(e["texts"]),
            **score(e["per_sample"], len(task.test_prompts))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, help="results file (default: experiments/results/sentiment_sweep_<preset>.json)")
    parser.add_argument("--workers", type=int, help="runs trained at once, one process each (default: 2 for the "
                        "CPU preset with 2 or more cores, else 1)")
    parser.add_argument("--adopt-legacy", action="store_true", help="resume a results file written before "
                        "provenance was recorded, recording the current data fingerprint in it")
    args = parser.parse_args()
    p = PRESETS[args.preset]
    cores = os.cpu_count() or 1
    workers = args.workers if args.workers is not None else (2 if args.preset == "cpu" and cores >= 2 else 1)
    if workers < 1:
        parser.error(f"--workers must be at least 1, got {workers}")
    out = args.out or ROOT / "experiments" / "results" / f"sentiment_sweep_{args.preset}.json"
    check_writable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"preset": args.preset, **p}
    results = read_results(out, settings)
    start_worker(p)  # the parent samples (and caches) the reference sets once, before any worker starts
    current = provenance(task_fingerprint(_WORKER["task"].settings))
    check_resume(results, current, out, args.adopt_legacy)
    results.setdefault("runs", {})
    results.update(settings=settings, backend=p["backend"], seeds=p["seeds"], workers=workers, provenance=current,
                   library_version=current["library_version"], torch=current["torch"])  # equal to any recorded
    t_start, earlier = time.time(), results.get("wall_seconds", 0.0)
    if "bon" not in results:
        results["bon"] = bon_baseline(_WORKER["task"], _WORKER["test_cdf"], p)
        write_atomic(out, results)
    todo = [r for r in plan(p) if key(r) not in results["runs"]]

    def record(result: dict) -> None:
        results["runs"][key(result)] = result
        results["wall_seconds"] = earlier + time.time() - t_start
        write_atomic(out, results)

    with tqdm(total=len(todo), desc="sweep", disable=not todo) as bar:
        if workers == 1 or len(todo) <= 1:
            for run in todo:
                record(train_and_score(run))
                bar.update()
        else:
            threads = max(1, cores // workers)
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=start_worker, initargs=(p, threads)) as pool:
                for done in as_completed([pool.submit(train_and_score, run) for run in todo]):
                    record(done.result())
                    bar.update()
    if todo:  # a session with nothing left to train (a re-summary) does not count as sweep time
        results["wall_seconds"] = earlier + time.time() - t_start
    results["summary"] = summarise(results, p)
    results["last_session_seconds"] = time.time() - t_start
    write_atomic(out, results)
    print_summary(results)


def print_summary(results: dict) -> None:
    s, p = results["summary"], results["settings"]
    print(f"{'method':8s} {'N':>3s}  {'win rate':>15s}  {'KL k1':>13s}  {'KL k3':>13s}  (mean ± s.e. over {len(p['seeds'])} seeds)")
    for n in p["ns"]:
        if str(n) in results["bon"]:
            b = results["bon"][str(n)]
            print(f"{'BoN':8s} {n:3d}  {b['win_rate']:.3f} ± {b['win_rate_se']:.3f}    <= {b['kl_bound']:.2f} (bound)")
        for m in METHODS:
            row = s["table"].get(f"{m}|N={n}|M={p['m_train']}")
            if row:
                print(f"{m:8s} {n:3d}  {row['win_rate']:.3f} ± {row['win_rate_se']:.3f}  "
                      f"{row['kl_k1']:6.2f} ± {row['kl_k1_se']:.2f}  {row['kl_k3']:6.2f} ± {row['kl_k3_se']:.2f}")
    print("frontier counts among the trained methods:", json.dumps(s["frontier_counts"]))
    print("frontier counts with BoN's points (at its KL bound):", json.dumps(s["frontier_counts_with_bon"]))
    print("break-even answers (vBoN training cost / samples saved per answer):",
          {n: round(v) for n, v in s["cost"]["break_even_answers"].items()})


if __name__ == "__main__":
    main()

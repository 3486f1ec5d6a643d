"""Chapter 5's sweep: every method trained until its own objective stops improving, scored by its distance to BoN.

    python experiments/sentiment_sweep.py                  # CPU preset (local backend), resumes; 2 workers
    python experiments/sentiment_sweep.py --preset gpu     # hub backend on a CUDA GPU
    python experiments/sentiment_sweep.py --preset tiny --out /tmp/s.json   # seconds: checks the script

Two phases, one results file.

1. Learning rates. Every method variant is trained at N = ``lr_n`` for ``lr_steps`` steps at each rate of
   ``lr_grid`` and scored on a *validation* split of the training prompts (prompts of the training file
   that are never trained on, with their own reference set and BoN pool). Each variant keeps the rate
   with the lowest validation objective at the end. Held-out prompts are never used to choose.
2. The sweep. vBoN (tie-aware exact reward), vBoN-L (mid-rank), BoN-SFT and KL-RL (raw reward, beta =
   1/(N-1)) at every N and seed; BoNBoN (alpha = 0.5 and its authors' 0.005) and J-BOND (log2 N hard rounds)
   at ``distill_ns``; KL-RL on monotone transforms of the reward (``transforms``), where vBoN would not
   move at all. Every run trains ``steps`` steps at the matched sampling budget and is scored every
   ``eval_every`` steps on the held-out prompts (minivbon.distance): KL(q || pi_bon), KL(pi_bon || q),
   the method's own objective, win rate, reward and KL(q || pi), each with its standard error over prompts.
   ``plateaued`` says whether the last two checkpoints of the objective agree within two standard errors
   of their difference (or 5%).

The held-out references (M = ``m_test``, two independent halves) give log pi_bon/pi; the same quantities
from one half show the estimator's bias at M/2. BoN(N) itself is measured from a separate pool of reference
samples per held-out prompt. ``summary`` (experiments/sweep_summary.py) holds seed means with standard
errors over seeds, win rates compared at matched KL, and Pareto-frontier counts, with bootstrap intervals.

The file is rewritten atomically after every run; runs already in it are skipped, so an interrupted sweep
resumes. Its ``provenance`` (a SHA-256 of the data folder or the hub models' commits, minivbon's and
torch's versions) must match the current one to resume. ``--workers W`` trains W runs at once in W
single-threaded processes (2 on a 2-core machine finish about 1.5 times as many runs per minute as one).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

import minivbon as mv
from minivbon import distance, methods, sentiment
from minivbon.objectives import EmpiricalCDF
from minivbon.provenance import provenance, task_fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import (add_run_arguments, check_count, check_resume, parse_arguments,  # noqa: E402
                        read_results as read_results_file, results_path, write_atomic)
from sweep_summary import plateaued, summarise  # noqa: E402

PRESETS = {
    "cpu": dict(backend="local", device="cpu", max_new_tokens=16, n_train=64, n_val=64, n_test=128, m_train=64,
                m_val=64, m_test=128, n_pool=128, val_pool=64, bon_per_prompt=4, samples_per_prompt=4,
                steps=200, eval_every=40, prompts_per_step=8, k=4, lr_grid=[5e-5, 1.5e-4, 5e-4], lr_n=4,
                lr_steps=100, lr_seed=100, ns=[2, 4, 8, 16, 32], seeds=[0, 1, 2], more_seeds={"4": [3, 4], "16": [3, 4]},
                distill_ns=[4, 16], transforms=["scaled", "cubed", "exp"], transform_ns=[4, 16], transform_seeds=[0, 1]),
    "gpu": dict(backend="hub", device="cuda", max_new_tokens=40, n_train=1024, n_val=128, n_test=512, m_train=300,
                m_val=64, m_test=128, n_pool=128, val_pool=64, bon_per_prompt=4, samples_per_prompt=4, precision="bf16",
                steps=1000, eval_every=100, prompts_per_step=32, k=4, lr_grid=[3e-6, 1e-5, 3e-5], lr_n=4,
                lr_steps=400, lr_seed=100, ns=[2, 4, 8, 16, 32], seeds=[0, 1, 2], more_seeds={"4": [3, 4], "16": [3, 4]},
                distill_ns=[4, 16], transforms=["scaled", "cubed", "exp"], transform_ns=[4, 16], transform_seeds=[0, 1]),
    "tiny": dict(backend="local", device="cpu", max_new_tokens=6, n_train=4, n_val=3, n_test=4, m_train=8,
                 m_val=8, m_test=8, n_pool=8, val_pool=8, bon_per_prompt=2, samples_per_prompt=2, steps=4,
                 eval_every=2, prompts_per_step=2, k=2, lr_grid=[3e-4, 1e-3], lr_n=4, lr_steps=2, lr_seed=100,
                 ns=[2, 4], seeds=[0], more_seeds={"4": [1]}, distill_ns=[4], transforms=["cubed"],
                 transform_ns=[4], transform_seeds=[0]),
}
CORE = ["vbon", "vbon-l", "bon-sft", "kl-rl"]
DISTILL = ["bonbon", "bonbon-a0.005", "jbond"]
# variant -> (method, settings); a transform variant is KL-RL on g(r) and takes KL-RL's learning rate
VARIANTS = {"vbon": ("vbon", {}), "vbon-l": ("vbon-l", {}), "bon-sft": ("bon-sft", {}), "kl-rl": ("kl-rl", {}),
            "bonbon": ("bonbon", {"alpha": 0.5}), "bonbon-a0.005": ("bonbon", {"alpha": 0.005}), "jbond": ("jbond", {})}
TRANSFORMS = {"scaled": lambda r: 4 * r, "cubed": lambda r: r**3, "exp": lambda r: torch.exp(3 * r)}
METHODS = list(VARIANTS) + [f"kl-rl-{t}" for t in TRANSFORMS]


def check_variants(variants: dict) -> None:
    """Every variant names a row of the methods table and sets only what that method reads."""
    for name, (method, settings) in variants.items():
        if not set(settings) <= set(methods.method(method).reads):
            raise ValueError(f"variant {name!r} sets {sorted(settings)}, but {method!r} reads only "
                             f"{methods.method(method).reads}")


check_variants(VARIANTS)
CURVE = ["objective", "kl_to_bon", "kl_from_bon", "win_rate", "kl_k1", "kl_k3", "reward"]  # every checkpoint
SCORES = CURVE + ["reward_g", "log_f_mid", "ipo", "kl_to_bon_half_m", "kl_from_bon_half_m"]  # the last one


def variant(name: str) -> tuple[str, dict, str | None]:
    """(method, settings, reward transform or None) of a variant name such as 'bonbon-a0.005' or 'kl-rl-cubed'."""
    if name.startswith("kl-rl-"):
        return "kl-rl", {}, name.removeprefix("kl-rl-")
    return (*VARIANTS[name], None)


def plan(p: dict) -> tuple[list[dict], list[dict]]:
    """(learning-rate runs, sweep runs), each a dict with variant, n, seed (and grid_lr for the first)."""
    lr_runs = [dict(variant=v, n=p["lr_n"], seed=p["lr_seed"], grid_lr=lr) for v in VARIANTS for lr in p["lr_grid"]]
    runs = [dict(variant=v, n=n, seed=s) for s in p["seeds"] for n in p["ns"] for v in CORE]
    runs += [dict(variant=v, n=n, seed=s) for s in p["seeds"] for n in p["distill_ns"] for v in DISTILL]
    runs += [dict(variant=v, n=int(n), seed=s) for n, seeds in p["more_seeds"].items() for s in seeds for v in CORE]
    runs += [dict(variant=f"kl-rl-{t}", n=n, seed=s) for s in p["transform_seeds"] for n in p["transform_ns"]
             for t in p["transforms"]]
    return lr_runs, runs


def key(run: dict) -> str:
    tail = f"|lr={run['grid_lr']:g}" if "grid_lr" in run else ""
    return f"{run['variant']}|N={run['n']}|seed={run['seed']}{tail}"


def read_results(path: Path, settings: dict) -> dict:
    """The results file at ``path`` to resume ({} if there is none), checked before any training (its provenance
    is checked once the task is loaded)."""
    results = read_results_file(path, settings, parts={"runs": dict, "lr_runs": dict},
                                fields=("variant", "n", "seed", "curve"))
    if not isinstance(results.get("bon", {}), dict):
        raise SystemExit(f"{path}: 'bon' must be a dict of BoN baselines by N; the file is corrupt")
    return results


_WORKER: dict = {}  # what one process needs: the preset, the task, the CDFs and pools, step-0 scores


def load_task(p: dict):
    extra = {"precision": p["precision"]} if "precision" in p else {}
    return sentiment.load_task(p["backend"], device=p["device"], n_train=p["n_train"] + p["n_val"],
                               n_test=p["n_test"], max_new_tokens=p["max_new_tokens"], **extra)


def merged(a: EmpiricalCDF, b: EmpiricalCDF) -> EmpiricalCDF:
    """The references of two CDFs over the same prompts, pooled."""
    return EmpiricalCDF({q: torch.cat([c.sorted[c.index[q], : int(c.counts[c.index[q]])] for c in (a, b)])
                         for q in a.index})


def start_worker(p: dict, threads: int | None = None) -> None:
    """Load the task, reference sets and BoN pools (from the on-disk cache the parent filled) into this process."""
    if threads:
        torch.set_num_threads(threads)
    task = load_task(p)
    train, val = task.train_prompts[: p["n_train"]], task.train_prompts[p["n_train"]:]
    half = p["m_test"] // 2
    test_a = sentiment.cached_reference_cdf(task, task.test_prompts, half, seed=1)
    test_b = sentiment.cached_reference_cdf(task, task.test_prompts, p["m_test"] - half, seed=6)
    _WORKER.update(p=p, task=task, train=train, step0={},
                   cdf=sentiment.cached_reference_cdf(task, train, p["m_train"], seed=0),
                   test=dict(prompts=task.test_prompts, cdf=merged(test_a, test_b), half=test_a,
                             pool=sentiment.cached_bon_pool(task, task.test_prompts, p["n_pool"], seed=2)),
                   val=dict(prompts=val, cdf=sentiment.cached_reference_cdf(task, val, p["m_val"], seed=4), half=None,
                            pool=sentiment.cached_bon_pool(task, val, p["val_pool"], seed=5)))


def score(method: str, cfg: mv.TrainConfig, per_prompt: dict) -> dict:
    """Means and standard errors over prompts of everything a checkpoint records (and the objective per prompt)."""
    name, objective = distance.method_objective(method, per_prompt, cfg.n, cfg.kl_coef, cfg.alpha, cfg.eta)
    out = {"objective_name": name, "objective_per_prompt": objective}
    for k, v in {"objective": objective, **per_prompt}.items():
        out[k], out[k + "_se"] = distance.mean_se(v)
    return out


def evaluator(method: str, cfg: mv.TrainConfig, split: str, transform: str | None):
    """evaluate(policy) -> the checkpoint's scores on ``split``; the untrained policy's are computed once per N."""
    p, task, data = _WORKER["p"], _WORKER["task"], _WORKER[split]
    g = TRANSFORMS[transform] if transform else None
    calls = [0]

    def evaluate(policy) -> dict:
        first, calls[0] = calls[0] == 0, calls[0] + 1
        cache = (split, cfg.n, transform)
        if first and cache in _WORKER["step0"]:
            return score(method, cfg, _WORKER["step0"][cache])
        d = distance.bon_distances(policy, task.reference, data["prompts"], task.reward_fn, data["cdf"], cfg.n,
                                   data["pool"], p["samples_per_prompt"], p["bon_per_prompt"],
                                   torch.Generator().manual_seed(3), reward_transform=g,
                                   other_cdfs={"half_m": data["half"]} if data["half"] is not None else None)
        if first:
            _WORKER["step0"][cache] = d
        return score(method, cfg, d)

    return evaluate


def train_and_score(run: dict) -> dict:
    """Train one run from the reference, scoring it every eval_every steps (in whichever process)."""
    p, task = _WORKER["p"], _WORKER["task"]
    method, settings, transform = variant(run["variant"])
    lr_run = "grid_lr" in run
    steps = p["lr_steps"] if lr_run else p["steps"]
    lr = run["grid_lr"] if lr_run else _WORKER["lr_choice"][run["variant"] if not transform else "kl-rl"]
    beta = 1 / (run["n"] - 1)
    given = beta if "beta" in methods.method(method).requires else None  # else the row's default, 1/(N-1)
    config = mv.TrainConfig(method=method, n=run["n"], beta=given, k=p["k"],
                            prompts_per_step=p["prompts_per_step"], steps=steps, lr=lr, seed=run["seed"],
                            eval_every=steps // 2 if lr_run else p["eval_every"], **settings)
    reward_fn = task.reward_fn if transform is None else (lambda s: TRANSFORMS[transform](task.reward_fn(s)))
    torch.manual_seed(run["seed"])
    t = time.time()
    trainer = mv.Trainer(task.reference.clone(trainable=True), task.reference, _WORKER["train"], reward_fn, config,
                         cdf=_WORKER["cdf"], evaluate=evaluator(method, config, "val" if lr_run else "test", transform))
    trainer.run(progress=False)
    points = [h for h in trainer.history if "objective" in h]
    curve = [{k: v for k, v in h.items() if k == "step" or k.removesuffix("_se") in CURVE} for h in points]
    diff = points[-1]["objective_per_prompt"] - points[-2]["objective_per_prompt"]  # same prompts: paired
    final = {k: v for k, v in points[-1].items() if k.removesuffix("_se") in SCORES}
    return {**run, "method": method, "lr": lr, "beta": config.kl_coef, "steps": steps,
            "train_seconds": time.time() - t, "objective_name": points[-1]["objective_name"], "curve": curve,
            "plateaued": plateaued(curve), "last_change_paired": distance.mean_se(diff), **final}


def bon_baseline(p: dict) -> dict:
    """BoN(N) on the held-out prompts: the best of each disjoint group of N in the pool, scored against the
    held-out references; ``kl_from_ref`` estimates KL(pi_bon || pi) = E_bon[log pi_bon/pi] (bound: kl_bound)."""
    test, out = _WORKER["test"], {}
    pool, cdf = test["pool"], test["cdf"]
    for n in [1] + [n for n in p["ns"] if n <= p["n_pool"]]:
        best, _ = pool.best_and_worst(n)
        ids = [pool.samples.prompt_ids[i] for i in best.tolist()]
        r = pool.rewards.flatten()[best]
        values = {"reward": r, "win_rate": cdf.win_rate(ids, r)}
        if n > 1:
            values["kl_from_ref"] = distance.log_bon_ratio_hat(cdf, ids, r, pool.log_ref.flatten()[best], n)
        row = {"kl_bound": mv.bon_kl_bound(n), "samples": len(best)}
        for k, v in values.items():
            row[k], row[k + "_se"] = distance.mean_se(distance.prompt_means(v, len(test["prompts"])))
        out[str(n)] = row
    return out


def choose_lr(results: dict, p: dict) -> dict:
    """Per variant, the grid rate with the lowest validation objective at the end of its learning-rate run."""
    choice = {}
    for v in VARIANTS:
        runs = [r for r in results["lr_runs"].values() if r["variant"] == v]
        if len(runs) == len(p["lr_grid"]):
            choice[v] = min(runs, key=lambda r: (r["objective"], r["lr"]))["lr"]
    return choice


def run_all(todo: list[dict], workers: int, record, lr_choice: dict, desc: str) -> None:
    _WORKER["lr_choice"] = lr_choice
    with tqdm(total=len(todo), desc=desc, disable=not todo) as bar:
        if workers == 1 or len(todo) <= 1:
            for run in todo:
                record(train_and_score(run))
                bar.update()
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_with_choice, initargs=(_WORKER["p"], threads, lr_choice)) as pool:
            for done in as_completed([pool.submit(train_and_score, run) for run in todo]):
                record(done.result())
                bar.update()


def _start_with_choice(p: dict, threads: int, lr_choice: dict) -> None:
    start_worker(p, threads)
    _WORKER["lr_choice"] = lr_choice


def check_arguments(args: argparse.Namespace) -> None:
    """The preset's defaults filled in (--out, --workers) and checked."""
    cores = os.cpu_count() or 1
    if args.workers is None:
        args.workers = 2 if args.preset == "cpu" and cores >= 2 else 1
    check_count(args.workers, "--workers")
    args.out = args.out or results_path(f"sentiment_sweep_{args.preset}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    add_run_arguments(parser)  # --out, default: experiments/results/sentiment_sweep_<preset>.json
    parser.add_argument("--workers", type=int, help="runs trained at once, one process each (default: 2 for the "
                        "CPU preset with 2 or more cores, else 1)")
    args = parse_arguments(parser, argv, check_arguments)
    p, out, workers = PRESETS[args.preset], args.out, args.workers
    settings = {"preset": args.preset, **p}
    results = read_results(out, settings)
    start_worker(p)  # the parent samples (and caches) the reference sets and pools once, before any worker starts
    current = provenance(task_fingerprint(_WORKER["task"].settings))
    check_resume(results, current, out)
    results.setdefault("runs", {}), results.setdefault("lr_runs", {})
    results.update(settings=settings, backend=p["backend"], seeds=p["seeds"], workers=workers, provenance=current,
                   library_version=current["library_version"], torch=current["torch"])
    t_start, earlier = time.time(), results.get("wall_seconds", 0.0)
    if "bon" not in results:
        results["bon"] = bon_baseline(p)
        write_atomic(out, results)
    lr_runs, runs = plan(p)

    def recorder(part: str):
        def record(result: dict) -> None:
            results[part][key(result)] = result
            results["wall_seconds"] = earlier + time.time() - t_start
            write_atomic(out, results)
        return record

    run_all([r for r in lr_runs if key(r) not in results["lr_runs"]], workers, recorder("lr_runs"), {}, "learning rates")
    results["lr_choice"] = choose_lr(results, p)
    todo = [r for r in runs if key(r) not in results["runs"]]
    run_all(todo, workers, recorder("runs"), results["lr_choice"], "sweep")
    results["summary"] = summarise(results, p)
    results["last_session_seconds"] = time.time() - t_start
    write_atomic(out, results)
    print_summary(results)


def print_summary(results: dict) -> None:
    s, p = results["summary"], results["settings"]
    print("learning rates chosen on the validation prompts:", json.dumps(results["lr_choice"]))
    print(f"{'method':14s} {'N':>3s} {'seeds':>5s}  {'KL(q||bon)':>13s}  {'KL(bon||q)':>13s}  {'win rate':>13s}  "
          f"{'KL(q||pi)':>12s}  plateaued")
    for n in p["ns"]:
        b = results["bon"].get(str(n))
        if b:
            print(f"{'BoN':14s} {n:3d} {'':5s}  {0:6.3f}          {0:6.3f}          {b['win_rate']:.3f} ± "
                  f"{b['win_rate_se']:.3f}  <= {b['kl_bound']:.2f}")
        for v in METHODS:
            row = s["table"].get(f"{v}|N={n}")
            if row:
                print(f"{v:14s} {n:3d} {row['seeds']:5d}  {row['kl_to_bon']:6.3f} ± {row['kl_to_bon_se']:.3f}  "
                      f"{row['kl_from_bon']:6.3f} ± {row['kl_from_bon_se']:.3f}  {row['win_rate']:.3f} ± "
                      f"{row['win_rate_se']:.3f}  {row['kl_k1']:5.2f} ± {row['kl_k1_se']:.2f}  "
                      f"{row['plateaued']}/{row['seeds']}")
    print("frontier counts (bootstrap mean [95% interval]):", json.dumps(s["frontier_counts"]))


if __name__ == "__main__":
    main()

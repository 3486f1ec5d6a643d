"""Chapter 8's experiment: vBoN and its rivals trained against a proxy reward model, scored exactly on held-out papers.

    python experiments/summarization.py                                   # full preset, resumes (6-8 min, 1 core)
    python experiments/summarization.py --preset tiny --out /tmp/s.json   # seconds: checks the script

The task is minivbon.summarize's: ACLSum abstracts, an output is an extract of 1-3 of an abstract's first 8
sentences, and every extract can be enumerated. Each policy starts as a clone of the task's reference and is
trained by minivbon's one loop on the training papers against the default proxy reward (a Bradley-Terry
reward model); everything is then scored exactly, by enumerating every extract of every test paper, averaged
over papers, with standard errors over papers.

1. Untrained, exact: each proxy's held-out pairwise accuracy; Best-of-N of the reference under each proxy for N
   from 1 to 10^4 (KL(pi_bon || pi), proxy and gold reward) with the least-squares fit of Gao, Schulman and
   Hilton (2022)'s form gold(N) - gold(1) = d (alpha - beta d), d = sqrt(KL); BoN(4) of the reference sampled
   at each temperature; BoN(4) itself (win rates, rewards, KL).
2. Learning rates: each method at N = 4 and every rate of the preset's grid (seed 0), scored by its own exact
   objective on the validation papers every eval_every steps; the lowest final objective wins, per method.
3. Runs: vbon, vbon-l, kl-rl (beta = 1/(N-1)) and bon-sft at N = 4 over --seeds; vbon at each N of the preset
   and kl-rl at each beta over the sweep seeds (all at their method's chosen rate), scored on the test papers
   at temperature 1 and at each sampling temperature, with the exact objective every eval_every steps.

Settings: experiments/configs/summarization.json (one preset per size). Results: experiments/results/
summarization.json (experiments/README.md documents every field), rewritten atomically after every run; a
rerun skips finished runs, and a file made with other settings or another provenance is refused, naming what
differs. Torch runs on one thread: the tensors are tiny, and a second thread only slows a shared machine down.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import torch

import minivbon as mv
from minivbon.distance import mean_se as paper_mean_se, method_objective
from minivbon.extractive import pairwise_accuracy
from minivbon.provenance import provenance, tensors_fingerprint
from minivbon.summarize import PROXIES, data_file, load_summarization_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import (add_run_arguments, load_config, mean_se, parse_arguments, read_results,  # noqa: E402
                        results_path, write_atomic)

CONFIG = load_config("summarization")  # task, proxies, n, methods, temperatures, bon_ns, cdf_seed, presets
PRESETS = CONFIG["presets"]
SCORES = ("proxy", "gold", "kl_ref", "kl_to_bon", "win_proxy", "win_gold")


def run_key(method: str, n: int, beta: float, seed: int) -> str:
    return f"{method}|n={n}|beta={beta:g}|seed={seed}"


def stat(name: str, per_paper: torch.Tensor) -> dict:
    """{name: mean over papers, name_se: its standard error}."""
    mean, se = paper_mean_se(per_paper)
    return {name: mean, f"{name}_se": se}


class Exact:
    """Exact scores of policies on one split's papers: the reference, the proxy and gold tables, BoN laws."""

    def __init__(self, task, split: str):
        self.ids, self.pi = task.splits[split], task.ref_probs(split)
        self.r, self.g = task.proxy[split], task.gold[split]
        f_lt, f_le = mv.reward_cdf(self.pi, self.r)
        self.log_f_mid, self._bon = ((f_lt + f_le) / 2).log(), {}

    def bon(self, n: int, probs: torch.Tensor | None = None) -> torch.Tensor:
        if probs is not None:
            return mv.bon_probs(probs, self.r, n)
        return self._bon.setdefault(n, mv.bon_probs(self.pi, self.r, n))

    @torch.no_grad()
    def probs(self, policy, temperature: float | None = None) -> torch.Tensor:
        return policy.log_probs_all(self.ids, temperature).exp()

    def objective(self, q: torch.Tensor, method: str, n: int, beta: float) -> tuple[str, torch.Tensor]:
        """(name, per paper) of what ``method`` minimises (minivbon.distance.method_objective), exactly."""
        b = self.bon(n)
        parts = {"kl_to_bon": mv.kl_divergence(q, b), "kl_k1": mv.kl_divergence(q, self.pi),
                 "log_f_mid": torch.where(q > 0, q * self.log_f_mid, 0.0).sum(-1),
                 "reward_g": mv.expected_reward(q, self.r), "kl_from_bon": mv.kl_divergence(b, q)}
        return method_objective(method, parts, n, beta if method == "kl-rl" else None)

    def rewards(self, q: torch.Tensor) -> dict:
        return {**stat("proxy", mv.expected_reward(q, self.r)), **stat("gold", mv.expected_reward(q, self.g))}

    def scores(self, q: torch.Tensor, n: int) -> dict:
        """Rewards, KL to the reference and to BoN(n), win rates against the reference (ties half)."""
        return {**self.rewards(q), **stat("kl_ref", mv.kl_divergence(q, self.pi)),
                **stat("kl_to_bon", mv.kl_divergence(q, self.bon(n))),
                **stat("win_proxy", mv.win_rate(q, self.pi, self.r)),
                **stat("win_gold", mv.win_rate(q, self.pi, self.g))}


def gao_fit(curve: list[dict]) -> dict:
    """Least squares of gold(N) - gold(1) = d (alpha - beta d), d = sqrt(KL(pi_bon || pi)), over the curve."""
    d = torch.tensor([math.sqrt(max(c["kl"], 0.0)) for c in curve], dtype=torch.float64)
    y = torch.tensor([c["gold"] - curve[0]["gold"] for c in curve], dtype=torch.float64)
    x = torch.stack([d, -d * d], 1)
    alpha, beta = torch.linalg.lstsq(x, y[:, None]).solution.squeeze(1).tolist()
    peak = alpha / (2 * beta) if beta > 0 else None
    return {"alpha": alpha, "beta": beta, "rmse": (y - x @ torch.tensor([alpha, beta], dtype=torch.float64)).pow(2)
            .mean().sqrt().item(), "kl_peak": None if peak is None else peak * peak,
            "gold_peak": None if peak is None else curve[0]["gold"] + alpha * peak / 2}


def untrained(tasks: dict, test: Exact, n: int) -> dict:
    """Everything that needs no training: reward-model accuracies, BoN curves and fits, tempered BoN, BoN(n)."""
    out = {"reward_model": {}, "bon_curve": {}, "gao_fit": {}}
    for name, task in tasks.items():
        ex = Exact(task, "test")
        acc, se = pairwise_accuracy(ex.r, ex.g, task.valid[ex.ids])
        out["reward_model"][name] = {"accuracy": acc, "accuracy_se": se, "settings": PROXIES[name]}
        curve, gold_ref = [], mv.expected_reward(ex.pi, ex.g)
        for m in CONFIG["bon_ns"]:
            b = ex.bon(m)
            kl = max(0.0, mv.kl_divergence(b, ex.pi).mean().item())  # rounding leaves -1e-17 at N = 1
            gain = mv.expected_reward(b, ex.g) - gold_ref  # per paper: paired, so its s.e. is small
            curve.append({"n": m, "kl": kl, **ex.rewards(b), **stat("gold_gain", gain)})
        out["bon_curve"][name], out["gao_fit"][name] = curve, gao_fit(curve)
    out["bon_temperature"] = {}
    for t in CONFIG["temperatures"]:
        b = test.bon(n, test.probs(tasks[CONFIG["train_proxy"]].reference, t))
        out["bon_temperature"][str(float(t))] = {**test.rewards(b), "kl": mv.kl_divergence(b, test.pi).mean().item()}
    out["bon4"] = {k: v for k, v in test.scores(test.bon(n), n).items() if not k.startswith("kl_to_bon")}
    out["reference"] = test.scores(test.pi, n)
    return out


def train(task, cdf, ex: Exact, method: str, n: int, beta: float, seed: int, lr: float, p: dict) -> tuple:
    """Train a clone of the reference; returns (policy, curve of the exact objective on ``ex``'s papers,
    whether it plateaued, the objective's name)."""
    config = mv.TrainConfig(method=method, n=n, k=p["k"], prompts_per_step=p["prompts_per_step"], steps=p["steps"],
                            lr=lr, lr_schedule=p["lr_schedule"], eval_every=p["eval_every"], seed=seed,
                            **({"beta": beta} if method == "kl-rl" else {}))
    per_paper, names = [], []

    def evaluate(policy) -> dict:
        name, value = ex.objective(ex.probs(policy), method, n, beta)
        per_paper.append(value)
        names.append(name)
        return stat("objective", value)

    policy = task.reference.clone(trainable=True)
    torch.manual_seed(seed)
    trainer = mv.train(policy, task.reference, task.splits["train"], task.reward_fn, config, cdf=cdf,
                       evaluate=evaluate, progress=False)
    curve = [{"step": h["step"], "objective": h["objective"], "objective_se": h["objective_se"]}
             for h in trainer.history if "objective" in h]
    return policy, curve, plateaued(per_paper), names[-1]


def plateaued(per_paper: list[torch.Tensor]) -> bool:
    """The last two checkpoints' objectives within two standard errors of their paired difference, or 5%."""
    if len(per_paper) < 2:
        return False
    change, se = paper_mean_se(per_paper[-1] - per_paper[-2])
    return abs(change) <= 2 * se or abs(change) <= 0.05 * abs(per_paper[-1].mean().item())


def plan(p: dict, n: int) -> list[tuple]:
    """(method, n, beta, seed) of every run, once each: the methods at N = n, vbon over N, kl-rl over beta."""
    runs = [(m, n, 1 / (n - 1), s) for m in CONFIG["methods"] for s in p["seeds"]]
    runs += [("vbon", v, 1 / (v - 1), s) for v in p["vbon_ns"] for s in p["sweep_seeds"]]
    runs += [("kl-rl", n, b, s) for b in p["klrl_betas"] for s in p["sweep_seeds"]]
    return list({run_key(*r): r for r in runs}.values())


def summarise(results: dict) -> dict:
    """Seed means (standard error over seeds; null for one seed) per method, N and beta, and the quality bar:
    vBoN's proxy win rate at N over BoN(N)'s (``ratio``), and the same for their gains over the reference's 1/2."""
    groups: dict = {}
    for run in results["runs"].values():
        groups.setdefault(run_key(run["method"], run["n"], run["beta"], 0).rsplit("|", 1)[0], []).append(run)
    summary = {"groups": {}}
    for key, runs in groups.items():
        summary["groups"][key] = {"seeds": len(runs)}
        for s in SCORES:
            stats = mean_se([r[s] for r in runs])
            summary["groups"][key][s] = {"mean": stats["mean"], "se": None if math.isnan(stats["se"]) else stats["se"]}
    vbon = summary["groups"].get(run_key("vbon", CONFIG["n"], 1 / (CONFIG["n"] - 1), 0).rsplit("|", 1)[0])
    if vbon:
        ours, bon = vbon["win_proxy"]["mean"], results["bon4"]["win_proxy"]
        summary["quality_bar"] = {"vbon_win_proxy": ours, "bon_win_proxy": bon, "ratio": ours / bon,
                                  "gain_ratio": (ours - 0.5) / (bon - 0.5), "passes": ours / bon >= 0.8}
    return summary


def check_arguments(args: argparse.Namespace) -> None:
    p = PRESETS[args.preset]
    args.seeds = p["seeds"] if args.seeds is None else args.seeds  # parse_arguments has checked --seeds
    args.out = args.out or results_path("summarization" if args.preset == "full" else f"summarization_{args.preset}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--seeds", help="comma-separated seeds of the N = 4 comparison (default: the preset's)")
    add_run_arguments(parser)  # --out, default experiments/results/summarization.json (full) or _<preset>.json
    args = parse_arguments(parser, argv, check_arguments)
    torch.set_num_threads(1)
    t0 = time.time()
    n, p = CONFIG["n"], {**PRESETS[args.preset], "seeds": args.seeds}
    settings = {"preset": args.preset, **p, **{k: CONFIG[k] for k in ("task", "proxies", "train_proxy", "n", "methods",
                "temperatures", "bon_ns", "cdf_seed")}, "proxy_settings": {k: PROXIES[k] for k in CONFIG["proxies"]}}
    tasks = {name: load_summarization_task(name, **CONFIG["task"]) for name in CONFIG["proxies"]}
    task = tasks[CONFIG["train_proxy"]]
    with torch.no_grad():
        ref_all = task.reference.log_probs_all(range(len(task.papers)))
    current = provenance({"kind": "summarization", "data_sha256": hashlib.sha256(data_file().read_bytes()).hexdigest(),
                          "tables_sha256": tensors_fingerprint(ref_all, task.gold_all,
                                                               *[t.proxy_all for t in tasks.values()])})
    results = read_results(args.out, settings, current, parts={"runs": dict, "lr_runs": dict}, fields=("method",))
    test, val = Exact(task, "test"), Exact(task, "val")
    results.update(settings=settings, provenance=current, sizes={s: len(i) for s, i in task.splits.items()},
                   **untrained(tasks, test, n))
    runs, lr_runs = results.setdefault("runs", {}), results.setdefault("lr_runs", {})
    earlier = results.get("wall_seconds", 0.0)
    cdf = mv.reference_cdf(task.reference, task.splits["train"], task.reward_fn, p["m"],
                           torch.Generator().manual_seed(CONFIG["cdf_seed"]), batch_size=4096)

    def save(trained: bool = True):  # wall_seconds counts the time of invocations that trained something
        results.update(wall_seconds=earlier + (time.time() - t0 if trained else 0.0))
        write_atomic(args.out, results)

    lr_done = len(lr_runs)
    for method in CONFIG["methods"]:  # phase 2: learning rates on the validation papers
        for lr in p["lr_grid"]:
            key = f"{method}|lr={lr:g}"
            if key not in lr_runs:
                _, curve, flat, name = train(task, cdf, val, method, n, 1 / (n - 1), 0, lr, p)
                lr_runs[key] = {"method": method, "lr": lr, "steps": p["steps"], "objective": curve[-1]["objective"],
                                "objective_se": curve[-1]["objective_se"], "objective_name": name, "curve": curve,
                                "plateaued": flat}
                save()
                print(f"lr {key:22s} val objective {curve[-1]['objective']:.4f} (plateaued: {flat})", flush=True)
    results["lr_choice"] = {m: min((r for r in lr_runs.values() if r["method"] == m and r["lr"] in p["lr_grid"]),
                                   key=lambda r: r["objective"])["lr"] for m in CONFIG["methods"]}
    todo = [r for r in plan(p, n) if run_key(*r) not in runs]
    print(f"{args.out}: {len(plan(p, n)) - len(todo)} of {len(plan(p, n))} runs done; running {len(todo)}", flush=True)
    for method, m, beta, seed in todo:  # phase 3
        lr = results["lr_choice"][method]
        policy, curve, flat, name = train(task, cdf, test, method, m, beta, seed, lr, p)
        q = test.probs(policy)
        run = {"method": method, "n": m, "beta": beta, "seed": seed, "steps": p["steps"], "lr": lr,
               **test.scores(q, n), **stat("kl_to_bon_n", mv.kl_divergence(q, test.bon(m))),
               "curve": curve, "objective_name": name, "plateaued": flat,
               "temperature": {str(float(t)): test.rewards(test.probs(policy, t)) for t in CONFIG["temperatures"]}}
        runs[run_key(method, m, beta, seed)] = run
        results["summary"] = summarise(results)
        save()
        print(f"{run_key(method, m, beta, seed):32s} win proxy {run['win_proxy']:.3f} gold {run['gold']:.4f} "
              f"KL {run['kl_ref']:.3f} KL to BoN(4) {run['kl_to_bon']:.3f} (plateaued: {flat})", flush=True)
    results["summary"] = summarise(results)
    save(trained=bool(todo) or len(lr_runs) > lr_done)
    bar = results["summary"].get("quality_bar", {})
    print(f"wrote {args.out} ({len(runs)} runs, {results['wall_seconds']:.0f} s); vBoN / BoN({n}) proxy win rate: "
          f"{bar.get('ratio', float('nan')):.3f}")


if __name__ == "__main__":
    main()

"""What the sentiment sweep's runs answer: seed means, convergence, win rate at matched KL, frontier counts.

Every interval here comes from a bootstrap over seeds: each (method, N) cell's seeds are resampled with
replacement, the cell means recomputed, and the statistic recomputed; the interval is the 2.5% and 97.5%
quantiles of ``BOOT`` replicates (seeded, so the file is reproducible).
"""
from __future__ import annotations

import math

import numpy as np

from results_io import mean_se

BOOT = 2000
METRICS = ["objective", "kl_to_bon", "kl_from_bon", "kl_to_bon_half_m", "kl_from_bon_half_m", "win_rate", "reward",
           "kl_k1", "kl_k3"]
COMPARED = ["vbon", "vbon-l", "bon-sft", "kl-rl", "bonbon", "bonbon-a0.005", "jbond"]  # the transforms are not
MATCHED = ["vbon", "vbon-l", "bon-sft", "kl-rl"]  # trained at every N: their win rate-KL curves can be compared


def plateaued(curve: list[dict], rel: float = 0.05) -> bool:
    """The last two checkpoints' objectives agree within two standard errors of their difference, or 5%."""
    a, b = curve[-2], curve[-1]
    change = abs(b["objective"] - a["objective"])
    return change <= 2 * math.hypot(a["objective_se"], b["objective_se"]) or change <= rel * abs(b["objective"])


def plateaued_paired(run: dict, rel: float = 0.05) -> bool:
    """The stricter test: the change between the last two checkpoints, taken prompt by prompt (the same prompts,
    samples drawn with the same seed), is within two of its own standard errors, or 5% of the objective."""
    change, se = run["last_change_paired"]
    return abs(change) <= 2 * se or abs(change) <= rel * abs(run["objective"])


def cells(runs: dict) -> dict[tuple[str, int], list[dict]]:
    out: dict = {}
    for r in runs.values():
        out.setdefault((r["variant"], r["n"]), []).append(r)
    return out


def seed_table(runs: dict) -> dict:
    """Per 'variant|N=n': seeds, plateaued count, and every metric's mean with its standard error over seeds;
    ``start_*`` are the untrained reference's values (step 0)."""
    table = {}
    for (v, n), rs in sorted(cells(runs).items()):
        row = {"seeds": len(rs), "plateaued": sum(r["plateaued"] for r in rs),
               "plateaued_paired": sum(plateaued_paired(r) for r in rs), "steps": min(r["steps"] for r in rs),
               "lr": rs[0]["lr"], "objective_name": rs[0]["objective_name"]}
        for m in METRICS:
            x = [r[m] for r in rs if m in r]
            if x:
                s = mean_se(x)
                row[m], row[m + "_se"] = s["mean"], s["se"]
        for m in ("objective", "kl_to_bon", "kl_from_bon"):
            row["start_" + m] = rs[0]["curve"][0][m]
        table[f"{v}|N={n}"] = row
    return table


def _replicates(runs: dict, metrics: list[str], rng: np.random.Generator) -> dict:
    """{(variant, n): (BOOT, len(metrics)) cell means over seeds resampled with replacement}."""
    out = {}
    for cell, rs in cells(runs).items():
        x = np.array([[r[m] for m in metrics] for r in rs], dtype=float)  # (S, metrics)
        pick = rng.integers(len(rs), size=(BOOT, len(rs)))
        out[cell] = x[pick].mean(1)  # (BOOT, metrics)
    return out


def interval(x: np.ndarray) -> dict:
    lo, hi = np.quantile(x, [0.025, 0.975])
    return {"mean": float(np.mean(x)), "lo": float(lo), "hi": float(hi)}


def matched_kl(runs: dict, methods: list[str], points: int = 5, seed: int = 0) -> dict:
    """Win rate of each method at common values of KL(q || pi) (k1), interpolated linearly in log KL between its
    N's, on a grid spanning the overlap of the methods' seed-mean KL ranges; with bootstrap intervals, and each
    method's difference to vBoN."""
    rng = np.random.default_rng(seed)
    reps = _replicates({k: r for k, r in runs.items() if r["variant"] in methods}, ["kl_k1", "win_rate"], rng)
    by_method: dict = {}
    for (v, n), x in reps.items():
        by_method.setdefault(v, []).append(x)  # list over N of (BOOT, 2)
    stacked = {v: np.stack(xs, 1) for v, xs in by_method.items()}  # (BOOT, N's, 2)
    means = {v: x.mean(0) for v, x in stacked.items()}
    lo = max(np.log(np.clip(m[:, 0], 1e-6, None)).min() for m in means.values())
    hi = min(np.log(np.clip(m[:, 0], 1e-6, None)).max() for m in means.values())
    if not lo < hi:
        return {"grid_kl": [], "win_rate": {}, "minus_vbon": {}, "note": "the methods' KL ranges do not overlap"}
    grid = np.linspace(lo, hi, points)

    def curve(x):  # (N's, 2) -> win rate on the grid
        order = np.argsort(x[:, 0])
        return np.interp(grid, np.log(np.clip(x[order, 0], 1e-6, None)), x[order, 1])

    wins = {v: np.stack([curve(x[b]) for b in range(BOOT)]) for v, x in stacked.items()}  # (BOOT, points)
    out = {"grid_kl": np.exp(grid).tolist(), "win_rate": {}, "minus_vbon": {}}
    for v, w in wins.items():
        out["win_rate"][v] = [interval(w[:, j]) for j in range(points)]
        if v != "vbon" and "vbon" in wins:
            out["minus_vbon"][v] = [interval(w[:, j] - wins["vbon"][:, j]) for j in range(points)]
    return out


def frontier_mask(kl: np.ndarray, value: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Which points lie on the upper-left Pareto frontier of (KL, value): no other point has KL no larger and
    value no smaller, one of them by more than ``tol`` (points closer than that count as equal)."""
    k, v = kl[:, None], value[:, None]
    dominated = (kl[None, :] <= k + tol) & (value[None, :] >= v - tol) & ((kl[None, :] < k - tol) | (value[None, :] > v + tol))
    return ~dominated.any(1)


def frontier_counts(runs: dict, methods: list[str], bon: dict | None = None, seed: int = 1) -> dict:
    """For the reward and the win-rate axis (against KL k1): how many of each method's N lie on the frontier of
    all methods' points, as a bootstrap mean with its interval. ``bon`` adds BoN(N) at its estimated KL."""
    rng = np.random.default_rng(seed)
    sub = {k: r for k, r in runs.items() if r["variant"] in methods}
    reps = _replicates(sub, ["kl_k1", "reward", "win_rate"], rng)
    names = [v for v, _ in reps]
    x = np.stack(list(reps.values()), 1)  # (BOOT, cells, 3)
    if bon:
        extra = np.array([[b["kl_from_ref"], b["reward"], b["win_rate"]] for n, b in bon.items() if n != "1"])
        x = np.concatenate([x, np.broadcast_to(extra, (BOOT, *extra.shape))], 1)
        names += ["bon"] * len(extra)
    out = {}
    for j, axis in ((1, "reward"), (2, "win_rate")):
        on = np.stack([frontier_mask(x[b, :, 0], x[b, :, j]) for b in range(BOOT)])  # (BOOT, cells)
        counts = {v: on[:, [i for i, u in enumerate(names) if u == v]].sum(1) for v in dict.fromkeys(names)}
        table = np.stack(list(counts.values()), 1)  # (BOOT, methods)
        most = {v: float(np.mean(table[:, i] > np.delete(table, i, 1).max(1))) for i, v in enumerate(counts)}
        out[axis] = {v: {**interval(c), "most_often": most[v]} for v, c in counts.items()}
    return out


def _differ(a: dict, b: dict, metric: str) -> int:
    """+1 if a's seed mean is above b's by more than two standard errors of the difference, -1 if below, else 0."""
    d, se = a[metric] - b[metric], math.hypot(a[metric + "_se"], b[metric + "_se"])
    return 0 if not abs(d) > 2 * se else (1 if d > 0 else -1)


def verdicts(table: dict, bon: dict, matched: dict, counts: dict, counts_bon: dict, ns: list[int]) -> list[dict]:
    """The paper's comparative claims on this task, each judged from the numbers with a stated rule:
    'reproduced', 'not reproduced' (the numbers say otherwise, beyond their uncertainty) or 'not resolved'."""
    out = []

    def judge(wins: int, losses: int, total: int) -> str:
        return "reproduced" if wins > total / 2 else "not reproduced" if losses > 0 else "not resolved"

    for metric, words in (("kl_to_bon", "KL(q||pi_bon)"), ("kl_from_bon", "KL(pi_bon||q)")):
        lowest = beaten = 0
        for n in ns:
            v = table.get(f"vbon|N={n}")
            others = [table[f"{m}|N={n}"] for m in MATCHED[1:] if f"{m}|N={n}" in table]
            if v is None or not others:
                continue
            lowest += all(_differ(v, o, metric) < 0 for o in others)
            beaten += any(_differ(v, o, metric) > 0 for o in others)
        out.append({"claim": f"vBoN is the fine-tuned method closest to BoN, in {words}",
                    "rule": "at each N, vBoN's seed mean is below every other core method's by more than 2 s.e.",
                    "evidence": f"lowest at {lowest} of {len(ns)} N; another method significantly lower at {beaten}",
                    "verdict": judge(lowest, beaten, len(ns))})
    if matched.get("minus_vbon", {}).get("kl-rl"):
        d = matched["minus_vbon"]["kl-rl"]
        better = sum(x["hi"] < 0 for x in d)  # KL-RL - vBoN below 0: vBoN wins more often at that KL
        worse = sum(x["lo"] > 0 for x in d)
        out.append({"claim": "vBoN surpasses KL-regularised RL (win rate at matched KL)",
                    "rule": "95% bootstrap interval of KL-RL minus vBoN below 0 at most matched KL values",
                    "evidence": f"vBoN ahead at {better} of {len(d)} KL values, behind at {worse}",
                    "verdict": judge(better, worse, len(d))})
    for axis, words in (("reward", "reward"), ("win_rate", "win rate")):
        c = counts[axis]
        top = max(c, key=lambda v: c[v]["most_often"])
        share = c["vbon"]["most_often"]
        out.append({"claim": f"vBoN is on the {words}-KL Pareto frontier more often than the other methods",
                    "rule": "vBoN has the strictly highest count in at least 95% of bootstrap replicates "
                            "(not reproduced: in at most 5%)",
                    "evidence": f"vBoN most often in {share:.0%} of replicates; {top} in {c[top]['most_often']:.0%}",
                    "verdict": "reproduced" if share >= 0.95 else "not reproduced" if share <= 0.05
                    else "not resolved"})
    c = counts_bon["win_rate"]
    out.append({"claim": "BoN is the most effective method (win rate against KL, BoN at its estimated KL)",
                "rule": "BoN has the strictly highest frontier count in at least 95% of bootstrap replicates "
                        "(not reproduced: in at most 5%)",
                "evidence": f"BoN most often in {c['bon']['most_often']:.0%} of replicates",
                "verdict": "reproduced" if c["bon"]["most_often"] >= 0.95 else "not reproduced"
                if c["bon"]["most_often"] <= 0.05 else "not resolved"})
    return out


def summarise(results: dict, p: dict) -> dict:
    runs = results["runs"]
    table = seed_table(runs)
    for n in p["ns"]:  # the untrained reference, from any run at that N (its step-0 checkpoint)
        first = next((r for r in runs.values() if r["n"] == n and r["variant"] == "vbon"), None)
        if first:
            table[f"reference|N={n}"] = {k: first["curve"][0][k] for k in ("kl_to_bon", "kl_to_bon_se",
                                                                           "kl_from_bon", "kl_from_bon_se")}
    done = list(runs.values())
    matched = matched_kl(runs, MATCHED)
    counts, counts_bon = frontier_counts(runs, COMPARED), frontier_counts(runs, COMPARED, results.get("bon"))
    return {"table": table,
            "converged": {"runs": len(done), "plateaued": sum(r["plateaued"] for r in done),
                          "plateaued_paired": sum(plateaued_paired(r) for r in done),
                          "still_improving": sorted(f"{r['variant']}|N={r['n']}|seed={r['seed']}" for r in done
                                                    if not plateaued_paired(r) and r["last_change_paired"][0] < 0),
                          "at_200_steps_or_more": sum(r["steps"] >= 200 for r in done)},
            "matched_kl": matched, "frontier_counts": counts, "frontier_counts_with_bon": counts_bon,
            "verdicts": verdicts(table, results.get("bon", {}), matched, counts, counts_bon, p["ns"])}

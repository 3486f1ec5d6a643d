"""Chapter 6's race on the string world, over several seeds: the spread behind the chapter's one-seed tables.

    python experiments/distill_world.py                      # seeds 0-4, both families (about 4 min on 2 cores)
    python experiments/distill_world.py --seeds 0 --steps 5 --out /tmp/d.json   # seconds: checks the script
    python experiments/distill_world.py --methods J-BOND --families whole-prefix --lr 0.1 --out /tmp/jb.json
                                                             # one method at another learning rate (a scan)

Every method of chapter 6 is trained with the chapter's settings (world, budget, learning rate, steps) from
the reference, once per seed (the seed sets the training samples; the world, the reference CDF and
KL-RL's matched beta stay fixed), on the whole-prefix family (1,000 steps) and the first-order family (300
steps). The settings are ``experiments/configs/distill_world.json``, which chapter 6 reads too. Each run's
exact final distances are written to ``experiments/results/distill_world.json`` with, per method and family,
the mean and the standard deviation over seeds. Runs are keyed (method, family, seed); the file is rewritten
atomically after every run, so a rerun skips the finished ones; a file made with other settings or another
provenance is refused, naming what differs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import minivbon as mv
from minivbon.provenance import provenance, tensors_fingerprint
from minivbon.toy import TabularPolicy, make_world

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import (add_run_arguments, check_count, check_positive, load_config, parse_arguments,  # noqa: E402
                        read_results, results_path, write_atomic)

CONFIG = load_config("distill_world")  # N, M, base, methods, families, world, cdf_seed
METHODS, FAMILIES = CONFIG["methods"], CONFIG["families"]
SCORES = ("backward", "forward", "jeffreys", "kl_ref", "win")


def run_key(run: dict) -> tuple[str, str, int]:
    return run["method"], run["family"], run["seed"]


def check_arguments(args: argparse.Namespace) -> None:
    if args.steps is not None:
        check_count(args.steps, "--steps")
    args.methods, args.families = args.methods.split(","), args.families.split(",")
    for flag, names, known in (("--methods", args.methods, METHODS), ("--families", args.families, FAMILIES)):
        unknown = [x for x in names if x not in known]
        if unknown:
            raise ValueError(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.lr is not None:
        check_positive(args.lr, "--lr")


def settings(args: argparse.Namespace) -> dict:
    """What the results file records and a resume must match: the config's parts that are run, and the overrides."""
    return {"N": CONFIG["N"], "M": CONFIG["M"], "base": CONFIG["base"], "world": CONFIG["world"],
            "cdf_seed": CONFIG["cdf_seed"], "methods": {m: METHODS[m] for m in args.methods},
            "families": {f: FAMILIES[f] for f in args.families}, "seeds": args.seeds, "steps": args.steps,
            "steps_run": {f: args.steps if args.steps is not None else FAMILIES[f]["steps"] for f in args.families},
            "lr": args.lr}


def summarise(runs: list[dict], families: list[str], methods: list[str]) -> dict:
    """Per 'family|method': the mean and the standard deviation over seeds of every score."""
    summary = {}
    for family in families:
        for name in methods:
            rows = [x for x in runs if x["family"] == family and x["method"] == name]
            if rows:
                summary[f"{family}|{name}"] = {
                    key: {"mean": statistics.mean(x[key] for x in rows),
                          "sd": statistics.stdev(x[key] for x in rows) if len(rows) > 1 else 0.0} for key in SCORES}
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, seeds="0,1,2,3,4", out=results_path("distill_world"))
    parser.add_argument("--steps", type=int, help="override both families' steps (for a quick check)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, from " + ", ".join(FAMILIES))
    parser.add_argument("--lr", type=float, help="override every chosen method's learning rate")
    args = parse_arguments(parser, argv, check_arguments)

    n = CONFIG["N"]
    world = make_world(**CONFIG["world"])
    prompts, reference = list(range(world.num_prompts)), world.reference()
    p, r, bon = world.ref_log_probs().exp(), world.rewards_all(), world.bon_probs(n)
    current = provenance({"kind": "toy world", "world_sha256": tensors_fingerprint(world.ref_logits, r)})
    results = read_results(args.out, settings(args), current, parts={"runs": list},
                           fields=("family", "method", "seed", *SCORES))
    done = {run_key(x) for x in results.get("runs", [])}
    plan = [(family, name, seed) for family in args.families for name in args.methods for seed in args.seeds]
    todo = [(family, name, seed) for family, name, seed in plan if (name, family, seed) not in done]
    if not todo:
        print(f"{args.out}: all {len(plan)} runs are done; nothing to run")
        return
    if done:
        print(f"{args.out}: {len(plan) - len(todo)} of {len(plan)} runs done; running the other {len(todo)}")

    reward_fn = lambda s: world.reward(s.prompt_ids, s.tokens)  # noqa: E731
    cdf = mv.reference_cdf(reference, prompts, reward_fn, CONFIG["M"],
                           torch.Generator().manual_seed(CONFIG["cdf_seed"]))
    bon_kl = mv.kl_divergence(bon, p).mean().item()
    matched_beta = min(torch.logspace(-2, 1, 300).tolist(),
                       key=lambda b: abs(mv.kl_divergence(mv.kl_rl_policy(p, r, b), p).mean().item() - bon_kl))
    results.update(settings=settings(args), provenance=current, matched_beta=matched_beta, torch=torch.__version__)
    results.setdefault("runs", [])
    t0, earlier = time.time(), results.get("wall_seconds", 0.0)
    for family, name, seed in todo:
        context, steps = FAMILIES[family]["context"], FAMILIES[family]["steps"]
        extra = {"beta": matched_beta} if name == "KL-RL" else {}
        if args.lr is not None:
            extra["lr"] = args.lr
        config = mv.TrainConfig(**{**CONFIG["base"], "steps": args.steps if args.steps is not None else steps,
                                   "seed": seed, **METHODS[name], **extra})
        policy = TabularPolicy.from_first_order(world.ref_logits, context)
        torch.manual_seed(seed)
        mv.train(policy, reference, prompts, reward_fn, config, cdf=cdf, progress=False)
        q = policy.log_probs_all(world.strings).detach().double().exp()
        back, fwd = mv.kl_divergence(q, bon).mean().item(), mv.kl_divergence(bon, q).mean().item()
        run = {"family": family, "method": name, "seed": seed, "lr": config.lr, "steps": config.steps,
               "backward": back, "forward": fwd, "jeffreys": (back + fwd) / 2,
               "kl_ref": mv.kl_divergence(q, p).mean().item(), "win": mv.win_rate(q, p, r).mean().item()}
        results["runs"].append(run)
        results.update(summary=summarise(results["runs"], args.families, args.methods),
                       wall_seconds=earlier + time.time() - t0)
        write_atomic(args.out, results)
        print(f"{family:12s} {name:8s} seed {seed}: KL(q||bon) {back:.3f}, KL(bon||q) {fwd:.3f}, "
              f"win {run['win']:.3f}", flush=True)
    print(f"wrote {args.out} ({len(results['runs'])} runs, {results['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()

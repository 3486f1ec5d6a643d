"""Chapter 6's race on the string world, over several seeds: the spread behind the chapter's one-seed tables.

    python experiments/distill_world.py                      # seeds 0-4, both families (about 4 min on 2 cores)
    python experiments/distill_world.py --seeds 0 --steps 5 --out /tmp/d.json   # seconds: checks the script
    python experiments/distill_world.py --methods J-BOND --families whole-prefix --lr 0.1 --out /tmp/jb.json
                                                             # one method at another learning rate (a scan)

Every method of chapter 6 is trained with the chapter's settings (world, budget, learning rate, steps) from
the reference, once per seed (the seed sets the training samples; the world, the reference CDF and
KL-RL's matched beta stay fixed), on the whole-prefix family (1,000 steps) and the first-order family (300
steps). Each run's exact final distances are written to ``experiments/results/distill_world.json`` with,
per method and family, the mean and the standard deviation over seeds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
import minivbon as mv  # noqa: E402
from minivbon.toy import TabularPolicy, make_world  # noqa: E402
from minivbon.provenance import provenance, tensors_fingerprint  # noqa: E402
from results_io import check_writable, write_atomic  # noqa: E402

N, M = 4, 300
BASE = dict(n=N, k=16, prompts_per_step=6, lr=0.1, lr_schedule="cosine", max_grad_norm=None)
METHODS = {"vBoN": dict(method="vbon"), "vBoN-L": dict(method="vbon-l"), "BoN-SFT": dict(method="bon-sft"),
           "BoNBoN": dict(method="bonbon", alpha=0.5), "BOND": dict(method="bond", eta=0.5, k=4, prompts_per_step=24),
           "J-BOND": dict(method="jbond", eta=0.5, k=4, prompts_per_step=24, lr=0.05), "KL-RL": dict(method="kl-rl")}
FAMILIES = {"whole-prefix": ("prefix", 1000), "first-order": ("previous", 300)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds")
    parser.add_argument("--steps", type=int, help="override both families' steps (for a quick check)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, from " + ", ".join(FAMILIES))
    parser.add_argument("--lr", type=float, help="override every chosen method's learning rate")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "distill_world.json")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated whole numbers >= 0, got {args.seeds!r}")
    if any(s < 0 for s in seeds):
        parser.error(f"--seeds must be >= 0, got {args.seeds!r}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps} (leave it out for each family's own steps)")
    methods, families = args.methods.split(","), args.families.split(",")
    for flag, names, known in (("--methods", methods, METHODS), ("--families", families, FAMILIES)):
        unknown = [x for x in names if x not in known]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.lr is not None and not 0 < args.lr < float("inf"):
        parser.error(f"--lr must be a finite number > 0, got {args.lr}")
    try:
        check_writable(args.out)
    except SystemExit as e:
        parser.error(str(e))
    world = make_world(num_prompts=3, vocab=3, length=5, seed=0)
    prompts, reference = list(range(world.num_prompts)), world.reference()
    p, r, bon = world.ref_log_probs().exp(), world.rewards_all(), world.bon_probs(N)
    reward_fn = lambda s: world.reward(s.prompt_ids, s.tokens)  # noqa: E731
    cdf = mv.reference_cdf(reference, prompts, reward_fn, M, torch.Generator().manual_seed(1))
    bon_kl = mv.kl_divergence(bon, p).mean().item()
    matched_beta = min(torch.logspace(-2, 1, 300).tolist(),
                       key=lambda b: abs(mv.kl_divergence(mv.kl_rl_policy(p, r, b), p).mean().item() - bon_kl))

    runs, t0 = [], time.time()
    for family in families:
        context, steps = FAMILIES[family]
        for name in methods:
            for seed in seeds:
                extra = {"beta": matched_beta} if name == "KL-RL" else {}
                if args.lr is not None:
                    extra["lr"] = args.lr
                config = mv.TrainConfig(**{**BASE, "steps": args.steps if args.steps is not None else steps, "seed": seed,
                                           **METHODS[name], **extra})
                policy = TabularPolicy.from_first_order(world.ref_logits, context)
                torch.manual_seed(seed)
                mv.train(policy, reference, prompts, reward_fn, config, cdf=cdf, progress=False)
                q = policy.log_probs_all(world.strings).detach().double().exp()
                back, fwd = mv.kl_divergence(q, bon).mean().item(), mv.kl_divergence(bon, q).mean().item()
                runs.append({"family": family, "method": name, "seed": seed, "lr": config.lr, "steps": config.steps,
                             "backward": back, "forward": fwd,
                             "jeffreys": (back + fwd) / 2, "kl_ref": mv.kl_divergence(q, p).mean().item(),
                             "win": mv.win_rate(q, p, r).mean().item()})
                print(f"{family:12s} {name:8s} seed {seed}: KL(q||bon) {back:.3f}, KL(bon||q) {fwd:.3f}, "
                      f"win {runs[-1]['win']:.3f}", flush=True)
    summary = {}
    for family in families:
        for name in methods:
            rows = [x for x in runs if x["family"] == family and x["method"] == name]
            summary[f"{family}|{name}"] = {
                key: {"mean": statistics.mean(x[key] for x in rows),
                      "sd": statistics.stdev(x[key] for x in rows) if len(rows) > 1 else 0.0}
                for key in ("backward", "forward", "jeffreys", "kl_ref", "win")}
    steps_run = {f: args.steps if args.steps is not None else FAMILIES[f][1] for f in families}
    out = {"settings": {"N": N, "M": M, "base": BASE, "methods": {m: METHODS[m] for m in methods},
                        "families": {f: FAMILIES[f] for f in families}, "seeds": seeds, "steps": args.steps,
                        "steps_run": steps_run, "lr": args.lr},
           "provenance": provenance({"kind": "toy world", "world_sha256": tensors_fingerprint(world.ref_logits, r)}),
           "matched_beta": matched_beta, "runs": runs, "summary": summary, "wall_seconds": time.time() - t0,
           "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, out)  # temporary file, then os.replace
    print(f"wrote {args.out} ({len(runs)} runs, {out['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()

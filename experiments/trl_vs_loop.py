"""Chapter 7's comparison over seeds: vBoN-L trained by TRL's RLOOTrainer, next to the 30-step sweep with the same settings.

    python experiments/trl_vs_loop.py                 # seeds 0-2, chapter 5's CPU preset (a few minutes)
    python experiments/trl_vs_loop.py --seeds 0 --steps 2 --out /tmp/t.json   # seconds: checks the script

For each seed, TRL trains vBoN-L at N = 4 with the sweep's settings (64 training prompts, 16 new tokens,
M = 64, 30 steps of 8 prompts x 8 completions, lr 5e-4) and the trained policy is scored with chapter 5's
held-out protocol (256 prompts x 4 samples, win rate with ties half, KL by k1). The results file holds each
seed's numbers, their mean with the standard error over seeds, and the same for minivbon's own loop read
from ``results/sentiment_sweep_cpu_30steps.json`` (method vbon-l, N = 4, M = 64).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import (add_run_arguments, check_count, mean_se, parse_arguments, results_path,  # noqa: E402
                        write_atomic)

N, M, M_TEST, NEW_TOKENS, STEPS, PROMPTS_PER_STEP, K, LR = 4, 64, 16, 16, 30, 8, 8, 5e-4


def check_arguments(args: argparse.Namespace) -> None:
    check_count(args.steps, "--steps")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, seeds="0,1,2", out=results_path("trl_vs_loop"))
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parse_arguments(parser, argv, check_arguments)
    import datasets
    import torch
    from transformers import PrinterCallback, ProgressCallback
    from trl import RLOOTrainer, __version__ as trl_version

    from minivbon import sentiment
    from minivbon.trl import VBoNLReward, vbon_rloo_config

    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    task = sentiment.load_task("local", n_train=64, n_test=256, max_new_tokens=NEW_TOKENS)
    texts = sentiment.load_prompts("local", "train", task.policy.tokenizer, 64)
    cdf = sentiment.cached_reference_cdf(task, task.train_prompts, M, seed=0)  # the sweep's reference sets
    test_cdf = sentiment.cached_reference_cdf(task, task.test_prompts, M_TEST, seed=1)
    data = datasets.Dataset.from_dict({"prompt": list(texts.values()), "prompt_id": list(texts)})
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            config = vbon_rloo_config(N, output_dir=tmp, max_completion_length=NEW_TOKENS, num_generations=K,
                                      per_device_train_batch_size=PROMPTS_PER_STEP * K, learning_rate=LR,
                                      max_steps=args.steps, save_strategy="no", gradient_checkpointing=False,
                                      seed=seed)
            trainer = RLOOTrainer(model=str(sentiment.require_data() / "local-gpt2"),
                                  reward_funcs=VBoNLReward(cdf, task.reward), args=config, train_dataset=data,
                                  processing_class=task.policy.tokenizer)
            for callback in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(callback)
            t = time.time()
            trainer.train()
            seconds = time.time() - t
        policy = task.policy.clone()
        policy.model.load_state_dict(trainer.model.state_dict())
        e = sentiment.evaluate_policy(task, policy, task.test_prompts, test_cdf, samples_per_prompt=4, seed=3)
        runs.append({"seed": seed, "train_seconds": seconds, "win_rate": e["win_rate"], "kl_k1": e["kl_k1"]})
        print(f"seed {seed}: win rate {e['win_rate']:.3f}, KL {e['kl_k1']:.2f}, {seconds:.0f} s", flush=True)
    sweep = json.loads(results_path("sentiment_sweep_cpu_30steps").read_text())
    loop = [r for k, r in sweep["runs"].items() if k.startswith(f"vbon-l|N={N}|M={M}|")]
    from minivbon.provenance import provenance, task_fingerprint

    out = {"trl_version": trl_version, "torch": torch.__version__, "provenance": provenance(task_fingerprint(task.settings)),
           "settings": {
               "N": N, "M": M, "steps": args.steps, "prompts_per_step": PROMPTS_PER_STEP, "k": K, "lr": LR},
           "trl": {"runs": runs, **{key: mean_se([r[key] for r in runs]) for key in ("win_rate", "kl_k1")}},
           "minivbon": {"seeds": sorted(r["seed"] for r in loop),
                        **{key: mean_se([r[key] for r in loop]) for key in ("win_rate", "kl_k1", "train_seconds")}}}
    write_atomic(args.out, out)
    print(f"TRL over seeds: win rate {out['trl']['win_rate']['mean']:.3f} ± {out['trl']['win_rate']['se']:.3f}; "
          f"minivbon: {out['minivbon']['win_rate']['mean']:.3f} ± {out['minivbon']['win_rate']['se']:.3f}")


if __name__ == "__main__":
    main()

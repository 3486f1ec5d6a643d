"""Inference cost of Best-of-N against a vBoN policy trained at the same N (local backend, CPU).

For N in {4, 16}: train vBoN (RLOO, 16 prompts x 4 samples per step) from the local GPT-2, then on
P held-out prompts time one aligned answer per prompt, BoN(N) (N samples + N rewards, keep the best)
against one vBoN sample, and measure both win rates against M cached reference samples per prompt.
Prints absolute figures and the ratios. Run:

    python bench/inference_cost.py [--prompts 256] [--steps 60] [--m 32]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import minivbon as mv
from minivbon import sentiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import check_count, parse_arguments  # noqa: E402


def check_arguments(args: argparse.Namespace) -> None:
    for flag in ("--prompts", "--steps", "--m"):
        check_count(getattr(args, flag[2:]), flag)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256, help="held-out prompts timed and scored")
    parser.add_argument("--steps", type=int, default=60, help="vBoN training steps at each N")
    parser.add_argument("--m", type=int, default=32, help="reference samples per held-out prompt (win rates)")
    args = parse_arguments(parser, argv, check_arguments)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()

    task = sentiment.load_task("local", n_train=64, n_test=args.prompts, max_new_tokens=20)
    train_cdf = sentiment.cached_reference_cdf(task, task.train_prompts, 64, seed=0)
    test_cdf = sentiment.cached_reference_cdf(task, task.test_prompts, args.m, seed=1)
    prompts = task.test_prompts

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - start) / len(prompts)

    print(f"{len(prompts)} held-out prompts, win rates against {args.m} reference samples each (ties count half)")
    print(" N   BoN ms/answer  vBoN ms/answer  time BoN/vBoN   win BoN  win vBoN  win vBoN/BoN   vBoN KL (k3)")
    for n in (4, 16):
        config = mv.TrainConfig(method="vbon", n=n, k=4, prompts_per_step=16, steps=args.steps, lr=2e-4, seed=0)
        policy = task.reference.clone(trainable=True)
        mv.train(policy, task.reference, task.train_prompts, task.reward_fn, config, cdf=train_cdf, progress=False)
        gen = torch.Generator().manual_seed(n)
        mv.best_of_n(task.reference, prompts[:8], n, task.reward_fn, gen)  # warm up
        (bon, bon_r), t_bon = timed(lambda: mv.best_of_n(task.reference, prompts, n, task.reward_fn, gen))
        vbon, t_vbon = timed(lambda: policy.sample(prompts, gen))
        win_bon = test_cdf.win_rate(prompts, bon_r).mean().item()
        win_vbon = test_cdf.win_rate(prompts, task.reward_fn(vbon)).mean().item()
        kl = sentiment.evaluate_policy(task, policy, prompts, test_cdf, 1, seed=5)["kl_k3"]
        print(f"{n:2d}      {t_bon * 1e3:6.2f}          {t_vbon * 1e3:6.2f}          {t_bon / t_vbon:5.1f}x"
              f"       {win_bon:.3f}     {win_vbon:.3f}       {win_vbon / win_bon:.3f}        {kl:.2f}", flush=True)


if __name__ == "__main__":
    main()

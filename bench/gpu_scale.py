"""Chapter 5's training loop at the paper's sizes, timed phase by phase, with the GPU preset's cost projected.

    python bench/gpu_scale.py                         # CUDA, the GPU preset's sizes, bf16 autocast
    python bench/gpu_scale.py --device cpu --tiny     # a few seconds on a CPU (what CI runs)

It needs no download: the paper's models are replaced by stand-ins of the same size and shape, loaded
through the same code as the hub backend:

- policy and reference: a randomly initialised GPT-2 small (12 layers, width 768, 12 heads) built
  from ``GPT2Config``, with GPT-2's vocabulary size (50,257) so that the output layer costs what the
  real one does; prompts are tokenised by the project's tokenizer (its ids are all below 2,048);
- reward: a randomly initialised DistilBERT-size classifier (6 layers, width 768), saved to a
  temporary folder and loaded back by ``ClassifierReward``, the hub backend's reward class.

Speed does not depend on the weights' values, with one caveat: a random model rarely ends a sample
early, so every sample runs to the full 40 new tokens (the worst case; trained models stop earlier).
The GPU preset's sizes are those of chapter 5: 1,024 training prompts with M = 300 reference samples,
512 held-out prompts with 32, six training runs of 500 steps of 32 prompts x 4 samples, and a held-out
evaluation of 512 x 4 samples per run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import minivbon as mv
from minivbon import methods, sentiment
from minivbon.lm import LMPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import check_device, parse_arguments, write_atomic  # noqa: E402

FULL = dict(layers=12, width=768, heads=12, vocab=50_257, rm_layers=6, rm_width=768, new_tokens=40, prompts=32, k=4,
            m=300, measure_prompts=8, steps=5, eval_prompts=64, spp=4)
TINY = dict(layers=2, width=64, heads=2, vocab=2_048, rm_layers=2, rm_width=64, new_tokens=8, prompts=2, k=2,
            m=4, measure_prompts=2, steps=2, eval_prompts=2, spp=2)
CHAPTER = dict(n_train=1024, m_train=300, n_test=512, m_test=32, n_pool=16, runs=6, steps=500, spp=4)


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def build_task(size: dict, device: torch.device, precision: str, folder: Path) -> sentiment.SentimentTask:
    """Stand-in models of the given size, the reward model loaded back from ``folder`` like a hub model."""
    from transformers import (AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification, GPT2Config,
                              GPT2LMHeadModel)

    tokenizer = AutoTokenizer.from_pretrained(sentiment.require_data() / "local-gpt2")
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=size["vocab"], n_positions=128, n_embd=size["width"],
                                      n_layer=size["layers"], n_head=size["heads"], bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id)).to(device).eval()
    rm = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=size["vocab"], dim=size["rm_width"], hidden_dim=4 * size["rm_width"], n_layers=size["rm_layers"],
        n_heads=max(1, size["rm_width"] // 64), pad_token_id=tokenizer.pad_token_id,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    rm.save_pretrained(folder / "reward")
    tokenizer.save_pretrained(folder / "reward")
    reward = sentiment.ClassifierReward(str(folder / "reward"), device)
    prompts = sentiment.load_prompts("local", "train", tokenizer, 1024)
    held_out = sentiment.load_prompts("local", "test", tokenizer, 512, seed=1)
    policy = LMPolicy(gpt2, tokenizer, {**prompts, **held_out}, size["new_tokens"], 1.0, precision)
    return sentiment.SentimentTask(policy.clone(trainable=True), policy, reward, list(prompts), list(held_out),
                                   {"backend": "stand-in"})


def measure(size: dict, device: torch.device, precision: str) -> dict:
    figures = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "precision": precision, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        task = build_task(size, device, precision, Path(tmp))
        figures["policy_parameters_M"] = sum(p.numel() for p in task.policy.parameters()) / 1e6
        figures["reward_parameters_M"] = sum(p.numel() for p in task.reward.model.parameters()) / 1e6
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        # 1. reference samples for the per-prompt CDF
        ids = task.train_prompts[: size["measure_prompts"]]
        t = clock(device)
        cdf = mv.reference_cdf(task.reference, ids, task.reward_fn, size["m"], torch.Generator().manual_seed(0))
        figures["reference_samples_per_s"] = len(ids) * size["m"] / (clock(device) - t)

        # 2. RLOO steps (vBoN-L), after one warm-up step
        config = mv.TrainConfig(method="vbon-l", n=4, k=size["k"], prompts_per_step=size["prompts"],
                                steps=size["steps"] + 1, lr=1e-5, seed=0)
        trainer = mv.Trainer(task.policy, task.reference, ids, task.reward_fn, config, cdf=cdf)
        trainer.run(steps=1, progress=False)
        t = clock(device)
        trainer.run(steps=size["steps"], progress=False)
        figures["step_s"] = (clock(device) - t) / size["steps"]

        # 2b. the phases of one step: sampling, then forward and backward of policy and reference
        batch = [p for p in ids[: size["prompts"]] for _ in range(size["k"])] * max(1, size["prompts"] // len(ids))
        batch = batch[: size["prompts"] * size["k"]]
        t = clock(device)
        samples = task.policy.sample(batch, torch.Generator().manual_seed(1))
        sample_s = clock(device) - t
        generated = int(samples.mask.sum())
        t = clock(device)
        raw = task.reward_fn(samples)
        task_reward = methods.vbon_l_task(cdf, config.n, config.ties, samples.prompt_ids, raw)
        loss, _ = mv.rl_loss(task.policy, task.reference, samples, task_reward, config.kl_coef, config.k)
        loss.backward()
        fwd_bwd_s = clock(device) - t
        task.policy.zero_grad()
        figures["generated_tokens_per_s"] = generated / sample_s
        figures["fwd_bwd_tokens_per_s"] = samples.tokens.numel() / fwd_bwd_s
        figures["sample_share_of_step"] = sample_s / (sample_s + fwd_bwd_s)

        # 3. held-out evaluation
        t = clock(device)
        sentiment.evaluate_policy(task, task.policy, task.test_prompts[: size["eval_prompts"]], cdf_for(task, size),
                                  size["spp"], seed=3)
        figures["eval_samples_per_s"] = size["eval_prompts"] * size["spp"] / (clock(device) - t)
        if device.type == "cuda":
            figures["peak_memory_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return figures


def cdf_for(task, size) -> mv.EmpiricalCDF:
    """A CDF over the evaluation prompts (its values do not change the timing)."""
    return mv.EmpiricalCDF({p: torch.linspace(-1, 1, size["m"]) for p in task.test_prompts[: size["eval_prompts"]]})


def projection(f: dict, c: dict = CHAPTER) -> dict:
    """Seconds for each part of the GPU preset's chapter 5, from the measured rates."""
    refs = (c["n_train"] * c["m_train"] + c["n_test"] * (c["m_test"] + c["n_pool"])) / f["reference_samples_per_s"]
    train = c["runs"] * c["steps"] * f["step_s"]
    evaluate = c["runs"] * c["n_test"] * c["spp"] / f["eval_samples_per_s"]
    return {"reference_samples_s": refs, "training_s": train, "evaluation_s": evaluate,
            "total_min": (refs + train + evaluate) / 60}


def check_arguments(args: argparse.Namespace) -> None:
    check_device(args.device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny models and batches: runs in seconds on a CPU")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="default: bf16 on CUDA, fp32 elsewhere")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parse_arguments(parser, argv, check_arguments, files=("--json",))
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    size = TINY if args.tiny else FULL
    figures = measure(size, device, precision)
    figures["projected_chapter"] = projection(figures)
    p = figures["projected_chapter"]
    print(f"device {figures['device']}, {precision}, torch {figures['torch']}; "
          f"{'TINY stand-ins' if args.tiny else 'GPT-2 small and DistilBERT-size stand-ins'}: "
          f"policy {figures['policy_parameters_M']:.1f} M, reward model {figures['reward_parameters_M']:.1f} M parameters")
    print(f"reference sampling      {figures['reference_samples_per_s']:10.1f} samples/s "
          f"({size['new_tokens']} new tokens, M = {size['m']})")
    print(f"RLOO step               {1 / figures['step_s']:10.3f} steps/s ({figures['step_s']:.3f} s per step of "
          f"{size['prompts']} prompts x {size['k']} samples)")
    print(f"  sampling              {figures['generated_tokens_per_s']:10.0f} generated tokens/s "
          f"({100 * figures['sample_share_of_step']:.0f}% of the step)")
    print(f"  forward + backward    {figures['fwd_bwd_tokens_per_s']:10.0f} tokens/s (policy and reference)")
    print(f"evaluation              {figures['eval_samples_per_s']:10.1f} samples/s")
    if "peak_memory_GiB" in figures:
        print(f"peak GPU memory         {figures['peak_memory_GiB']:10.2f} GiB")
    print(f"projected GPU-preset chapter 5 on this device: reference samples {p['reference_samples_s'] / 60:.1f} min "
          f"+ training {p['training_s'] / 60:.1f} min + evaluation {p['evaluation_s'] / 60:.1f} min "
          f"= {p['total_min']:.1f} min" + (" (tiny stand-ins: not a real projection)" if args.tiny else ""))
    if args.json:
        write_atomic(args.json, {"size": size, "chapter": CHAPTER, **figures})


if __name__ == "__main__":
    main()

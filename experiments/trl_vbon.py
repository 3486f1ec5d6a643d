"""vBoN-L with TRL's RLOOTrainer on one CPU or several GPUs (chapter 7): the reference CDFs first, then training.

    python experiments/trl_vbon.py --steps 30                                  # one process (CPU or one GPU)
    accelerate launch --config_file experiments/accelerate/multi_gpu.yaml experiments/trl_vbon.py \\
        --model gpt2 --reward lvwerra/distilbert-imdb --prompts imdb --n 4 --m 300 --steps 500
    accelerate launch --config_file experiments/accelerate/zero3.yaml experiments/trl_vbon.py --model <yours> ...

Step 1 runs in the main process only: M reference samples per training prompt, scored, saved atomically to
``--cdf`` (skipped when the file is already there: reference sets are expensive and never change). Every
process then waits for it and loads the same file with the safe loader, so all ranks score completions
against identical CDFs. Step 2 is TRL's RLOOTrainer with minivbon's reward function and a config whose beta
is 1/(N-1); accelerate (and DeepSpeed ZeRO-3 through it) spreads generation and training over the GPUs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the shared results_io
from results_io import check_count, check_positive, parse_arguments  # noqa: E402


def check_arguments(args: argparse.Namespace) -> None:
    for flag, minimum in (("--n", 2), ("--n-prompts", 1), ("--m", 1), ("--max-new-tokens", 1), ("--steps", 1),
                          ("--num-generations", 2), ("--batch-size", 1), ("--seed", 0)):
        check_count(getattr(args, flag[2:].replace("-", "_")), flag, minimum)
    check_positive(args.lr, "--lr")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder for the trained model")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub name or local path (default: the book's local GPT-2)")
    parser.add_argument("--reward", default="vader", help="'vader' or a sequence-classifier hub name / path")
    parser.add_argument("--prompts", default="local", choices=["local", "imdb"])
    parser.add_argument("--n-prompts", type=int, default=64, help="training prompts")
    parser.add_argument("--n", type=int, default=4, help="BoN's N: beta = 1/(N-1)")
    parser.add_argument("--m", type=int, default=64, help="reference samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="completions per device per step")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cdf", type=Path, default=Path("trl_vbon_out/reference_cdf.pt"))
    parser.add_argument("--out", type=Path, default=Path("trl_vbon_out"), help="folder for the trained model")
    args = parse_arguments(parser, argv, check_arguments, files=("--cdf",))

    import datasets
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import RLOOTrainer

    from minivbon import EmpiricalCDF, sentiment
    from minivbon.storage import load_safe, save_atomic
    from minivbon.trl import VBoNLReward, build_reference_cdf, vbon_rloo_config

    model_path = args.model or str(sentiment.require_data() / "local-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = sentiment.load_prompts(args.prompts, "train", tokenizer, args.n_prompts)  # id -> text
    state = PartialState()
    reward = sentiment.VaderReward() if args.reward == "vader" else sentiment.ClassifierReward(args.reward, state.device)

    # 1. the reference CDFs: built once, by the main process, then shared through one file
    if state.is_main_process and not args.cdf.exists():
        reference = AutoModelForCausalLM.from_pretrained(model_path).to(state.device).eval()
        cdf = build_reference_cdf(reference, tokenizer, prompts, reward, args.m, args.max_new_tokens, seed=args.seed)
        save_atomic({p: cdf.sorted[cdf.index[p], : int(cdf.counts[cdf.index[p]])] for p in prompts}, args.cdf)
        del reference
    state.wait_for_everyone()
    cdf = EmpiricalCDF(load_safe(args.cdf))

    # 2. TRL's RLOO with the vBoN-L reward and beta = 1/(N-1)
    data = datasets.Dataset.from_dict({"prompt": list(prompts.values()), "prompt_id": list(prompts)})
    config = vbon_rloo_config(args.n, output_dir=str(args.out), max_completion_length=args.max_new_tokens,
                              num_generations=args.num_generations, per_device_train_batch_size=args.batch_size,
                              learning_rate=args.lr, max_steps=args.steps, logging_steps=max(1, args.steps // 10),
                              save_strategy="no", gradient_checkpointing=False, seed=args.seed)
    trainer = RLOOTrainer(model=model_path, reward_funcs=VBoNLReward(cdf, reward), args=config, train_dataset=data,
                          processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(args.out / "model"))
    if state.is_main_process:
        last = [h for h in trainer.state.log_history if "reward" in h][-1]
        print(f"trained {args.steps} steps on {state.num_processes} process(es): last logged reward (log F_mid) "
              f"{last['reward']:.3f}, KL {last.get('kl', float('nan')):.3f}; model saved to {args.out / 'model'}")
    torch.distributed.destroy_process_group() if torch.distributed.is_initialized() else None


if __name__ == "__main__":
    main()

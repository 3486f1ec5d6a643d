"""minivbon.trl: the reward function under TRL's real calling convention, the config checks, and a short
RLOOTrainer run on the local model (CPU)."""
import math
import os
import warnings

import pytest
import torch

if os.environ.get("MINIVBON_REQUIRE_TRL"):  # CI installs the extra: there a missing trl must fail, not skip
    import trl
else:
    trl = pytest.importorskip("trl")

from minivbon import EmpiricalCDF, reference_cdf, sentiment  # noqa: E402
from minivbon.trl import (StepProgress, VBoNLReward, build_reference_cdf, check_vbon_config,  # noqa: E402
                          vbon_rloo_config)


def length_reward(texts):
    return torch.tensor([float(len(t)) for t in texts])


def test_reward_is_the_mid_rank_log_cdf_of_each_prompt():
    cdf = EmpiricalCDF({7: torch.tensor([1.0, 2.0, 3.0]), 9: torch.tensor([10.0, 20.0, 30.0])})
    reward = VBoNLReward(cdf, length_reward)
    out = reward(prompts=["ab", "ab", "ab"], completions=["", "c", "cdefghij"], completion_ids=[[], [1], [1] * 8],
                 prompt_id=[7, 7, 9])
    # lengths 2, 3, 10: F_mid = (1 + 1/2 + 1)/4, (2 + 1/2 + 1)/4, (0 + 1/2 + 1)/4
    assert out == pytest.approx([math.log(2.5 / 4), math.log(3.5 / 4), math.log(1.5 / 4)])
    with pytest.raises(KeyError, match="prompt_id"):
        reward(prompts=["a"], completions=["b"], other=[1])
    with pytest.raises(TypeError, match="conversational"):
        reward(prompts=[[{"role": "user", "content": "a"}]], completions=["b"], prompt_id=[7])
    with pytest.raises(ValueError, match="shape"):
        VBoNLReward(cdf, lambda texts: torch.zeros(len(texts) + 1))(prompts=["a"], completions=["b"], prompt_id=[7])
    with pytest.raises(TypeError, match="EmpiricalCDF"):
        VBoNLReward({7: [1.0]}, length_reward)


def test_config_keeps_beta_tied_to_n_and_refuses_what_breaks_it(tmp_path):
    config = vbon_rloo_config(4, output_dir=str(tmp_path))
    assert config.beta == pytest.approx(1 / 3) and config.disable_dropout and config.lr_scheduler_type == "constant"
    with pytest.raises(ValueError, match="beta is set by N"):
        vbon_rloo_config(4, output_dir=str(tmp_path), beta=0.0)
    for bad, match in [(dict(sync_ref_model=True), "sync_ref_model"), (dict(reward_clip_range=(-1.0, 0.0)), "clip"),
                       (dict(reward_weights=[2.0]), "reward_weights")]:
        with pytest.raises(ValueError, match=match):
            vbon_rloo_config(4, output_dir=str(tmp_path), **bad)
    with pytest.warns(UserWarning, match="normalize_advantages"):
        vbon_rloo_config(4, output_dir=str(tmp_path), normalize_advantages=True)
    with pytest.raises(ValueError, match="GRPO"):
        check_vbon_config(trl.GRPOConfig(output_dir=str(tmp_path), beta=1 / 3, bf16=False), 4)
    with pytest.raises(ValueError, match="1/\\(N-1\\)"):
        check_vbon_config(trl.RLOOConfig(output_dir=str(tmp_path), beta=0.05, bf16=False), 4)


@pytest.fixture(scope="module")
def local():
    task = sentiment.load_task("local", n_train=4, n_test=2, max_new_tokens=6)
    texts = sentiment.load_prompts("local", "train", task.policy.tokenizer, 4)  # id -> text, as a dataset holds them
    return task, texts


def test_reference_cdf_helper_matches_the_books_reference_sets(local):
    task, texts = local
    cdf = build_reference_cdf(task.reference.model, task.reference.tokenizer, texts, task.reward, m=8,
                              max_new_tokens=6, seed=0)
    same = reference_cdf(task.reference, task.train_prompts, task.reward_fn, 8, torch.Generator().manual_seed(0))
    assert torch.equal(cdf.sorted, same.sorted)


def test_a_short_rloo_trainer_run_calls_the_reward_as_tested_and_trains(local, tmp_path, capsys):
    import datasets
    from transformers import PrinterCallback

    task, texts = local
    cdf = build_reference_cdf(task.reference.model, task.reference.tokenizer, texts, task.reward, m=8,
                              max_new_tokens=6)
    reward = VBoNLReward(cdf, task.reward)
    seen = []

    def spy(prompts, completions, **columns):  # what TRL really passes, recorded
        out = reward(prompts, completions, **columns)
        seen.append((list(prompts), list(completions), list(columns["prompt_id"]), out))
        return out

    spy.__name__ = "vbon_l"
    data = datasets.Dataset.from_dict({"prompt": list(texts.values()), "prompt_id": list(texts)})
    config = vbon_rloo_config(4, output_dir=str(tmp_path), max_completion_length=6, num_generations=2,
                              per_device_train_batch_size=4, learning_rate=1e-3, max_steps=2, logging_steps=1,
                              save_strategy="no", gradient_checkpointing=False, seed=0, disable_tqdm=True)
    path = str(sentiment.require_data() / "local-gpt2")
    progress = StepProgress()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer = trl.RLOOTrainer(model=path, reward_funcs=spy, args=config, train_dataset=data,
                                  processing_class=task.policy.tokenizer, callbacks=[progress])
        trainer.remove_callback(PrinterCallback)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        capsys.readouterr()
        trainer.train()
    assert progress.steps == 2 and progress.bar is None  # the bar followed both steps and was closed
    assert "'loss'" not in capsys.readouterr().out  # and no log was printed beside it
    assert trainer.beta == pytest.approx(1 / 3)
    assert len(seen) == 2 and all(len(s[0]) == 4 for s in seen)  # 2 prompts x 2 generations per step
    for prompts, completions, ids, out in seen:
        assert all(texts[i] == p for i, p in zip(ids, prompts))  # the id column travels with its prompt
        raw = task.reward([p + c for p, c in zip(prompts, completions)])
        assert out == pytest.approx(cdf.log_cdf(ids, raw, ties="mid").tolist())
    assert any("kl" in h for h in trainer.state.log_history)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))


def test_the_launch_script_builds_the_cdf_once_and_trains(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "experiments" / "trl_vbon.py"), "--steps", "1", "--n-prompts", "4", "--m", "8",
           "--max-new-tokens", "4", "--num-generations", "2", "--batch-size", "4", "--cdf", str(tmp_path / "cdf.pt"),
           "--out", str(tmp_path / "out")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "trained 1 steps on 1 process(es)" in first.stdout
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
    stamp = (tmp_path / "cdf.pt").stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and (tmp_path / "cdf.pt").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_accelerate_configs_say_what_the_chapter_says():
    from pathlib import Path

    import yaml

    folder = Path(__file__).resolve().parents[1] / "experiments" / "accelerate"
    multi = yaml.safe_load((folder / "multi_gpu.yaml").read_text())
    zero3 = yaml.safe_load((folder / "zero3.yaml").read_text())
    assert multi["distributed_type"] == "MULTI_GPU" and multi["num_processes"] > 1
    assert zero3["distributed_type"] == "DEEPSPEED" and zero3["deepspeed_config"]["zero_stage"] == 3


def test_the_seed_comparison_script_scores_trl_runs_beside_the_sweep(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "t.json"
    done = subprocess.run([sys.executable, str(root / "experiments" / "trl_vs_loop.py"), "--seeds", "0", "--steps", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [r["seed"] for r in data["trl"]["runs"]] == [0] and 0 <= data["trl"]["win_rate"]["mean"] <= 1
    assert data["minivbon"]["seeds"] == [0, 1, 2] and data["trl_version"] == trl.__version__


def test_max_at_k_reward_sees_each_prompts_group_together_in_a_real_rloo_run(local, tmp_path):
    """TRL's RLOOTrainer hands MaxAtKReward each prompt's completions next to each other, as it assumes; the
    rewards it returns are PKPO's, group by group, and sum to 0 within each group."""
    import datasets

    from minivbon.pass_at_k import max_at_k_rewards
    from minivbon.trl import MaxAtKReward

    task, texts = local
    reward = MaxAtKReward(task.reward, k=2, group=3)
    seen = []

    def spy(prompts, completions, **columns):
        out = reward(prompts, completions, **columns)
        seen.append((list(prompts), list(completions), list(columns["prompt_id"]), out))
        return out

    spy.__name__ = reward.__name__
    data = datasets.Dataset.from_dict({"prompt": list(texts.values()), "prompt_id": list(texts)})
    config = trl.RLOOConfig(output_dir=str(tmp_path), max_completion_length=6, num_generations=3,
                            per_device_train_batch_size=6, learning_rate=1e-3, max_steps=2, logging_steps=1,
                            save_strategy="no", gradient_checkpointing=False, seed=0, disable_tqdm=True,
                            use_cpu=True, bf16=False, report_to="none", beta=0.1, disable_dropout=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer = trl.RLOOTrainer(model=str(sentiment.require_data() / "local-gpt2"), reward_funcs=spy, args=config,
                                  train_dataset=data, processing_class=task.policy.tokenizer)
        trainer.train()
    assert len(seen) == 2 and all(len(s[0]) == 6 for s in seen)  # 2 prompts x 3 generations per step
    for prompts, completions, ids, out in seen:
        assert ids[0:3] == [ids[0]] * 3 and ids[3:6] == [ids[3]] * 3 and ids[0] != ids[3]  # groups, consecutive
        raw = task.reward([p + c for p, c in zip(prompts, completions)]).double().view(2, 3)
        assert out == pytest.approx((3 * max_at_k_rewards(raw, 2)).view(-1).tolist())
        assert abs(sum(out[:3])) < 1e-9 and abs(sum(out[3:])) < 1e-9

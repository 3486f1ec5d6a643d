"""Faults in the distillation methods and the experiments: J-BOND's target, unread settings, all-or-nothing
state, provenance of results, input checks of distill and trl, and clear errors. Each test asserts the outcome, not just "no crash"."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minivbon import distill, storage
from minivbon.loop import TrainConfig, Trainer
from minivbon.objectives import EmpiricalCDF
from minivbon.toy import TabularPolicy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
BASE = dict(n=4, k=4, prompts_per_step=2, steps=4, lr=0.03, max_grad_norm=None)




def trainer(toy, **changes):
    world, ref, reward_fn, cdf = toy
    cfg = TrainConfig(**{**BASE, "method": "vbon", **changes})
    return Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0, 1], reward_fn, cfg, cdf=cdf)


# ---------------------------------------------------------------- 1. J-BOND distils exactly Best-of-n
@pytest.mark.parametrize("n,steps", [(8, 4), (8, 2), (16, 5), (4, 1), (32, 6)])
def test_hard_rounds_that_cannot_move_the_anchor_log2_n_minus_1_times_are_refused(n, steps):
    with pytest.raises(ValueError, match=r"log2\(n\)"):
        TrainConfig(method="jbond", n=n, steps=steps)


def test_explicit_anchor_every_must_give_log2_n_minus_1_moves():
    with pytest.raises(ValueError, match="moves it 9 times"):
        TrainConfig(method="jbond", n=8, anchor_every=1, steps=10)
    assert TrainConfig(method="jbond", n=8, anchor_every=4, steps=10).anchor_every == 4  # moves after 4 and 8


@pytest.mark.parametrize("n", [64, 8, 6, 3])
def test_an_ema_anchor_refuses_n_it_does_not_read(n):
    with pytest.raises(ValueError, match=f"n={n} is not read by jbond with a moving EMA anchor"):
        TrainConfig(method="jbond", n=n, anchor_ema=0.5)
    assert TrainConfig(method="jbond", anchor_ema=0.5).anchor_every == 1


# ---------------------------------------------------------------- 2. settings a method does not read
@pytest.mark.parametrize("method,setting", [("bon-sft", dict(beta=0.5)), ("bonbon", dict(beta=2.0)),
                                            ("jbond", dict(beta=0.5)), ("kl-rl", dict(ties="paper", beta=1.0)),
                                            ("vbon", dict(alpha=0.2)), ("vbon-l", dict(eta=0.2)),
                                            ("bond", dict(anchor_ema=0.5)), ("bonbon", dict(anchor_every=3))])
def test_a_setting_the_method_does_not_read_is_refused_naming_its_readers(method, setting):
    name = next(k for k in setting if k != "beta" or method != "kl-rl")
    with pytest.raises(ValueError, match=f"{name}=.* is not read by method '{method}'.*only .* read {name}"):
        TrainConfig(**{**BASE, "method": method, **setting})


def test_bond_and_jbond_with_non_default_weights_still_train(toy):
    for method in ("bond", "jbond"):
        t = trainer(toy, method=method, eta=0.3)
        t.run(progress=False)
        assert t.step == 4


# ---------------------------------------------------------------- 3. all-or-nothing state
@pytest.mark.parametrize("method", ["vbon", "bon-sft", "jbond"])
def test_an_interrupt_just_after_the_update_resumes_like_an_uninterrupted_run(toy, method):
    t, whole = trainer(toy, method=method), trainer(toy, method=method)
    whole.run(progress=False)
    real, calls = t.optimizer.step, []

    def step_then_interrupt(*a, **k):
        real(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    t.optimizer.step = step_then_interrupt
    t.run(progress=False)
    assert t.interrupted and t.step == 2 and [r["step"] for r in t.history] == [1, 2]
    t.optimizer.step = real
    t.run(progress=False)
    assert t.step == whole.step and all(torch.equal(a, b) for a, b in zip(t.policy.parameters(), whole.policy.parameters()))


def test_an_interrupt_while_sampling_changes_nothing(toy, monkeypatch):
    t, whole = trainer(toy), trainer(toy)
    whole.run(progress=False)
    t.run(steps=1, progress=False)
    real = t.policy.sample
    t.policy.sample = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    t.run(progress=False)
    assert t.interrupted and t.step == 1
    t.policy.sample = real
    t.run(progress=False)
    assert all(torch.equal(a, b) for a, b in zip(t.policy.parameters(), whole.policy.parameters()))


def test_an_interrupted_evaluation_is_finished_on_resume(toy):
    t, calls = trainer(toy, eval_every=2), []

    def evaluate(policy):
        calls.append(1)
        if len(calls) == 2:  # the evaluation after step 2
            raise KeyboardInterrupt
        return {"score": 1.0}

    t.evaluate = evaluate
    t.run(progress=False)
    assert t.step == 2 and t.eval_pending and "score" not in t.history[-1]
    t.run(progress=False)
    assert [("score" in r) for r in t.history] == [True, False, True, False, True]


@pytest.mark.parametrize("kind", ["no anchor", "bad policy", "bad optimizer", "bad step", "bad history", "bad anchor"])
def test_a_refused_checkpoint_changes_nothing(toy, tmp_path, kind):
    t = trainer(toy, method="jbond")
    t.run(progress=False)
    t.save(tmp_path / "a.pt")
    state = storage.load_safe(tmp_path / "a.pt")
    key, value = {"no anchor": ("anchor", None), "bad policy": ("policy", {"x": torch.zeros(1)}),
                  "bad optimizer": ("optimizer", {"state": {}, "param_groups": []}), "bad step": ("step", "x"),
                  "bad history": ("history", 5), "bad anchor": ("anchor", {"x": torch.zeros(1)})}[kind]
    state[key] = value
    storage.save_atomic(state, tmp_path / "b.pt")
    u = trainer(toy, method="jbond")
    before = [p.clone() for p in [*u.policy.parameters(), *u.anchor.parameters()]]
    with pytest.raises(ValueError, match="b.pt"):
        u.load(tmp_path / "b.pt")
    assert u.step == 0 and u.history == [] and not u.optimizer.state
    assert all(torch.equal(a, b) for a, b in zip(before, [*u.policy.parameters(), *u.anchor.parameters()]))


def test_a_save_removes_the_temporaries_of_a_killed_save_but_not_of_a_running_one(toy, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [tmp_path / ".run.pt.deadbeef.tmp", tmp_path / f".run.pt.{dead.stdout.strip()}-abc.tmp"]
    live = tmp_path / f".run.pt.{os.getpid()}-inprogress.tmp"
    for f in [*stale, live]:
        f.write_bytes(b"partial")
    trainer(toy).save(tmp_path / "run.pt")
    assert not any(f.exists() for f in stale) and live.exists()


# ---------------------------------------------------------------- 5. input checks of distill and trl
P = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], dtype=torch.float64)
R = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.2, 0.8]], dtype=torch.float64)


@pytest.mark.parametrize("probs,match", [(P * 3, "sum to 1"), (torch.tensor([[1.5, -0.5, 0.0]] * 2), "negative"),
                                         (P * math.nan, "NaN"), (P[0], r"\(P, S\)"), (P > 0.2, "bool")])
def test_best_worst_probs_and_jbond_expected_reward_check_the_law(probs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        distill.best_worst_probs(probs, R, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        distill.jbond_expected_reward(probs, R)


@pytest.mark.parametrize("gamma", [math.nan, 5.0, -0.5, 0, True, "a", None])
def test_ema_update_refuses_a_rate_outside_0_1(toy, gamma):
    world = toy[0]
    anchor = distill.make_anchor(TabularPolicy.from_first_order(world.ref_logits))
    with pytest.raises(ValueError, match="gamma must be a number in"):
        distill.ema_update(anchor, TabularPolicy.from_first_order(world.ref_logits), gamma)


@pytest.mark.parametrize("raw,anchor,match", [(torch.full((2, 3), math.nan), torch.zeros(2, 2), "raw contains NaN"),
                                              (torch.zeros(2, 3), torch.zeros(2, 3), r"anchor_raw must be \(P, 2\)"),
                                              (torch.zeros(2, 3), torch.full((2, 2), math.inf), "anchor_raw contains an infinite")])
def test_jbond_reward_checks_its_rewards(raw, anchor, match):
    with pytest.raises(ValueError, match=match):
        distill.jbond_reward(raw, anchor)


def test_best_and_worst_of_n_refuses_nan_rewards(toy):
    with pytest.raises(ValueError, match="non-finite"):
        distill.best_and_worst_of_n(toy[1], [0, 1], 2, lambda s: torch.full((len(s.prompt_ids),), math.nan))


@pytest.fixture(scope="module")
def trl_mod():
    pytest.importorskip("trl")
    import minivbon.trl as mtrl
    return mtrl


def reward_with(mtrl, out):
    cdf = EmpiricalCDF({"a": torch.tensor([0.0, 1.0, 2.0]), "b": torch.tensor([0.5, 1.5])})
    return mtrl.VBoNLReward(cdf, lambda texts: out(len(texts)))


@pytest.mark.parametrize("out,error", [(lambda b: torch.full((b,), math.inf), ValueError),
                                       (lambda b: torch.ones(b, dtype=torch.bool), TypeError),
                                       (lambda b: torch.zeros(b, dtype=torch.complex64), TypeError),
                                       (lambda b: [True] * b, TypeError)])
def test_the_trl_reward_refuses_what_the_loop_refuses(trl_mod, out, error):
    with pytest.raises(error, match="reward"):
        reward_with(trl_mod, out)(prompts=["x", "y"], completions=["1", "2"], prompt_id=["a", "b"])


@pytest.mark.parametrize("prompts,completions,ids", [(["x", "y"], ["1", "2", "3"], ["a", "b", "a"]),
                                                     ("xy", ["1", "2"], ["a", "b"]), (["x", "y"], ["1", "2"], "ab")])
def test_the_trl_reward_refuses_mismatched_or_str_inputs(trl_mod, prompts, completions, ids):
    with pytest.raises((TypeError, ValueError), match="one entry per completion"):
        reward_with(trl_mod, lambda b: torch.zeros(b))(prompts=prompts, completions=completions, prompt_id=ids)


@pytest.mark.parametrize("setting", [dict(top_k=50), dict(top_p=0.9), dict(min_p=0.1), dict(temperature=0.7),
                                     dict(mask_truncated_completions=True), dict(num_iterations=2),
                                     dict(num_generations=0)])
def test_check_vbon_config_refuses_every_setting_that_breaks_the_link(trl_mod, tmp_path, setting):
    name = next(iter(setting))
    with pytest.raises(ValueError, match=name):
        trl_mod.vbon_rloo_config(4, output_dir=str(tmp_path), **setting)


# ---------------------------------------------------------------- 4, 6. provenance and clear errors
def test_a_training_error_names_the_method_and_the_step(toy):
    world, ref, reward_fn, cdf = toy
    class NaNScores(TabularPolicy):  # samples fine, scores NaN: a model whose forward pass went bad
        def token_log_probs(self, samples):
            return super().token_log_probs(samples) * math.nan

    for method in ("vbon", "bonbon", "bond", "jbond"):
        policy = TabularPolicy.from_first_order(world.ref_logits)
        policy.__class__ = NaNScores
        t = Trainer(policy, ref, [0, 1], reward_fn, TrainConfig(**{**BASE, "method": method}), cdf=cdf)
        with pytest.raises(ValueError, match=f"policy's log-probabilities .*NaN.*method '{method}', step 1"):
            t.run(progress=False)


def test_an_infinite_reference_log_prob_is_not_called_a_reward(toy):
    world, ref, reward_fn, cdf = toy
    bad = TabularPolicy.from_first_order(world.ref_logits, "previous").requires_grad_(False)
    with torch.no_grad():
        bad.logits[..., 0] = -math.inf  # token 0 impossible under the reference
    t = Trainer(TabularPolicy.from_first_order(world.ref_logits), bad, [0, 1], reward_fn,
                TrainConfig(**{**BASE, "method": "vbon-l"}), cdf=cdf)
    with pytest.raises(ValueError, match="reference's log-probabilities .*infinite.*method 'vbon-l'"):
        t.run(progress=False)


def test_the_reference_cache_is_optional(monkeypatch, tmp_path):
    from minivbon import sentiment

    task = sentiment.load_task("local", n_train=2, n_test=2, max_new_tokens=4)
    with pytest.warns(UserWarning, match="could not write the reference cache"):
        cdf = sentiment.cached_reference_cdf(task, task.train_prompts, 2, cache_dir="/etc/passwd/cache")
    assert len(cdf) == 2


def test_a_wrong_data_folder_is_named(tmp_path):
    code = "from minivbon import sentiment; sentiment.load_task('local', n_train=2, n_test=2)"
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MINIVBON_DATA": str(tmp_path)},
                       capture_output=True, text=True)
    assert r.returncode != 0 and f"MINIVBON_DATA={tmp_path} is not the local backend's data folder" in r.stderr


def test_sweep_results_files_are_checked_before_any_work(tmp_path):
    import sentiment_sweep as sweep

    settings = {"preset": "tiny", **sweep.PRESETS["tiny"]}
    for content, match in [("{not json", "not a readable JSON"), ("[]", "JSON list"),
                           (json.dumps({"settings": settings, "runs": []}), "'runs' must map")]:
        (tmp_path / "s.json").write_text(content)
        with pytest.raises(SystemExit, match=match):
            sweep.read_results(tmp_path / "s.json", settings)


def test_a_resume_with_other_data_or_versions_is_refused_naming_what_differs(tmp_path):
    from minivbon.provenance import provenance
    from results_io import check_resume

    now = provenance({"kind": "local", "data_sha256": "aaa"})
    other = {**provenance({"kind": "local", "data_sha256": "bbb"}), "torch": "1.0"}
    with pytest.raises(SystemExit, match=r"torch: '1.0' -> .*fingerprint data_sha256: 'bbb' -> 'aaa'"):
        check_resume({"provenance": other, "runs": {}}, now, tmp_path / "s.json")
    check_resume({"provenance": now, "runs": {}}, now, tmp_path / "s.json")  # the same provenance resumes
    legacy = {"runs": {}, "library_version": now["library_version"], "torch": now["torch"]}
    with pytest.raises(SystemExit, match="records no provenance"):
        check_resume(legacy, now, tmp_path / "s.json")


def test_distill_world_refuses_steps_0_and_records_the_steps_run(tmp_path):
    out = tmp_path / "d.json"
    args = [sys.executable, str(ROOT / "experiments" / "distill_world.py"), "--seeds", "0", "--methods", "BoN-SFT",
            "--families", "first-order", "--out", str(out)]
    r = subprocess.run(args + ["--steps", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--steps must be at least 1" in r.stderr and not out.exists()
    r = subprocess.run(args + ["--steps", "3"], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    data = json.loads(out.read_text())
    assert data["settings"]["steps_run"] == {"first-order": 3} and data["runs"][0]["steps"] == 3
    assert data["provenance"]["fingerprint"]["kind"] == "toy world"


def test_bench_arguments_are_checked_before_the_measurement():
    sys.path.insert(0, str(ROOT / "bench"))
    import sweep_on_device as sod

    for text in ["vbon:1:0", "vbon:x:0", "vbon:2:-1"]:
        with pytest.raises(ValueError, match="--runs"):
            sod.parse_run(text)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: this torch has no CUDA"):
            sod.check_device("cuda")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_scale.py"), "--device", "cpu", "--tiny", "--json",
                        "/etc/passwd/x.json"], capture_output=True, text=True)
    assert r.returncode == 2 and "--json /etc/passwd/x.json cannot be written" in r.stderr

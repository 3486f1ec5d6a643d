"""Faults a careful user meets: kills and full disks during a save, planted pickles, NaN rewards, low
precision, bad settings, a non-editable install. Each test asserts the outcome, not just "no crash"."""
import dataclasses
import errno
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

import minivbon as mv
import minivbon.sentiment as sent
from minivbon import storage
from minivbon.toy import TabularPolicy, make_world
from minivbon.loop import TrainConfig, Trainer, rloo_advantages, train
from minivbon.policy import reference_cdf

ROOT = Path(__file__).resolve().parents[1]
CONFIG = TrainConfig(method="vbon", n=4, k=4, prompts_per_step=2, steps=3, lr=0.03, max_grad_norm=None)




def trainer_for(toy, **changes):
    world, ref, reward_fn, cdf = toy
    return Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0, 1], reward_fn,
                   dataclasses.replace(CONFIG, **changes), cdf=cdf)


# ---------------------------------------------------------------- saving: atomic, or not at all
def test_a_full_disk_during_save_keeps_the_previous_checkpoint(toy, tmp_path, monkeypatch):
    t = trainer_for(toy)
    t.run(progress=False)
    path = tmp_path / "run.pt"
    t.save(path)
    good = path.read_bytes()

    def half_then_full(obj, f):  # write half of the data, then fail as a full disk does
        f.write(b"\x80" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.torch, "save", half_then_full)
    t.run(steps=1, progress=False)
    with pytest.raises(OSError, match="No space left"):
        t.save(path)
    assert path.read_bytes() == good and list(tmp_path.iterdir()) == [path]  # old file intact, no temp left
    monkeypatch.undo()
    trainer_for(toy).load(path)


def test_history_that_cannot_be_loaded_safely_is_refused_before_replacing(toy, tmp_path):
    t = trainer_for(toy)
    t.run(progress=False)
    path = tmp_path / "run.pt"
    t.save(path)
    good = path.read_bytes()
    t.history.append({"step": 99, "note": threading.Lock})  # a class: not plain data
    with pytest.raises(TypeError, match="cannot be loaded back safely"):
        t.save(path)
    assert path.read_bytes() == good and list(tmp_path.iterdir()) == [path]


def test_a_process_killed_mid_save_leaves_the_old_checkpoint(tmp_path):
    path, flag = tmp_path / "run.pt", tmp_path / "writing"
    script = textwrap.dedent(f"""
        import time, torch
        from minivbon import storage
        storage.save_atomic({{"step": 1, "w": torch.ones(3)}}, {str(path)!r})
        real = torch.save
        def slow(obj, f):
            f.write(b"partial")
            f.flush()
            open({str(flag)!r}, "w").close()
            time.sleep(60)  # killed here
            real(obj, f)
        storage.torch.save = slow
        storage.save_atomic({{"step": 2, "w": torch.zeros(3)}}, {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(600):  # a hang guard, not a timing assertion
        if flag.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert flag.exists(), "the child never reached the middle of its save"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert storage.load_safe(path)["step"] == 1  # the first save, whole


def test_concurrent_readers_never_see_a_partial_file(tmp_path):
    path = tmp_path / "cache.pt"
    storage.save_atomic({"x": torch.zeros(200_000)}, path)
    errors, stop = [], threading.Event()

    def writer():
        for i in range(30):
            storage.save_atomic({"x": torch.full((200_000,), float(i))}, path)
        stop.set()

    def reader():
        while not stop.is_set():
            try:
                x = storage.load_safe(path)["x"]
                assert x.shape == (200_000,) and (x == x[0]).all()
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(e))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert errors == []


# ---------------------------------------------------------------- loading never runs code
class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path, marker):
    torch.save({"config": Payload(marker)}, path)  # torch's format, with a pickle that would run a command


def test_a_planted_checkpoint_is_refused_and_never_runs(toy, tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "run.pt"
    plant(path, marker)
    with pytest.raises(pickle.UnpicklingError):
        trainer_for(toy).load(path)
    assert not marker.exists()


def test_a_planted_or_cut_short_cache_is_a_miss_that_is_rebuilt(tmp_path):
    task = sent.load_task("local", n_train=3, n_test=1, max_new_tokens=4)
    first = sent.cached_reference_cdf(task, task.train_prompts, 4, cache_dir=tmp_path)
    (path,) = tmp_path.glob("refs-*.pt")
    marker = tmp_path / "pwned"
    for damage in ("plant", "truncate", "empty"):
        if damage == "plant":
            plant(path, marker)
        else:
            path.write_bytes(path.read_bytes()[:40] if damage == "truncate" else b"")
        with pytest.warns(UserWarning, match=f"unreadable reference cache {path}"):
            again = sent.cached_reference_cdf(task, task.train_prompts, 4, cache_dir=tmp_path)
        assert torch.equal(again.sorted, first.sorted) and not marker.exists()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # rebuilt: the next call reads it without a word
            sent.cached_reference_cdf(task, task.train_prompts, 4, cache_dir=tmp_path)


# ---------------------------------------------------------------- non-finite rewards, losses, gradients
@pytest.mark.parametrize("method", ["vbon", "vbon-l", "kl-rl", "bon-sft"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_reward_stops_training_before_any_change(toy, method, bad):
    world, ref, reward_fn, cdf = toy

    def poisoned(samples):
        r = reward_fn(samples).clone()
        r[1] = bad
        return r

    t = trainer_for(toy, method=method, beta=0.5 if method == "kl-rl" else None)
    t.reward_fn = poisoned
    before = t.policy.logits.detach().clone()
    with pytest.raises(ValueError, match=rf"1 non-finite .*\(method '{method}', step 1; no parameter was changed\)"):
        t.run(progress=False)
    assert torch.equal(t.policy.logits, before) and t.step == 0


def test_a_complex_reward_is_refused(toy):
    world, ref, reward_fn, cdf = toy
    t = trainer_for(toy, method="kl-rl", beta=1.0)
    t.reward_fn = lambda s: reward_fn(s).to(torch.complex128)
    with pytest.raises(TypeError, match="must return a real tensor"):
        t.run(progress=False)


def test_a_reward_of_the_wrong_shape_is_named(toy):
    world, ref, reward_fn, cdf = toy
    t = trainer_for(toy)
    t.reward_fn = lambda s: reward_fn(s)[:, None]
    with pytest.raises(ValueError, match=r"returned shape \(8, 1\) for 8 samples"):
        t.run(progress=False)


def test_a_non_finite_loss_stops_training_before_any_change(toy):
    world, ref, reward_fn, cdf = toy
    t = trainer_for(toy, method="kl-rl", beta=1.0)
    t.reward_fn = lambda s: torch.tensor([(-1) ** i * 1e308 for i in range(len(s.prompt_ids))], dtype=torch.float64)
    before = t.policy.logits.detach().clone()
    with pytest.raises(FloatingPointError, match="non-finite"):
        t.run(progress=False)
    assert torch.equal(t.policy.logits, before)


def test_best_of_n_refuses_nan_rewards(toy):
    world, ref, reward_fn, cdf = toy
    with pytest.raises(ValueError, match="non-finite"):
        mv.best_of_n(ref, [0, 1], 3, lambda s: torch.full((len(s.prompt_ids),), float("nan")))


# ---------------------------------------------------------------- precision
def test_low_precision_inputs_give_the_float64_answer():
    lf = torch.log(torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64))
    lp = torch.tensor([-5.0, -30.0, -2.0], dtype=torch.float64)
    exact = mv.log_bon_ratio(lf, lp, 1000)
    for dtype in (torch.float32, torch.bfloat16):
        got = mv.log_bon_ratio(lf.to(dtype), lp.to(dtype), 1000)
        want = mv.log_bon_ratio(lf.to(dtype).double(), lp.to(dtype).double(), 1000)  # same rounded inputs
        assert got.dtype == torch.float64 and torch.allclose(got, want, atol=1e-9)
    assert torch.isfinite(exact).all()


def test_kl_rl_policy_and_expected_reward_stay_finite_for_finite_input():
    p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    q = mv.kl_rl_policy(p, [1e308, -1e308], 1e-10)  # r/beta overflows
    assert torch.equal(q, torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.isfinite(mv.kl_rl_policy([0.0, 1.0], [1e308, -1e308], 1e-10)).all()
    assert mv.expected_reward(p, [1e308, 1e308]).item() == 1e308


def test_huge_n_is_cheap_or_refused_with_a_reason():
    assert torch.isfinite(mv.log_bon_ratio(torch.tensor([-0.1]), torch.tensor([-20.0]), 10**9)).all()  # O(1)
    with pytest.raises(ValueError, match="holds its n draws in memory"):
        mv.bon_sample([0.5, 0.5], [0.0, 1.0], 10**9, 1)


# ---------------------------------------------------------------- settings
@pytest.mark.parametrize("kwargs,error,match", [
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ({"k": "4"}, TypeError, "k must be an integer"),
    ({"steps": True}, TypeError, "steps must be an integer"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"ties": "half"}, ValueError, "ties must be"),
])
def test_bad_train_config(kwargs, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(CONFIG, **kwargs)


def test_whole_floats_are_converted_to_int():
    config = dataclasses.replace(CONFIG, steps=2.0, k=2.0, seed=3.0)
    assert (config.steps, config.k, config.seed) == (2, 2, 3) and all(type(v) is int for v in (config.steps, config.k))


@pytest.mark.parametrize("call,error,match", [
    (lambda: rloo_advantages(torch.ones(4), 1), ValueError, "k must be >= 2"),
    (lambda: rloo_advantages(torch.ones(5), 2), ValueError, r"must be \(prompts \* k,\)"),
    (lambda: sent.VaderReward()("abc"), TypeError, "list of strings"),
    (lambda: sent.load_task("local", n_train=-1), ValueError, "n_train must be >= 1"),
    (lambda: sent.load_task("local", temprature=0.5), TypeError, r"unknown settings \['temprature'\]; valid"),
    (lambda: make_world(num_prompts=2).reference().sample([-1]), ValueError, "prompt id -1 is out of range"),
    (lambda: make_world(num_prompts=2).reward([-1], torch.zeros(1, 6, dtype=torch.long)), ValueError, "prompt ids"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- a non-editable install finds its data
def test_non_editable_install_loads_the_local_backend(tmp_path):
    """``pip install .`` (a wheel, not -e) into a new virtual environment, then the local backend from
    another folder. The new environment borrows this one's dependencies through a path file, so the
    test needs no downloads; the project itself is installed fresh from the source tree."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "borrowed-deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, str(ROOT)],
                   check=True, cwd=tmp_path)
    code = ("import minivbon, minivbon.sentiment as s; t = s.load_task('local', n_train=2, n_test=1, max_new_tokens=4); "
            "print(minivbon.__file__); print(len(t.train_prompts), t.reward(['a great film']).item() > 0)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIVBON_DATA")}
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    where, result = out.stdout.strip().splitlines()[-2:]
    assert where.startswith(site) and result == "2 True"


# ---------------------------------------------------------------- edge values: each gets a clear error or a right answer
@pytest.mark.parametrize("call,error,match", [
    (lambda: mv.win_rate([0.5, 0.5], [0.6, 0.5], [0.0, 1.0]), ValueError, "ref_probs must sum to 1"),
    (lambda: dataclasses.replace(CONFIG, weight_decay=math.inf), ValueError, "weight_decay must be a finite"),
    (lambda: dataclasses.replace(CONFIG, weight_decay="0.1"), ValueError, "weight_decay must be a finite"),
    (lambda: make_world(peakedness=math.nan), ValueError, "peakedness must be a finite number"),
    (lambda: TabularPolicy(torch.zeros(1, 5, 2), 3, 2), ValueError, r"logits must be a \(prompts, 4, 3\) tensor"),
    (lambda: rloo_advantages(torch.tensor([1.0, math.nan]), 2), ValueError, "rewards contains NaN"),
    (lambda: mv.kl_k1([-math.inf], [-math.inf]), ValueError, "both -inf"),
])
def test_edge_values_get_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_edge_values_get_right_answers(toy, tmp_path):
    world, ref, reward_fn, cdf = toy
    assert rloo_advantages(torch.tensor([1e308, 1e308], dtype=torch.float64), 2).tolist() == [0.0, 0.0]  # no overflow
    assert rloo_advantages(torch.tensor([1.0, 2.0], dtype=torch.bfloat16), 2).dtype == torch.float64
    assert mv.kl_k3([-math.inf], [0.0]).item() == math.inf
    assert mv.log_bon_ratio([-math.inf], [-math.inf], 4).item() == -math.inf
    with pytest.raises(ValueError, match="duplicate"):
        reference_cdf(ref, [0, 0], reward_fn, 3)
    for content in [b"", b"not a torch file", b"PK\x03\x04cut"]:
        (tmp_path / "bad.pt").write_bytes(content)
        with pytest.raises(pickle.UnpicklingError, match="cannot be loaded safely"):
            trainer_for(toy).load(tmp_path / "bad.pt")
    storage.save_atomic({"step": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a minivbon checkpoint"):
        trainer_for(toy).load(tmp_path / "other.pt")

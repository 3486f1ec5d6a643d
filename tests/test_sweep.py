"""experiments/sentiment_sweep.py on its tiny preset: one results file, standard errors, frontier counts,
and a resume that re-runs only what is missing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import sentiment_sweep  # noqa: E402
import sweep_summary  # noqa: E402


def sweep(out, *extra):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "sentiment_sweep.py"), "--preset", "tiny",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


def test_tiny_sweep_writes_everything_and_resumes(tmp_path):
    out = tmp_path / "sweep.json"
    results, stdout = sweep(out)
    p = sentiment_sweep.PRESETS["tiny"]
    lr_runs, runs = sentiment_sweep.plan(p)
    assert len(results["lr_runs"]) == len(lr_runs) == len(sentiment_sweep.VARIANTS) * len(p["lr_grid"])
    assert len(results["runs"]) == len(runs) == 16  # 2 N x 4 core + 3 distillers at N = 4 + 4 extra seeds + 1 transform
    assert results["settings"]["preset"] == "tiny" and results["backend"] == "local" and results["library_version"]
    assert set(results["lr_choice"]) == set(sentiment_sweep.VARIANTS) and all(
        lr in p["lr_grid"] for lr in results["lr_choice"].values())
    run = results["runs"]["vbon|N=2|seed=0"]
    assert run["lr"] == results["lr_choice"]["vbon"] and run["steps"] == p["steps"]
    assert [c["step"] for c in run["curve"]] == list(range(0, p["steps"] + 1, p["eval_every"]))
    for metric in ["objective", "kl_to_bon", "kl_from_bon", "win_rate", "kl_k1", "kl_k3"]:
        assert run[metric + "_se"] >= 0 and metric in run["curve"][-1]
    assert run["objective"] == run["kl_to_bon"] and run["objective_name"] == "KL(q||pi_bon)"  # vBoN's own objective
    assert results["runs"]["kl-rl-cubed|N=4|seed=0"]["objective_name"] == "beta KL(q||pi) - E_q[r]"
    summary = results["summary"]
    assert set(summary["frontier_counts"]) == {"reward", "win_rate"} and summary["verdicts"]
    assert summary["converged"]["runs"] == 16 and "reference|N=4" in summary["table"]
    assert "frontier counts" in stdout and "learning rates chosen" in stdout
    # resume: drop one finished run; only it is trained again, the others are kept as they were
    dropped = results["runs"].pop("kl-rl|N=4|seed=1")
    out.write_text(json.dumps(results))
    again, _ = sweep(out)
    assert again["runs"]["kl-rl|N=4|seed=1"]["win_rate"] == dropped["win_rate"]  # seeded: the same numbers
    assert {k: v for k, v in again["runs"].items() if k != "kl-rl|N=4|seed=1"} == results["runs"]


def test_two_worker_processes_write_every_run_once(tmp_path):
    results, stdout = sweep(tmp_path / "sweep.json", "--workers", "2")
    lr_runs, runs = sentiment_sweep.plan(sentiment_sweep.PRESETS["tiny"])
    assert results["workers"] == 2 and "frontier counts" in stdout
    assert sorted(results["runs"]) == sorted(sentiment_sweep.key(r) for r in runs)
    assert sorted(results["lr_runs"]) == sorted(sentiment_sweep.key(r) for r in lr_runs)
    assert all(0 <= r["win_rate"] <= 1 and len(r["curve"]) >= 2 for r in results["runs"].values())


def test_frontier_counts_plateaus_and_matched_kl():
    import numpy as np

    on = sweep_summary.frontier_mask(np.array([0.1, 1.0, 0.5, 2.0, 1.5]), np.array([0.5, 0.9, 0.4, 0.95, 0.8]))
    assert on.tolist() == [True, True, False, True, False]
    twins = sweep_summary.frontier_mask(np.array([0.5, 0.5 + 3e-6, 0.6]), np.array([0.6, 0.6, 0.55]))
    assert twins.tolist() == [True, True, False]  # the same point up to rounding
    flat = [{"objective": 1.0, "objective_se": 0.1}, {"objective": 1.1, "objective_se": 0.1}]
    falling = [{"objective": 2.0, "objective_se": 0.1}, {"objective": 1.0, "objective_se": 0.1}]
    assert sweep_summary.plateaued(flat) and not sweep_summary.plateaued(falling)

    def run(v, n, seed, kl, win):
        return {"variant": v, "n": n, "seed": seed, "kl_k1": kl, "win_rate": win, "reward": win}

    # two methods on the same win-rate-KL line, one shifted up by 0.05: matched KL must see exactly that gap
    runs = {f"{v}{n}{s}": run(v, n, s, kl, win + (0.05 if v == "kl-rl" else 0) + 0.001 * s)
            for v in ("vbon", "kl-rl") for n, kl, win in ((2, 0.2, 0.6), (4, 0.6, 0.75), (8, 1.2, 0.85))
            for s in range(3)}
    m = sweep_summary.matched_kl(runs, ["vbon", "kl-rl"], points=3)
    assert m["grid_kl"][0] == pytest.approx(0.2) and m["grid_kl"][-1] == pytest.approx(1.2)
    assert all(d["mean"] == pytest.approx(0.05, abs=1e-3) and d["lo"] > 0 for d in m["minus_vbon"]["kl-rl"])
    counts = sweep_summary.frontier_counts(runs, ["vbon", "kl-rl"])
    assert counts["win_rate"]["kl-rl"]["mean"] == 3 and counts["win_rate"]["vbon"]["most_often"] == 0


def test_distill_world_script_records_every_run_and_the_spread(tmp_path):
    out = tmp_path / "d.json"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "distill_world.py"), "--seeds", "0,1",
                           "--steps", "3", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 2 * 7 * 2  # families x methods x seeds
    row = data["summary"]["whole-prefix|vBoN"]["win"]
    wins = [x["win"] for x in data["runs"] if x["family"] == "whole-prefix" and x["method"] == "vBoN"]
    assert row["mean"] == pytest.approx(sum(wins) / 2) and row["sd"] >= 0


def test_distill_world_script_runs_a_chosen_method_at_another_lr_and_refuses_unknown_names(tmp_path):
    script, out = str(ROOT / "experiments" / "distill_world.py"), tmp_path / "jb.json"
    done = subprocess.run([sys.executable, script, "--seeds", "0", "--steps", "2", "--methods", "J-BOND",
                           "--families", "whole-prefix", "--lr", "0.2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [(x["family"], x["method"]) for x in data["runs"]] == [("whole-prefix", "J-BOND")]
    assert data["settings"]["lr"] == data["runs"][0]["lr"] == 0.2 and list(data["summary"]) == ["whole-prefix|J-BOND"]
    for bad, flag in [(["--methods", "JBOND"], "--methods"), (["--lr", "0"], "--lr")]:
        refused = subprocess.run([sys.executable, script, *bad, "--out", str(tmp_path / "x.json")],
                                 capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and flag in refused.stderr and not (tmp_path / "x.json").exists()


def test_learning_rates_are_chosen_on_validation_prompts_never_trained_on_nor_held_out():
    p = sentiment_sweep.PRESETS["tiny"]
    sentiment_sweep.start_worker(p)
    w = sentiment_sweep._WORKER
    train, val, test = set(w["train"]), set(w["val"]["prompts"]), set(w["test"]["prompts"])
    assert len(train) == p["n_train"] and len(val) == p["n_val"] and len(test) == p["n_test"]
    assert not train & val and not val & test and not train & test
    assert list(w["val"]["pool"].prompts) == w["val"]["prompts"]  # the validation pool is the validation prompts'
    # the held-out references are two independent halves; the full set is their union
    full, half = w["test"]["cdf"], w["test"]["half"]
    assert torch.equal(full.counts, half.counts * 2)
    results = {"lr_runs": {f"{v}|{lr}": {"variant": v, "lr": lr, "objective": obj}
                           for v in sentiment_sweep.VARIANTS for lr, obj in zip(p["lr_grid"], [1.0, 0.5])}}
    assert set(sentiment_sweep.choose_lr(results, p).values()) == {p["lr_grid"][1]}  # the lowest objective wins

"""experiments/sentiment_sweep.py on its tiny preset: one results file, standard errors, frontier counts,
and a resume that re-runs only what is missing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import sentiment_sweep  # noqa: E402


def sweep(out, *extra):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "sentiment_sweep.py"), "--preset", "tiny",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


def test_tiny_sweep_writes_everything_and_resumes(tmp_path):
    out = tmp_path / "sweep.json"
    results, stdout = sweep(out)
    p = sentiment_sweep.PRESETS["tiny"]
    assert len(results["runs"]) == len(sentiment_sweep.plan(p)) == 2 * 2 * len(sentiment_sweep.METHODS) + 2  # N x seeds x methods + ablation
    assert results["settings"]["preset"] == "tiny" and results["backend"] == "local" and results["library_version"]
    run = results["runs"]["vbon|N=2|M=8|seed=0"]
    for metric in ["win_rate", "reward", "kl_k1", "kl_k3"]:
        assert run[metric + "_se"] >= 0 and run["eval_samples"] == p["n_test"] * p["samples_per_prompt"]
    assert set(results["summary"]["frontier_counts"]) == {"reward", "win_rate"}
    assert "frontier counts" in stdout and "break-even" in stdout
    # resume: drop one finished run; only it is trained again, the others are kept as they were
    dropped = results["runs"].pop("kl-rl|N=4|M=8|seed=1")
    out.write_text(json.dumps(results))
    again, _ = sweep(out)
    assert again["runs"]["kl-rl|N=4|M=8|seed=1"]["win_rate"] == dropped["win_rate"]  # seeded: the same numbers
    assert {k: v for k, v in again["runs"].items() if k != "kl-rl|N=4|M=8|seed=1"} == results["runs"]


def test_two_worker_processes_write_every_run_once(tmp_path):
    results, stdout = sweep(tmp_path / "sweep.json", "--workers", "2")
    assert results["workers"] == 2 and "frontier counts" in stdout
    assert sorted(results["runs"]) == sorted(sentiment_sweep.key(r) for r in sentiment_sweep.plan(sentiment_sweep.PRESETS["tiny"]))
    assert all(0 <= r["win_rate"] <= 1 and r["eval_samples"] > 0 for r in results["runs"].values())


def test_frontier_counts_and_standard_errors():
    import torch

    points = [("a", 0.1, 0.5), ("a", 1.0, 0.9), ("b", 0.5, 0.4), ("b", 2.0, 0.95), ("c", 1.5, 0.8)]
    assert sentiment_sweep.frontier_counts(points) == {"a": 2, "b": 1, "c": 0}
    twins = [("x", 0.5, 0.6), ("y", 0.5 + 3e-6, 0.6), ("z", 0.6, 0.55)]  # the same point up to rounding
    assert sentiment_sweep.frontier_counts(twins) == {"x": 1, "y": 1, "z": 0}
    mean, se = sentiment_sweep.mean_se(torch.tensor([1.0, 1.0, 3.0, 3.0]), 2)  # two prompts of two samples
    assert (mean, round(se, 6)) == (2.0, 1.0)


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

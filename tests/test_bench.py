"""bench/gpu_scale.py: its CPU smoke run prints every figure (the H100 run is a device check)."""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_scale_tiny_on_cpu_prints_every_phase(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_scale.py"), "--device", "cpu", "--tiny",
                          "--json", str(tmp_path / "f.json")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for phase in ["reference sampling", "RLOO step", "sampling", "forward + backward", "evaluation",
                  "projected GPU-preset chapter 5"]:
        assert phase in out.stdout, phase
    figures = json.loads((tmp_path / "f.json").read_text())
    for key in ["reference_samples_per_s", "generated_tokens_per_s", "fwd_bwd_tokens_per_s", "eval_samples_per_s"]:
        assert figures[key] > 0
    p = figures["projected_chapter"]
    assert abs(p["total_min"] * 60 - (p["reference_samples_s"] + p["training_s"] + p["evaluation_s"])) < 1e-6
    assert re.search(r"= \d+\.\d min", out.stdout)


def test_sweep_on_device_tiny_reproduces_the_sweeps_run(tmp_path):
    """The device check's run is the sweep's run: on a CPU it gives what train_and_score gives."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "sweep_on_device.py"), "--device", "cpu",
                          "--preset", "tiny", "--runs", "vbon:2:0,kl-rl:2:1", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = json.loads((tmp_path / "r.json").read_text())
    assert [(r["method"], r["n"], r["seed"]) for r in runs] == [("vbon", 2, 0), ("kl-rl", 2, 1)]
    for r in runs:
        assert 0 <= r["win_rate"] <= 1 and r["curve"][0]["step"] == 0 and r["steps"] > 0
        assert f"{r['win_rate']:.3f}" in out.stdout and f"{r['kl_to_bon']:.3f}" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "sweep_on_device.py"), "--device", "cpu",
                          "--preset", "tiny", "--runs", "ppo:2:0"], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--runs" in bad.stderr


def test_soft_bon_cost_prints_times_ratios_and_an_accurate_law():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "soft_bon_cost.py"), "--max-exponent", "2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"\s*100\s+\d+\s", line)]
    assert [int(row[1]) for row in rows] == [4, 100, 10_000, 1_000_000]
    assert all(float(row[-1]) < 1e-9 and float(row[-2]) > 0 for row in rows)  # |sum - 1| and the time ratio
    assert [line.split()[0] for line in out.stdout.splitlines()[-4:]] == ["1", "0.1", "0.01", "0.001"]
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "soft_bon_cost.py"), "--max-exponent", "9"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--max-exponent" in bad.stderr

"""experiments/summarization.py (chapter 8): the tiny preset runs, resumes without retraining and refuses a file
made with other settings; the committed results file has the schema the chapter reads."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "experiments" / "results" / "summarization.json"
TEMPERATURES = {"0.25", "0.5", "0.75", "1.0"}
RUN_FIELDS = {"method", "n", "beta", "seed", "steps", "lr", "curve", "temperature"} | {
    f"{s}{e}" for s in ("proxy", "gold", "kl_ref", "kl_to_bon", "win_proxy", "win_gold") for e in ("", "_se")}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("summarization_experiment", ROOT / "experiments" / "summarization.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = torch.get_num_threads()
    yield module
    torch.set_num_threads(before)  # main() runs torch on one thread


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def check_schema(results: dict, script, preset: str) -> None:
    """Every name chapter 8 reads, with finite numbers, and one run per planned (method, n, beta, seed)."""
    assert {"settings", "provenance", "reward_model", "bon_curve", "gao_fit", "bon_temperature", "runs",
            "bon4"} <= set(results)
    assert results["settings"]["preset"] == preset and results["provenance"]["fingerprint"]["kind"] == "summarization"
    for proxy in ("default", "weak"):
        rm = results["reward_model"][proxy]
        assert finite(rm["accuracy"]) and finite(rm["accuracy_se"]) and 0.5 < rm["accuracy"] < 1
        curve = results["bon_curve"][proxy]
        assert curve[0]["n"] == 1 and abs(curve[0]["kl"]) < 1e-12 and curve[-1]["n"] == 10_000
        assert all(finite(c[k]) for c in curve for k in ("n", "kl", "proxy", "gold"))
        assert all(a["kl"] < b["kl"] and a["proxy"] < b["proxy"] for a, b in zip(curve, curve[1:]))
        assert finite(results["gao_fit"][proxy]["alpha"]) and finite(results["gao_fit"][proxy]["beta"])
    assert set(results["bon_temperature"]) == TEMPERATURES
    assert all(finite(v[k]) for v in results["bon_temperature"].values()
               for k in ("proxy", "proxy_se", "gold", "gold_se", "kl"))
    bon4 = results["bon4"]
    assert all(finite(bon4[k]) for k in ("proxy", "proxy_se", "gold", "gold_se", "win_proxy", "win_proxy_se",
                                         "win_gold", "win_gold_se", "kl_ref"))
    p = {**script.PRESETS[preset], "seeds": results["settings"]["seeds"]}
    assert set(results["runs"]) == {script.run_key(*r) for r in script.plan(p, script.CONFIG["n"])}
    for key, run in results["runs"].items():
        assert RUN_FIELDS <= set(run) and key == script.run_key(run["method"], run["n"], run["beta"], run["seed"])
        assert all(finite(run[k]) for k in RUN_FIELDS - {"method", "curve", "temperature"})
        assert run["curve"][0]["step"] == 0 and run["curve"][-1]["step"] == run["steps"]
        assert all(finite(c["objective"]) for c in run["curve"])
        assert set(run["temperature"]) == TEMPERATURES
        assert all(finite(v[k]) for v in run["temperature"].values() for k in ("proxy", "proxy_se", "gold", "gold_se"))
        assert run["temperature"]["1.0"]["proxy"] == pytest.approx(run["proxy"], abs=1e-12)


def test_the_tiny_preset_runs_resumes_without_retraining_and_refuses_other_settings(script, tmp_path, monkeypatch,
                                                                                   capsys):
    out = tmp_path / "s.json"
    script.main(["--preset", "tiny", "--out", str(out)])
    first = json.loads(out.read_text())
    check_schema(first, script, "tiny")

    trained = []
    real_train = script.train
    monkeypatch.setattr(script, "train", lambda *a, **k: trained.append(a[3:7]) or real_train(*a, **k))
    script.main(["--preset", "tiny", "--out", str(out)])  # everything done: nothing is trained again
    again = json.loads(out.read_text())
    assert trained == [] and again["runs"] == first["runs"] and again["lr_runs"] == first["lr_runs"]

    gone = script.run_key("kl-rl", 4, 1.0, 0)
    del again["runs"][gone]
    out.write_text(json.dumps(again))
    script.main(["--preset", "tiny", "--out", str(out)])  # an interrupted file: only the missing run is trained
    assert trained == [("kl-rl", 4, 1.0, 0)]
    resumed = json.loads(out.read_text())
    assert resumed["runs"][gone] == first["runs"][gone]  # the same run again, bit for bit

    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"other settings .*seeds: \[0\] -> \[1\]"):
        script.main(["--preset", "tiny", "--out", str(out), "--seeds", "1"])
    assert json.loads(out.read_text()) == resumed and len(trained) == 1


def test_the_committed_results_file_has_the_schema_of_chapter_8(script):
    results = json.loads(COMMITTED.read_text())
    check_schema(results, script, "full")
    assert results["sizes"] == {"train": 50, "val": 20, "test": 42}
    assert results["summary"]["quality_bar"]["passes"]  # vBoN reaches 80% of BoN(4)'s proxy win rate
    assert set(results["lr_choice"]) == set(script.CONFIG["methods"])

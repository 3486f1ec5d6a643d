"""experiments/results_io.py, the scripts' shared module: the atomic writer, mean_se, argument checks that name
their flag, and a resume that skips finished runs and refuses foreign files; distill_world.py resuming; every
bench script importable without running."""
import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import results_io  # noqa: E402
from minivbon.provenance import provenance  # noqa: E402


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "r.json"
    results_io.write_atomic(path, {"runs": [1]})  # the folder is made
    with pytest.raises(TypeError):
        results_io.write_atomic(path, {"runs": [object()]})  # not JSON: fails half-way through
    assert json.loads(path.read_text()) == {"runs": [1]} and sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_mean_se_is_the_mean_and_the_standard_error_over_values():
    s = results_io.mean_se([1.0, 2.0, 4.0])  # mean 7/3; variance (16 + 1 + 25)/9/2 = 7/3; se = sqrt(7/3 / 3)
    assert s["mean"] == pytest.approx(7 / 3, abs=1e-15) and s["se"] == pytest.approx(math.sqrt(7) / 3, abs=1e-15)
    one = results_io.mean_se([0.25])
    assert one["mean"] == 0.25 and math.isnan(one["se"])


def parser(tmp_path):
    p = argparse.ArgumentParser()
    results_io.add_run_arguments(p, seeds="0,1", out=tmp_path / "r.json")
    p.add_argument("--steps", type=int, default=3)
    return p


def check(args):
    results_io.check_count(args.steps, "--steps")


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,x"], "--seeds must be comma-separated whole numbers >= 0, got '0,x'"),
    (["--seeds", "1,-2"], "--seeds must be whole numbers >= 0"),
    (["--seeds", "1,2,1"], "--seeds names a seed more than once"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--out", "."], "--out . is a folder"),
    (["--out", "/etc/passwd/r.json"], "--out /etc/passwd/r.json cannot be written"),
])
def test_bad_arguments_are_refused_naming_the_flag(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        results_io.parse_arguments(parser(tmp_path), argv, check)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_good_arguments_are_parsed(tmp_path):
    args = results_io.parse_arguments(parser(tmp_path), ["--seeds", "3,0"], check)
    assert args.seeds == [3, 0] and args.out == tmp_path / "r.json" and args.steps == 3
    with pytest.raises(ValueError, match="--device .gpu0. is not a torch device"):
        results_io.check_device("gpu0")
    assert results_io.results_path("x") == ROOT / "experiments" / "results" / "x.json"


def test_a_resume_reads_its_file_and_refuses_foreign_ones_naming_what_differs(tmp_path):
    path, settings = tmp_path / "r.json", {"n": 4, "base": {"lr": 0.1}}
    now = provenance({"kind": "toy world", "world_sha256": "aaa"})
    assert results_io.read_results(path, settings, now) == {}  # no file: start afresh
    results = {"settings": settings, "provenance": now, "runs": {"a|0": {"seed": 0}}}
    results_io.write_atomic(path, results)
    assert results_io.read_results(path, settings, now, fields=("seed",)) == results
    refusals = [
        (settings | {"base": {"lr": 0.2}}, now, {}, "other settings (recorded -> now: base.lr: 0.1 -> 0.2)"),
        (settings, provenance({"kind": "toy world", "world_sha256": "bbb"}), {}, "world_sha256: 'aaa' -> 'bbb'"),
        (settings, now, {"runs": list}, "'runs' must be a list of run records"),
    ]
    for wanted, current, parts, message in refusals:
        with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
            results_io.read_results(path, wanted, current, parts=parts or None, fields=("seed",))
    with pytest.raises(SystemExit, match=r"'runs' must map run keys to run records \(with seed, curve\)"):
        results_io.read_results(path, settings, now, fields=("seed", "curve"))
    for content, message in [("{oops", "not a readable JSON"), ("[1]", "holds a JSON list"), ("{}", "no settings")]:
        path.write_text(content)
        with pytest.raises(SystemExit, match=message):
            results_io.read_results(path, settings, now)
    path.write_text(json.dumps({"settings": settings, "runs": {}}))  # made before provenance was recorded
    with pytest.raises(SystemExit, match="records no provenance"):
        results_io.read_results(path, settings, now)


def test_distill_world_resumes_skipping_finished_runs_and_refuses_other_settings(tmp_path, capsys):
    import distill_world

    out = tmp_path / "d.json"
    argv = ["--seeds", "0", "--steps", "5", "--out", str(out)]
    with torch.random.fork_rng():
        distill_world.main(argv)
        first = json.loads(out.read_text())
        assert len(first["runs"]) == len(distill_world.METHODS) * len(distill_world.FAMILIES)
        assert first["settings"]["steps_run"] == {"whole-prefix": 5, "first-order": 5}
        assert first["settings"]["base"] == distill_world.CONFIG["base"]
        text = out.read_text()
        distill_world.main(argv)  # everything done: nothing trained, the file untouched
        assert "nothing to run" in capsys.readouterr().out and out.read_text() == text
        dropped = first["runs"].pop(3)
        out.write_text(json.dumps(first))
        distill_world.main(argv)  # only the missing run is trained, to the same numbers (seeded)
        again = json.loads(out.read_text())
    assert again["runs"][:-1] == first["runs"] and again["runs"][-1] == dropped
    assert again["summary"] == json.loads(text)["summary"]
    with pytest.raises(SystemExit, match=r"steps: 5 -> 6"):
        distill_world.main(["--seeds", "0", "--steps", "6", "--out", str(out)])
    with pytest.raises(SystemExit, match=r"seeds: \[0\] -> \[0, 1\]"):
        distill_world.main(["--seeds", "0,1", "--steps", "5", "--out", str(out)])
    again["provenance"]["torch"] = "1.0"
    out.write_text(json.dumps(again))
    with pytest.raises(SystemExit, match=r"torch: '1.0' ->"):
        distill_world.main(argv)


def test_distill_world_settings_are_the_shared_config():
    config = json.loads((ROOT / "experiments" / "configs" / "distill_world.json").read_text())
    import distill_world

    assert distill_world.CONFIG == config and config["base"]["n"] == config["N"]
    assert set(config["families"]) == {"whole-prefix", "first-order"} and "KL-RL" in config["methods"]


def load_bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, work, argv, message", [
    ("inference_cost", "sentiment.load_task", ["--prompts", "0"], "--prompts must be at least 1, got 0"),
    ("inference_cost", "sentiment.load_task", ["--m", "-1"], "--m must be at least 1, got -1"),
    ("gpu_scale", "measure", ["--device", "tpu9"], "--device 'tpu9' is not a torch device"),
    ("gpu_scale", "measure", ["--device", "cpu", "--json", "/etc/passwd/f.json"],
     "--json /etc/passwd/f.json cannot be written"),
    ("sweep_on_device", "sweep.start_worker", ["--device", "cpu", "--runs", "vbon:1:0"], "--runs: in 'vbon:1:0'"),
])
def test_bench_scripts_import_without_running_and_check_arguments_first(name, work, argv, message, monkeypatch,
                                                                         capsys):
    monkeypatch.setattr(sys, "argv", [name, "--not-a-flag"])  # a script that parsed on import would exit here
    module = load_bench(name)
    owner, attribute = work.rsplit(".", 1) if "." in work else ("", work)
    target = getattr(module, owner) if owner else module

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(target, attribute, no_work)
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err

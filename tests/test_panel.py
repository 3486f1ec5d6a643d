"""Chapter 5's control panel (book/panel.py): Train runs in a thread, Stop ends it and keeps the history."""
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
import panel  # noqa: E402

import minivbon.sentiment as sent  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    task = sent.load_task("local", n_train=8, n_test=4, max_new_tokens=8)
    cdf = sent.reference_cdf(task.reference, task.train_prompts, task.reward_fn, 8)
    preset = dict(steps=3, prompts_per_step=2, k=2, lr=1e-4, seed=0)
    return task, cdf, preset


def wait_for(condition, limit=120):
    for _ in range(limit * 10):  # a hang guard, not a timing assertion
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("the panel's training thread did not finish")


def widgets_of(box):
    out = []
    for child in box.children:
        out += widgets_of(child) if hasattr(child, "children") else [child]
    return out


def test_train_button_trains_and_stop_keeps_the_history(setup):
    task, cdf, preset = setup
    results = {}
    box = panel.control_panel(task, cdf, preset, results)
    n, tie, beta, method, steps, train, halt, status = [w for w in widgets_of(box)
                                                       if not w.__class__.__name__ == "Output"]
    assert beta.disabled and beta.value == pytest.approx(1 / 3)  # tied to 1/(N-1) for N = 4
    n.value = 5
    assert beta.value == pytest.approx(1 / 4)

    train.click()
    wait_for(lambda: not train.disabled)
    (label, trainer), = results.items()
    assert "vbon N=5" in label and trainer.step == 3 and len(trainer.history) == 3 and not trainer.interrupted

    steps.value = 10_000
    method.value = "kl-rl"
    train.click()
    halt.click()  # stop right away: the run ends early and its history is kept
    wait_for(lambda: len(results) == 2)
    stopped = results[[k for k in results if k.startswith("kl-rl")][0]]
    assert stopped.interrupted and stopped.step < 10_000 and len(stopped.history) == stopped.step
    assert "stopped" in status.value

"""Chapter 5's control panel (book/panel.py), driven through its Python callbacks.

tests/test_browser.py uses the same panel with the mouse in JupyterLab; these tests pin the rules
that make it safe: one run at a time, settings read at the click, controls locked during a run, Stop
keeps the history, a failure or a warning is reported in the panel, the plot is drawn without pyplot.
"""
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
import panel  # noqa: E402

import minivbon as mv  # noqa: E402
import minivbon.sentiment as sent  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    task = sent.load_task("local", n_train=8, n_test=4, max_new_tokens=8)
    cdf = sent.reference_cdf(task.reference, task.train_prompts, task.reward_fn, 8)
    test_cdf = sent.reference_cdf(task.reference, task.test_prompts, task.reward_fn, 8, torch.Generator().manual_seed(1))
    preset = dict(steps=3, prompts_per_step=2, k=2, lr=1e-4, seed=0, samples_per_prompt=2)
    return task, cdf, test_cdf, preset


def wait_for(condition, limit=120):
    for _ in range(limit * 10):  # a hang guard, not a timing assertion
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("the panel's training thread did not finish")


def test_train_runs_once_with_the_settings_of_the_click(setup):
    task, cdf, test_cdf, preset = setup
    results = {}
    p = panel.control_panel(task, cdf, preset, results, test_cdf)
    assert p.beta.disabled and p.beta.value == pytest.approx(1 / 3)  # tied to 1/(N-1) for N = 4
    p.n.value = 6
    assert p.beta.value == pytest.approx(1 / 5)
    gate = threading.Event()
    real_train = panel.train_method

    def held(*args, **kwargs):  # hold the run until the test has clicked and changed things
        gate.wait(60)
        return real_train(*args, **kwargs)

    panel.train_method = held
    try:
        p.train.click()
        p.train.click()  # a double-click: the second is ignored
        assert all(w.disabled for w in p.inputs) and p.train.disabled and not p.halt.disabled
        p.n.value = 8  # a locked control changed by code: the running job keeps the settings of the click
        gate.set()
        wait_for(lambda: not p.running)
    finally:
        panel.train_method = real_train
    (label, trainer), = results.items()
    assert "vbon N=6" in label and trainer.config.n == 6 and trainer.step == 3 and not trainer.interrupted
    assert p.runs_started == 1 and "done" in p.status.value
    assert "win rate" in p.report.value and "BoN(6)" in p.report.value
    assert not p.train.disabled and p.halt.disabled and not any(w.disabled for w in p.inputs if w is not p.beta)
    assert p.image.value[:8] == b"\x89PNG\r\n\x1a\n" and p.image.layout.display != "none"  # the live plot was drawn


def test_stop_keeps_the_history(setup):
    task, cdf, test_cdf, preset = setup
    results = {}
    p = panel.control_panel(task, cdf, preset, results)
    p.steps.value = 10_000
    p.method.value = "kl-rl"
    p.tie.value = False
    p.train.click()
    p.halt.click()  # stop right away: the run ends early and its history is kept
    wait_for(lambda: not p.running)
    (stopped,) = results.values()
    assert stopped.interrupted and stopped.step < 10_000 and len(stopped.history) == stopped.step
    assert "stopped" in p.status.value and not p.train.disabled


def test_two_panels_sharing_one_results_dict_never_overwrite_a_run(setup):
    task, cdf, test_cdf, preset = setup
    results = {}
    first, second = (panel.control_panel(task, cdf, preset, results) for _ in range(2))
    for p in (first, second):
        p.steps.value = 1
        p.train.click()
        wait_for(lambda: not p.running)
    assert len(results) == 2 and sorted(k[-7:] for k in results) == ["(run 1)", "(run 2)"], list(results)


def test_bon_sft_with_beta_untied_trains_without_a_beta(setup):
    """bon-sft does not read beta: the panel leaves it unset, or the config would refuse the run."""
    task, cdf, test_cdf, preset = setup
    results = {}
    p = panel.control_panel(task, cdf, preset, results)
    p.method.value, p.tie.value, p.steps.value = "bon-sft", False, 1
    assert p.settings()["beta"] is None
    p.train.click()
    wait_for(lambda: not p.running)
    assert "done" in p.status.value, p.status.value
    (trainer,) = results.values()
    assert trainer.config.method == "bon-sft" and trainer.config.beta is None and "done" in p.status.value


def test_bon_aware_gets_the_samples_per_prompt_it_needs(setup):
    """bon-aware needs k >= N + 1 policy samples per prompt: the panel raises the preset's k to it, and the
    method, which must be given a beta, is given the slider's."""
    task, cdf, test_cdf, preset = setup
    results = {}
    p = panel.control_panel(task, cdf, preset, results)
    p.method.value, p.n.value, p.steps.value = "bon-aware", 6, 1
    assert p.settings()["beta"] == pytest.approx(p.beta.value)
    p.train.click()
    wait_for(lambda: not p.running)
    assert "done" in p.status.value, p.status.value
    (trainer,) = results.values()
    assert trainer.config.k == max(preset["k"], 7) and trainer.config.n == 6


def test_a_failed_run_is_reported_and_unlocks_the_panel(setup, monkeypatch):
    task, cdf, test_cdf, preset = setup
    p = panel.control_panel(task, cdf, preset, {})

    def broken(*args, **kwargs):
        warnings.warn("a warning the student should see")
        raise RuntimeError("reward model <unavailable>")

    monkeypatch.setattr(panel, "train_method", broken)
    p.train.click()
    wait_for(lambda: not p.running)
    assert "failed" in p.status.value and "&lt;unavailable&gt;" in p.status.value  # escaped for HTML
    assert not p.train.disabled and not p.method.disabled


def test_warnings_of_a_run_show_in_the_panel(setup, monkeypatch):
    task, cdf, test_cdf, preset = setup
    p = panel.control_panel(task, cdf, preset, {})
    real = panel.train_method

    def noisy(*args, **kwargs):
        warnings.warn("learning rate looks large")
        return real(*args, **kwargs)

    monkeypatch.setattr(panel, "train_method", noisy)
    p.train.click()
    wait_for(lambda: not p.running)
    assert "UserWarning: learning rate looks large" in p.report.value


def test_live_plot_draws_without_pyplot(setup):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot = panel.LivePlot("t", image=panel.widgets.Image())
    plot.draw([{"step": 1, "reward": 0.1, "kl_k1": 0.0}, {"step": 2, "reward": 0.2, "kl_k1": 0.1}])
    assert plot.png()[:4] == b"\x89PNG" and plt.get_fignums() == before


def test_no_broken_image_before_the_first_run(setup):
    # an ipywidgets Image without a value shows the browser's broken-image icon: hide it until a picture exists
    task, cdf, test_cdf, preset = setup
    p = panel.control_panel(task, cdf, preset, {})
    assert p.image.value[:8] == b"\x89PNG\r\n\x1a\n" or p.image.layout.display == "none"
    assert "ready" in p.status.value


def history(steps):
    return [{"step": s, "reward": 0.1 * s, "kl_k1": 0.05 * s} for s in range(1, steps + 1)]


@pytest.mark.parametrize("steps", [2, 5, 12, 30, 500])
def test_live_plot_ticks_steps_as_whole_numbers(setup, steps):
    plot = panel.LivePlot("t", image=panel.widgets.Image(), bon_reward=0.4, kl_bound=0.6)
    plot.draw(history(steps))
    plot.png()  # draws the figure: ticks as shown
    for ax in (plot.ax_r, plot.ax_kl):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_live_plot_legend_covers_no_panel(setup):
    plot = panel.LivePlot("t", image=panel.widgets.Image(), bon_reward=0.4, kl_bound=0.6)
    plot.draw(history(30))
    renderer = plot.fig.canvas.get_renderer()
    (legend,) = plot.fig.legends
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in (plot.ax_r, plot.ax_kl))
    assert [t.get_text() for t in legend.get_texts()][-1] == "BoN(N): held-out reward (left), KL bound (right)"
    assert plot.png()[:4] == b"\x89PNG"


class FakeBar:
    made = []

    def __init__(self, total, **kwargs):
        self.total, self.n, self.updates, self.closed = total, 0, [], False
        FakeBar.made.append(self)

    def update(self, n):
        self.n += n
        self.updates.append(n)

    def close(self):
        self.closed = True


def test_sampling_progress_counts_tokens_and_changes_no_sample(setup, monkeypatch):
    task, *_ = setup
    monkeypatch.setattr(panel, "tqdm", FakeBar)
    FakeBar.made = []
    prompts = task.test_prompts * 3
    plain = task.reference.sample(prompts, torch.Generator().manual_seed(5))
    with panel.sampling_progress(task.reference, len(prompts), "samples"):
        counted = task.reference.sample(prompts, torch.Generator().manual_seed(5))
    assert torch.equal(plain.tokens, counted.tokens) and plain.extra["texts"] == counted.extra["texts"]
    (bar,) = FakeBar.made  # one bar, filled and closed
    assert bar.total == len(prompts) * task.reference.max_new_tokens and bar.n == bar.total and bar.closed
    assert bar.updates[:2] == [len(prompts)] * 2  # one model call per new token, on the whole batch
    with panel.sampling_progress(task.reference, len(prompts), "cached"):
        pass  # the model is never called (a cache hit): no bar at all
    assert len(FakeBar.made) == 1
    assert not task.reference.model._forward_hooks  # the hook is removed


def test_bon_win_rate_plug_in_matches_the_continuous_formula():
    # distinct rewards: BoN(n) against the empirical law of M atoms has win rate sum_j pi_bon(j) (j + 1/2) / M
    m, n = 50, 4
    cdf = mv.EmpiricalCDF(torch.randn(3, m, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    j = torch.arange(m, dtype=torch.float64)
    bon = ((j + 1) / m) ** n - (j / m) ** n  # pi_bon of the j-th smallest atom
    assert panel.bon_win_rate(cdf, n) == pytest.approx(((j + 0.5) / m * bon).sum().item(), abs=1e-12)
    assert panel.bon_win_rate(cdf, 1) == pytest.approx(0.5, abs=1e-12)


def test_bad_inputs_are_refused_naming_the_argument(setup):
    task, cdf, test_cdf, preset = setup
    cases = [
        (lambda: panel.control_panel(task, [1.0], preset, {}), TypeError, "cdf must be an EmpiricalCDF"),
        (lambda: panel.control_panel(task, cdf, preset, {}, test_cdf="x"), TypeError, "test_cdf must be"),
        (lambda: panel.control_panel(task, cdf, preset, []), TypeError, "results must be a dict"),
        (lambda: panel.control_panel(task, cdf, {"steps": 3}, {}), ValueError, "missing k, lr, prompts_per_step, seed"),
        (lambda: panel.control_panel("task", cdf, preset, {}), TypeError, "task must be a SentimentTask"),
        (lambda: panel.LivePlot(window=0), ValueError, "window"),
        (lambda: panel.LivePlot(kl_bound=float("nan")), ValueError, "kl_bound must be a finite number"),
        (lambda: panel.LivePlot(title=3), TypeError, "title must be a str"),
        (lambda: panel.train_method(task, cdf, {"method": "vbon"}), TypeError, "config must be a TrainConfig"),
        (lambda: panel.bon_win_rate(cdf, 0), ValueError, "n"),
        (lambda: panel.bon_win_rate(None, 4), TypeError, "cdf must be an EmpiricalCDF"),
    ]
    for make, error, words in cases:
        with pytest.raises(error, match=words):
            make()
    with pytest.raises(ValueError, match="samples"):
        with panel.sampling_progress(task.reference, -1, "x"):
            pass

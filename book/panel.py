"""Chapter 5's training helpers: a live reward/KL plot and an ipywidgets control panel.

The plot updates in place through a display handle (not clear_output), so it works under nbval
and in a saved notebook. The panel trains in a background thread, so its Stop button stays
responsive; stopping keeps the history.
"""
from __future__ import annotations

import threading

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

import minivbon as mv


class LivePlot:
    """Mean reward and KL estimate (k1) of the training batches against the step, redrawn in place."""

    def __init__(self, title: str = ""):
        self.fig, (self.ax_r, self.ax_kl) = plt.subplots(1, 2, figsize=(9, 3))
        self.title = title
        self.handle = display(self.fig, display_id=True)
        plt.close(self.fig)

    def update(self, trainer: mv.Trainer) -> None:
        if self.handle is None:  # not in a notebook: nothing to draw on
            return
        steps = [h["step"] for h in trainer.history if "reward" in h]
        for ax, key, label in [(self.ax_r, "reward", "mean reward of batch"), (self.ax_kl, "kl_k1", "KL estimate k1 (nats)")]:
            ax.clear()
            ax.plot(steps, [h[key] for h in trainer.history if "reward" in h])
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        self.fig.suptitle(self.title)
        self.fig.tight_layout()
        self.handle.update(self.fig)


def train_method(task, cdf, method: str, n: int, beta: float | None, preset: dict, plot: LivePlot | None = None,
                 stop: threading.Event | None = None, steps: int | None = None) -> mv.Trainer:
    """Train a fresh copy of the reference with one method; update ``plot`` every few steps; ``stop`` ends early."""
    config = mv.TrainConfig(method=method, n=n, beta=beta, k=preset["k"], prompts_per_step=preset["prompts_per_step"],
                            steps=steps or preset["steps"], lr=preset["lr"], seed=preset["seed"])

    def callback(trainer):
        if plot is not None and (trainer.step % 5 == 0 or trainer.step == config.steps):
            plot.update(trainer)
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt

    policy = task.reference.clone(trainable=True)
    return mv.train(policy, task.reference, task.train_prompts, task.reward_fn, config, cdf=cdf, callback=callback,
                    progress=False)


def control_panel(task, cdf, preset: dict, results: dict) -> widgets.VBox:
    """Sliders for N and beta (beta tied to 1/(N-1) by a toggle), a method selector, a steps box, Train and
    Stop buttons and a live plot. Each finished (or stopped) run is stored in ``results[label]``."""
    n = widgets.IntSlider(value=4, min=2, max=32, description="N")
    beta = widgets.FloatLogSlider(value=1 / 3, base=10, min=-2, max=0.5, description="beta")
    tie = widgets.Checkbox(value=True, description="beta = 1/(N-1)")
    method = widgets.Dropdown(options=["vbon", "vbon-l", "kl-rl", "bon-sft"], value="vbon", description="method")
    steps = widgets.BoundedIntText(value=preset["steps"], min=1, max=10_000, description="steps")
    train, halt = widgets.Button(description="Train", button_style="success"), widgets.Button(description="Stop")
    status, out = widgets.Label("ready"), widgets.Output()
    stop = threading.Event()

    def sync(_=None):
        beta.disabled = tie.value
        if tie.value:
            beta.value = 1 / (n.value - 1)

    def run():
        label = f"{method.value} N={n.value} beta={beta.value:.3g}"
        try:
            with out:
                plot = LivePlot(label)
            fixed_beta = None if tie.value and method.value != "kl-rl" else beta.value
            trainer = train_method(task, cdf, method.value, n.value, fixed_beta, preset, plot, stop, steps.value)
            results[label] = trainer
            status.value = f"{'stopped' if trainer.interrupted else 'done'}: {label}, {trainer.step} steps (history kept)"
        except Exception as e:  # a failed run must not leave the panel stuck
            status.value = f"failed: {label}: {e}"
        finally:
            train.disabled = False

    def start(_):
        stop.clear()
        train.disabled = True
        status.value = "training..."
        threading.Thread(target=run, daemon=True).start()

    n.observe(sync, "value")
    tie.observe(sync, "value")
    train.on_click(start)
    halt.on_click(lambda _: stop.set())
    sync()
    return widgets.VBox([widgets.HBox([n, tie, beta]), widgets.HBox([method, steps, train, halt]), status, out])

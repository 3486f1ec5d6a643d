"""Chapter 5's training helpers: a live reward/KL plot, progress bars, and an ipywidgets control panel.

Both draw with a matplotlib ``Figure`` rendered to PNG bytes on the Agg canvas, never with pyplot, so
drawing from the panel's training thread is safe. Where the picture goes:

- in a cell that trains in the foreground, a display handle (``LivePlot(title, ...)``), so the saved
  notebook keeps the final picture for readers;
- in the panel, an ``ipywidgets.Image`` whose ``value`` is replaced. JupyterLab applies widget
  updates sent from any thread, but not display-handle updates inside an ``Output`` widget.

The panel runs one training at a time in a background thread. A run's settings are read once, at
the click; during a run the controls are locked and only Stop is live; Stop keeps the history. When
a run ends it is scored on the held-out prompts next to BoN(N).
"""
from __future__ import annotations

import contextlib
import html
import io
import math
import re
import threading
import warnings

import ipywidgets as widgets
import torch
from IPython.display import Image, display
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from tqdm.auto import tqdm

import minivbon as mv
from minivbon import sentiment
from minivbon.checks import check_int
from minivbon.methods import METHODS
from notebook_widgets import Interactive, log_int_slider

# run labels held by panels whose run has not reached ``results`` yet, per results dict: two panels that share
# one dict never give two runs the same label (the second would overwrite the first)
_LABELS_LOCK, _LABELS_HELD = threading.Lock(), set()


PRESET_KEYS = ("steps", "k", "prompts_per_step", "lr", "seed")  # what a panel run reads from its preset


def _optional_number(x, name: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number or None, got {x!r}")
    return float(x)


def _check_cdf(cdf, name: str, optional: bool = False):
    if (cdf is not None or not optional) and not isinstance(cdf, mv.EmpiricalCDF):
        raise TypeError(f"{name} must be an EmpiricalCDF (sentiment.cached_reference_cdf), got {type(cdf).__name__}")
    return cdf


class LivePlot:
    """Mean reward and KL estimate (k1) of the training batches against the step, redrawn in place.

    Each panel shows the per-step values (faint), their running mean over ``window`` steps, and, when
    given, BoN(N)'s held-out reward and KL bound as dashed reference lines (``bon_reward``, ``kl_bound``).
    """

    def __init__(self, title: str = "", image: widgets.Image | None = None, bon_reward: float | None = None,
                 kl_bound: float | None = None, window: int = 5):
        if not isinstance(title, str):
            raise TypeError(f"title must be a str, got {type(title).__name__}")
        if image is not None and not isinstance(image, widgets.Image):
            raise TypeError(f"image must be an ipywidgets.Image or None, got {type(image).__name__}")
        bon_reward, kl_bound = _optional_number(bon_reward, "bon_reward"), _optional_number(kl_bound, "kl_bound")
        window = check_int(window, "window")
        self.fig = Figure(figsize=(9, 3.6), dpi=80)  # 720 px wide: fits a 736 px web-edition column
        FigureCanvasAgg(self.fig)
        self.ax_r, self.ax_kl = self.fig.subplots(1, 2)
        self.title, self.image, self.handle = title, image, None
        self.reference = {"reward": bon_reward, "kl_k1": kl_bound}
        self.window = window
        self.draw([])
        if image is None:  # foreground training: a display handle, kept in the saved notebook
            self.handle = display(Image(self.png()), display_id=True)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png")
        return buffer.getvalue()

    def draw(self, history: list[dict]) -> None:
        rows = [h for h in history if "reward" in h]  # training steps (evaluation rows have no batch reward)
        for ax, key, label in [(self.ax_r, "reward", "mean reward of batch"),
                               (self.ax_kl, "kl_k1", "KL estimate k1 (nats)")]:
            ax.clear()  # also resets the tick locators: set them again below
            logged = [h for h in rows if key in h]  # bon-sft and bonbon sample only the reference: no KL logged
            steps, values = [h["step"] for h in logged], [h[key] for h in logged]
            ax.plot(steps, values, "o", ms=2.5, color="C0", alpha=0.35, label="per step")
            if values:
                windows = [values[max(0, i - self.window + 1): i + 1] for i in range(len(values))]
                means = [sum(w) / len(w) for w in windows]
                ax.plot(steps, means, "-", color="C0", lw=2, label=f"running mean ({self.window} steps)")
            if rows and self.reference[key] is not None:
                ax.axhline(self.reference[key], color="k", ls="--", lw=1)
            ax.set_xlabel("training step")
            ax.set_ylabel(label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
            ax.grid(alpha=0.3)
            if not logged:  # an empty frame: no axis ticks to read yet
                ax.set_xticks([])
                ax.set_yticks([])
                note = "waiting for the first step" if not rows else "not logged by this method"
                ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
        self.fig.legends.clear()
        if rows:  # one legend below both panels, where it cannot cover a point
            handles, labels = self.ax_r.get_legend_handles_labels()
            if self.reference_label():
                handles.append(Line2D([], [], color="k", ls="--", lw=1))
                labels.append(self.reference_label())
            self.fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
        self.fig.suptitle(self.title)
        self.fig.tight_layout(rect=(0, 0.08, 1, 1))

    def reference_label(self) -> str:
        """The legend entry of the dashed lines: BoN(N)'s held-out reward (left), its KL bound (right)."""
        parts = [name for key, name in [("reward", "held-out reward (left)"), ("kl_k1", "KL bound (right)")]
                 if self.reference[key] is not None]
        return "BoN(N): " + ", ".join(parts) if parts else ""

    def update(self, trainer: mv.Trainer) -> None:
        self.draw(trainer.history)
        if self.image is not None:
            self.image.value = self.png()
        elif self.handle is not None:
            self.handle.update(Image(self.png()))


@contextlib.contextmanager
def sampling_progress(policy, samples: int, desc: str):
    """A progress bar over the tokens that ``policy`` generates inside the ``with`` block, for ``samples``
    continuations of at most ``policy.max_new_tokens`` tokens each.

    A forward hook on the policy's model counts them: ``generate`` runs the model once per new token on the
    whole batch. The hook only reads the batch size, so the samples are exactly those drawn without it. The
    bar appears at the first model call, so a block that never calls the model (samples read from a cache)
    shows none; it is filled when the block ends (a batch stops early once every row has ended its text).
    """
    samples = check_int(samples, "samples", minimum=0)
    if not hasattr(policy, "model") or not hasattr(policy, "max_new_tokens"):
        raise TypeError(f"policy must be an LMPolicy (with .model and .max_new_tokens), got {type(policy).__name__}")
    bar = None

    def count(module, args, kwargs, output):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=samples * policy.max_new_tokens, desc=desc, unit="token")
        bar.update(output.logits.shape[0])

    hook = policy.model.register_forward_hook(count, with_kwargs=True)
    try:
        yield
        if bar is not None:
            bar.update(max(0, bar.total - bar.n))
    finally:
        hook.remove()
        if bar is not None:
            bar.close()


def train_method(task, cdf, config: mv.TrainConfig, plot: LivePlot | None = None,
                 stop: threading.Event | None = None, every: int = 5, progress: bool = False,
                 evaluate=None) -> mv.Trainer:
    """Train a fresh copy of the reference with ``config``; redraw ``plot`` every ``every`` steps and at the
    end; ``stop`` ends the run early (its history is kept); ``progress``: a tqdm bar over the steps (not from
    the panel's background thread); ``evaluate(policy) -> dict``, if given, is added to the history at step 0
    and every ``config.eval_every`` steps."""

    if not isinstance(config, mv.TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if plot is not None and not isinstance(plot, LivePlot):
        raise TypeError(f"plot must be a LivePlot or None, got {type(plot).__name__}")
    every = check_int(every, "every")

    def callback(trainer):
        if plot is not None and (trainer.step % every == 0 or trainer.step == config.steps or stop_requested()):
            plot.update(trainer)
        if stop_requested():
            raise KeyboardInterrupt

    def stop_requested():
        return stop is not None and stop.is_set()

    policy = task.reference.clone(trainable=True)
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be a function of the policy or None, got {type(evaluate).__name__}")
    return mv.train(policy, task.reference, task.train_prompts, task.reward_fn, config, cdf=cdf, callback=callback,
                    progress=progress, evaluate=evaluate)


def bon_win_rate(cdf: mv.EmpiricalCDF, n: int) -> float:
    """BoN(n)'s win rate against the reference, exact for the empirical reference law of each prompt:
    its M reference rewards, each with probability 1/M (ties count half). Averaged over prompts."""
    _check_cdf(cdf, "cdf")
    n = check_int(n, "n")
    rates = []
    for row, m in zip(cdf.sorted, cdf.counts.tolist()):
        rewards = row[:m]
        probs = torch.full((m,), 1.0 / m, dtype=torch.float64)
        rates.append(mv.win_rate(mv.bon_probs(probs, rewards, n), probs, rewards).item())
    return sum(rates) / len(rates)


class ControlPanel(Interactive):
    """Sliders for N and beta (beta tied to 1/(N-1) by a toggle), a method, a number of steps, Train and Stop,
    a live plot, a status line and a report. Finished (or stopped) runs are stored in ``results[label]``."""

    def __init__(self, task, cdf, preset: dict, results: dict, test_cdf: mv.EmpiricalCDF | None = None,
                 every: int = 2):
        _check_cdf(cdf, "cdf")
        _check_cdf(test_cdf, "test_cdf", optional=True)
        if not isinstance(results, dict):
            raise TypeError(f"results must be a dict (finished runs are stored in it), got {type(results).__name__}")
        if not isinstance(preset, dict) or set(PRESET_KEYS) - set(preset):
            missing = sorted(set(PRESET_KEYS) - set(preset)) if isinstance(preset, dict) else list(PRESET_KEYS)
            raise ValueError(f"preset must be a dict with {', '.join(PRESET_KEYS)}; missing {', '.join(missing)}")
        for name in ("reference", "train_prompts", "reward_fn"):
            if not hasattr(task, name):
                raise TypeError(f"task must be a SentimentTask (sentiment.load_task), got {type(task).__name__} "
                                f"without .{name}")
        every = check_int(every, "every")
        wide = widgets.Layout(width="320px")
        self.n = log_int_slider(4, [2, 3, 4, 6, 8, 12, 16, 24, 32], "N")  # equal steps on a log scale
        self.n.layout = wide
        self.beta = widgets.FloatLogSlider(value=1 / 3, base=10, min=-2, max=0.5, description="beta",
                                           continuous_update=False, readout_format=".3f", layout=wide)
        self.tie = widgets.Checkbox(value=True, description="beta = 1/(N-1)", indent=False,
                                    layout=widgets.Layout(width="150px"))
        self.method = widgets.Dropdown(options=list(METHODS), value="vbon",  # every method of minivbon.methods
                                       description="method", layout=widgets.Layout(width="220px"))
        self.steps = widgets.BoundedIntText(value=preset["steps"], min=1, max=10_000, description="steps",
                                            layout=widgets.Layout(width="180px"))
        self.train = widgets.Button(description="Train", button_style="success")
        self.halt = widgets.Button(description="Stop", disabled=True)
        self.status = widgets.HTML("ready: press Train; the run's live plot appears below")
        self.report = widgets.HTML("")
        # hidden until a run draws its first picture: an Image without a value shows as a broken image
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", display="none"))
        self.task, self.cdf, self.test_cdf, self.preset, self.results, self.every = task, cdf, test_cdf, preset, results, every
        self.stop, self.thread, self.runs_started = threading.Event(), None, 0
        self.inputs = [self.n, self.beta, self.tie, self.method, self.steps]
        self.n.observe(self._sync, "value")
        self.tie.observe(self._sync, "value")
        self.train.on_click(self._start)
        self.halt.on_click(lambda _: self.stop.set())
        self._sync()
        wrap = widgets.Layout(flex_flow="row wrap")
        super().__init__([widgets.HBox([self.n, self.tie, self.beta], layout=wrap),
                          widgets.HBox([self.method, self.steps, self.train, self.halt], layout=wrap),
                          self.status, self.image, self.report],
                         note="training control panel")

    def _sync(self, _=None) -> None:
        self.beta.disabled = self.tie.value or self.running
        if self.tie.value:
            self.beta.value = 1 / (self.n.value - 1)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def settings(self) -> dict:
        """The run's settings, read from the controls now (at the click)."""
        method, n = self.method.value, self.n.value
        row = METHODS[method]  # a method that does not read beta (bon-sft, ...) leaves it unset
        tied = self.tie.value and "beta" not in row.requires  # kl-rl is always given the slider's beta
        beta = None if "beta" not in row.reads or tied else float(self.beta.value)
        return {"method": method, "n": n, "beta": beta, "steps": self.steps.value}

    def _lock(self, locked: bool) -> None:
        for w in self.inputs:
            w.disabled = locked
        self.train.disabled, self.halt.disabled = locked, not locked
        if not locked:
            self._sync()

    def _start(self, _=None) -> None:
        if self.running:  # a second click while a run is on: ignored (click handlers run one at a time)
            return
        run = self.settings()
        beta_text = f"{run['beta']:.3g}" if run["beta"] is not None else f"1/(N-1) = {1 / (run['n'] - 1):.3g}"
        beta_text = f" beta={beta_text}" if "beta" in METHODS[run["method"]].reads else ""  # bon-sft, ...: no beta
        self.runs_started += 1
        label = self._claim_label(f"{run['method']} N={run['n']}{beta_text} steps={run['steps']}")
        self.stop.clear()
        self._lock(True)
        self.status.value = f"training: {label}"
        self.report.value = ""
        self.thread = threading.Thread(target=self._run, args=(run, label), daemon=True)
        self.thread.start()

    def _claim_label(self, settings: str) -> str:
        """``settings (run k)``, k one more than the highest run number of this results dict, stored or running."""
        with _LABELS_LOCK:
            taken = list(self.results) + [label for key, label in _LABELS_HELD if key == id(self.results)]
            numbers = [int(m.group(1)) for label in taken if (m := re.search(r"\(run (\d+)\)$", str(label)))]
            label = f"{settings} (run {max(numbers, default=0) + 1})"
            _LABELS_HELD.add((id(self.results), label))
        return label

    def _run(self, run: dict, label: str) -> None:
        notes = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plot = LivePlot(label, image=self.image, kl_bound=mv.bon_kl_bound(run["n"]))
                self.image.value = plot.png()
                self.image.layout.display = None  # shown from the first picture on
                p, row = self.preset, METHODS[run["method"]]
                k = max(p["k"], row.least_k(run["n"]))  # bon-aware needs n + 1
                config = mv.TrainConfig(method=run["method"], n=run["n"], beta=run["beta"], k=k,
                                        prompts_per_step=p["prompts_per_step"], steps=run["steps"], lr=p["lr"],
                                        seed=p["seed"], ties="aware")
                trainer = train_method(self.task, self.cdf, config, plot, self.stop, self.every)
                self.results[label] = trainer
                done = "stopped" if trainer.interrupted else "done"
                self.status.value = f"scoring on held-out prompts ({done} after {trainer.step} steps): {label}"
                self.report.value = self.score(trainer, run["n"])
                self.status.value = f"{done}: {label}, {trainer.step} steps (history kept in results)"
            notes = [f"{w.category.__name__}: {w.message}" for w in caught]
        except Exception as e:  # a failed run must not leave the panel stuck
            self.status.value = html.escape(f"failed: {label}: {type(e).__name__}: {e}")
        finally:
            if notes:
                self.report.value += "<br>" + "<br>".join(f"<code>{html.escape(n)}</code>" for n in notes[:5])
            with _LABELS_LOCK:
                _LABELS_HELD.discard((id(self.results), label))
            self._lock(False)

    def score(self, trainer: mv.Trainer, n: int) -> str:
        """Held-out win rate and KL of the trained policy, next to BoN(n)'s, as one HTML line."""
        if self.test_cdf is None:
            return ""
        spp = self.preset.get("samples_per_prompt", 4)
        e = sentiment.evaluate_policy(self.task, trainer.policy, self.task.test_prompts, self.test_cdf, spp, seed=3)
        wins = e["per_sample"]["win_rate"]  # (P * spp,) in prompt order
        per_prompt = wins.view(len(self.task.test_prompts), spp).mean(1)  # a prompt's samples are correlated
        se = per_prompt.std().item() / math.sqrt(per_prompt.numel())
        return (f"held-out ({wins.numel()} samples): <b>win rate {e['win_rate']:.3f} ± {se:.3f}</b>, "
                f"KL k1 {e['kl_k1']:.2f} / k3 {e['kl_k3']:.2f} nats &nbsp;|&nbsp; "
                f"BoN({n}): win rate {bon_win_rate(self.test_cdf, n):.3f}, KL ≤ {mv.bon_kl_bound(n):.2f} (bound)")


def control_panel(task, cdf, preset: dict, results: dict, test_cdf: mv.EmpiricalCDF | None = None) -> ControlPanel:
    """Build the panel (display it as the last expression of a cell)."""
    return ControlPanel(task, cdf, preset, results, test_cdf)

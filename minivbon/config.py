"""Everything that defines a training run: the method and its settings, checked when built.

What each method reads, needs and samples is its row in :mod:`minivbon.methods`; the checks here read that
table, so a new method brings its own rules with its row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .checks import check_int, check_positive, check_weight
from .methods import METHODS, method as method_row, readers

# the method-specific settings; a method that does not read one (its row's ``reads``) refuses a value other
# than the default, naming the methods that read it
SETTINGS = ("beta", "ties", "alpha", "eta", "anchor_ema", "anchor_every")


@dataclass
class TrainConfig:
    """Everything that defines a run. ``beta=None`` means 1/(n-1) (vbon, vbon-l, dpo, bond); kl-rl needs a beta."""

    method: str = "vbon-l"
    n: int = 4
    beta: float | None = None
    k: int = 4  # samples per prompt (RLOO needs >= 2); bon-sft: prompts_per_step * k samples per step, n per prompt
    prompts_per_step: int = 8
    steps: int = 100
    lr: float = 3e-4
    lr_schedule: str = "constant"  # or "cosine", from lr down to 0 (see lr_at)
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0  # AdamW's decay pulls weights to 0, not to the reference: off by default
    seed: int = 0
    eval_every: int = 10
    ties: str = "aware"  # vbon/vbon-l rewards "aware" of tied rewards, or as the "paper"'s code (a tie is a loss)
    alpha: float = 0.5  # bonbon: weight of the SFT term (1 - alpha on the IPO contrast)
    eta: float = 0.5  # bond, jbond: weight of the backward KL in the Jeffreys divergence
    anchor_ema: float = 1.0  # jbond: 1 = hard rounds (anchor <- policy); < 1 = the paper's moving EMA anchor
    anchor_every: int | None = None  # jbond: steps between anchor updates (default: ceil(steps/log2(n)) if hard, else 1)
    # Settings a method does not read (its row's ``reads``) are refused unless left at their default. jbond with hard rounds
    # distils Best-of-2 log2(n) times: the anchor moves exactly log2(n) - 1 times, or the config is refused.
    # jbond with an EMA anchor (anchor_ema < 1) distils Best-of-2 of an ever-moving anchor, which is no
    # Best-of-n for any fixed n: n is not read there, and a value other than its default (4) is refused.

    def __post_init__(self):
        row = method_row(self.method)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.ties not in ("aware", "paper"):
            raise ValueError(f"ties must be 'aware' or 'paper', got {self.ties!r}")
        # integer fields: a whole float (4.0) is converted to int, anything else is a TypeError
        self.n = check_int(self.n, "n", minimum=row.min_n)
        self.k = check_int(self.k, "k", minimum=row.min_k)
        if self.k < row.least_k(self.n):
            raise ValueError(f"k must be >= {row.least_k(self.n)} for method {self.method!r} at n = {self.n} "
                             f"(samples per prompt grow with n), got {self.k}")
        for name in ("prompts_per_step", "steps", "eval_every"):
            setattr(self, name, check_int(getattr(self, name), name, minimum=1))
        self.seed = check_int(self.seed, "seed", minimum=0)
        check_positive(self.lr, "lr")
        if self.beta is not None:
            check_positive(self.beta, "beta")
        for name in row.requires:
            if getattr(self, name) is None:
                raise ValueError(f"{name} must be given for method {self.method!r}")
        if self.max_grad_norm is not None:
            check_positive(self.max_grad_norm, "max_grad_norm")
        for name in ("alpha", "eta", "anchor_ema"):  # checked, not converted: the config keeps what it was given
            check_weight(getattr(self, name), name, low_open=name == "anchor_ema")
        if self.anchor_every is not None:
            self.anchor_every = check_int(self.anchor_every, "anchor_every", minimum=1)
        self._refuse_unread_settings()
        if row.check is not None:
            row.check(self)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")

    def _refuse_unread_settings(self) -> None:
        defaults = {f.name: f.default for f in fields(self)}
        for name in SETTINGS:
            if name not in METHODS[self.method].reads and getattr(self, name) != defaults[name]:
                raise ValueError(f"{name}={getattr(self, name)!r} is not read by method {self.method!r} and would "
                                 f"change nothing; only {', '.join(readers(name))} read {name}: leave it at its "
                                 f"default ({defaults[name]!r})")

    def check_jbond_rounds(self) -> None:
        """Hard rounds: n a power of 2 and exactly log2(n) - 1 anchor moves; EMA anchor: n left at its default."""
        if not self.hard_rounds:
            if self.n != 4:
                raise ValueError(f"n={self.n} is not read by jbond with a moving EMA anchor (anchor_ema="
                                 f"{self.anchor_ema}): it distils Best-of-2 of an anchor that moves every "
                                 f"anchor_every steps for the whole run, which is Best-of-n for no fixed n. Leave n "
                                 f"at its default (4), or use hard rounds (anchor_ema=1) to distil Best-of-{self.n}")
            self.anchor_every = 1 if self.anchor_every is None else self.anchor_every
            return
        rounds = round(math.log2(self.n))
        if 2**rounds != self.n:
            raise ValueError(f"jbond with hard rounds distils Best-of-2 log2(n) times: n must be a power of 2, "
                             f"got {self.n}")
        if self.anchor_every is None:
            if self.steps < rounds:
                raise ValueError(f"jbond with hard rounds needs at least log2(n) = {rounds} steps for n = {self.n} "
                                 f"(one round per doubling of N), got steps={self.steps}")
            # rounds of ceil(steps / rounds) steps: the anchor moves rounds - 1 times, never after the last step
            self.anchor_every = math.ceil(self.steps / rounds)
        moves = (self.steps - 1) // self.anchor_every  # the anchor moves after steps anchor_every, 2 anchor_every, ...
        if moves != rounds - 1:
            raise ValueError(
                f"jbond with hard rounds must move its anchor log2(n) - 1 = {rounds - 1} times to distil "
                f"Best-of-{self.n}, but steps={self.steps} with anchor_every={self.anchor_every} moves it {moves} "
                f"times (it would distil Best-of-{2 ** (moves + 1)}): use steps that are a multiple of log2(n) = "
                f"{rounds} and leave anchor_every=None (a config copied with dataclasses.replace keeps the "
                f"anchor_every derived for its old steps: pass anchor_every=None)")

    @property
    def hard_rounds(self) -> bool:
        """jbond with anchor_ema = 1: the anchor jumps to the policy every anchor_every steps."""
        return self.method == "jbond" and self.anchor_ema == 1

    def lr_at(self, step: int) -> float:
        """The learning rate of step t (0-based): lr if constant; cosine: lr (1 + cos(pi t / T)) / 2, with T the
        whole run, or, with hard rounds, each round (a round distils a new target, so it restarts from lr)."""
        if self.lr_schedule == "constant":
            return self.lr
        start, span = 0, self.steps
        if self.hard_rounds:
            start = min(step, self.steps - 1) // self.anchor_every * self.anchor_every
            span = min(self.anchor_every, self.steps - start)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(step - start, span) / span))

    @property
    def step_budget(self) -> tuple[int, int]:
        """(prompts, sampled sequences) per step: about prompts_per_step * k sequences, whatever the method.

        A prompt costs what its method's row says: k policy samples (vbon, vbon-l, kl-rl), n reference
        samples (bon-sft, bonbon, dpo), k + n (bond) or k + 2 anchor samples (jbond)."""
        cost = METHODS[self.method].cost(self)
        prompts = max(1, self.prompts_per_step * self.k // cost)
        return prompts, prompts * cost

    @property
    def kl_coef(self) -> float:
        return self.beta if self.beta is not None else 1.0 / (self.n - 1)

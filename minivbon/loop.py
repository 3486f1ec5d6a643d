"""One training loop for every method.

Per step the loop draws prompts, asks the method's step function (its row in :mod:`minivbon.methods`) for a
loss, and then, the same for every method: back-propagates, clips the gradient, checks that loss and gradient
are finite, and updates the policy with AdamW at the config's learning rate, all or nothing. The RL methods
(vBoN, vBoN-L, KL-RL) share REINFORCE with a leave-one-out baseline (:mod:`minivbon.rloo`): k samples per
prompt, sequence-level reward R(y) = task_reward(y) - beta * k1(y), k1 = log q(y) - log pi(y) over generated
tokens, grad = mean[(R - mean of the other k-1 rewards of its prompt) * grad log q(y)]; they differ only in
the task reward and beta. The others use the losses of :mod:`minivbon.distill` and :mod:`minivbon.dpo`.

Every method spends about the same budget per step, prompts_per_step * k sampled sequences (policy,
reference or anchor samples alike; ``TrainConfig.step_budget``); vbon, vbon-l and bond also use the M
reference rewards per prompt of their CDF, drawn once before training.

A policy is anything with the interface of :mod:`minivbon.policy`; the reference is a frozen
policy of the same kind.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import distill
from .checks import check_int, check_reward_batch
from .config import TrainConfig
from .methods import METHODS
from .objectives import EmpiricalCDF
from .policy import Samples
from .rloo import rl_loss, rloo_advantages  # noqa: F401  (re-exported: minivbon.loop.rl_loss)
from .checkpoint import Checkpointed, interrupts_held


class Trainer(Checkpointed):
    """Owns the state of a run (optimizer, random generator, step, history) so it can stop and resume."""

    def __init__(self, policy: nn.Module, reference: nn.Module, prompts: list, reward_fn: Callable[[Samples], Tensor],
                 config: TrainConfig, cdf: EmpiricalCDF | None = None,
                 evaluate: Callable[[nn.Module], dict] | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__len__"):
            raise TypeError(f"prompts must be a list of prompt ids, got {type(prompts).__name__}")
        if len(prompts) == 0:
            raise ValueError("prompts is empty")
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must map Samples to rewards (B,), got {type(reward_fn).__name__}")
        self.method = METHODS[config.method]
        if self.method.needs_cdf and cdf is None:
            raise ValueError(f"method {config.method!r} needs cdf=EmpiricalCDF(...) of reference rewards")
        self.policy, self.reference, self.prompts = policy, reference, list(prompts)
        self.reward_fn, self.config, self.cdf, self.evaluate = reward_fn, config, cdf, evaluate
        self.optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.history, self.interrupted, self.eval_pending = 0, [], False, False
        self.anchor = distill.make_anchor(policy) if self.method.anchored else None

    def _train_step(self) -> dict:
        """One step, all or nothing: an error or an interrupt before the update leaves every piece of state (the
        random generators included) as it was; the update itself (optimiser, anchor, step, history) runs with
        Ctrl-C held back until it is complete. Returns the step's record, already in the history."""
        cfg = self.config
        where = f"method {cfg.method!r}, step {self.step + 1}; no parameter was changed"
        generator, rng = self.generator.get_state(), torch.get_rng_state()
        try:
            loss, stats = self._step_loss(where)
        except BaseException as e:
            self.optimizer.zero_grad()
            self.generator.set_state(generator)
            torch.set_rng_state(rng)
            if isinstance(e, (ValueError, TypeError, RuntimeError)) and where not in str(e):
                raise _located(e, where) from e
            raise
        with interrupts_held():
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr_at(self.step)
            interrupted = False
            try:
                self.optimizer.step()
            except KeyboardInterrupt:  # Ctrl-C is held back, so this came from a hook after the update
                interrupted = True
            if self.method.after_update is not None:
                self.method.after_update(self)
            self.step += 1
            record = {"step": self.step, "loss": loss.item(), **stats}
            self.history.append(record)
            self.eval_pending = self.evaluate is not None and self.step % cfg.eval_every == 0
            if interrupted:
                raise KeyboardInterrupt
        return record

    def _step_loss(self, where: str) -> tuple[Tensor, dict]:
        """Sample, score and back-propagate one step's loss; the gradient is checked finite."""
        cfg = self.config

        def scored(samples: Samples) -> Tensor:  # every reward batch is checked before it can reach a gradient
            return check_reward_batch(self.reward_fn(samples), len(samples.prompt_ids), where)

        count, sampled = cfg.step_budget  # matched budget: about prompts_per_step * k sequences, any method
        pick = torch.randint(len(self.prompts), (count,), generator=self.generator)
        prompts = [self.prompts[i] for i in pick.tolist()]
        loss, stats = self.method.step(self, prompts, scored)
        stats["samples"] = sampled
        self.optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm or math.inf)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            raise FloatingPointError(f"non-finite {'loss' if not torch.isfinite(loss) else 'gradient'} ({where})")
        return loss, stats

    def run(self, steps: int | None = None, callback: Callable[["Trainer"], None] | None = None,
            progress: bool = True) -> list[dict]:
        """Train ``steps`` more steps (default: up to config.steps). Ctrl-C stops cleanly and keeps the history."""
        steps = self.config.steps - self.step if steps is None else check_int(steps, "steps", minimum=0)
        self.interrupted = False
        try:
            if self.step == 0 and self.evaluate is not None and not self.history:
                self.history.append({"step": 0, **self.evaluate(self.policy)})
            if self.eval_pending:  # the last run was interrupted during this step's evaluation: finish it first
                self._finish_evaluation()
            for _ in tqdm(range(steps), disable=not progress, desc=self.config.method):
                self._train_step()
                if self.eval_pending:
                    self._finish_evaluation()
                if callback is not None:
                    callback(self)
        except KeyboardInterrupt:
            self.interrupted = True
        return self.history

    def _finish_evaluation(self) -> None:
        """Add the evaluation of the current policy to the last record (an interrupt leaves it pending)."""
        self.history[-1].update(self.evaluate(self.policy))
        self.eval_pending = False


def _located(error: Exception, where: str) -> Exception:
    """``error`` with the method and step appended to its message (same type when it can be rebuilt)."""
    message = f"{error} ({where})"
    try:
        return type(error)(message)
    except Exception:
        return ValueError(message)


def train(policy: nn.Module, reference: nn.Module, prompts: list, reward_fn: Callable[[Samples], Tensor],
          config: TrainConfig, cdf: EmpiricalCDF | None = None, evaluate: Callable | None = None,
          callback: Callable | None = None, progress: bool = True) -> Trainer:
    """Build a :class:`Trainer`, run ``config.steps`` steps and return it (its ``history`` holds the metrics)."""
    trainer = Trainer(policy, reference, prompts, reward_fn, config, cdf, evaluate)
    trainer.run(callback=callback, progress=progress)
    return trainer

"""One training loop for every method: REINFORCE with a leave-one-out baseline (RLOO).

Per step: draw prompts, sample k outputs per prompt from the policy, score each
with a sequence-level reward R(y) = task_reward(y) - beta * k1(y), where
k1 = log q(y) - log pi(y) over generated tokens, and follow
grad = mean[(R - mean of the other k-1 rewards of its prompt) * grad log q(y)].

The RL methods differ only in the task reward and beta; the others use the losses of
:mod:`minivbon.distill` inside the same loop (sampling, checks, optimiser, checkpoints)::

    | method   | task_reward(y)                          | beta            |
    |----------|-----------------------------------------|-----------------|
    | vbon     | log_bon_ratio(log F_hat, log g, n)/(n-1), | 1/(n-1)       |
    |          | g = max(tie-class mass, pi(y))          |                 |
    | vbon-l   | log F_mid(r(y)) (mid-rank; F_hat with   | 1/(n-1)         |
    |          | ties="paper")                           |                 |
    | kl-rl    | r(y)                                    | given           |
    | bon-sft  | SFT on the best of n reference samples (forward KL)     |
    | bonbon   | SFT + IPO contrast of the best and worst of n          |
    | bond     | Jeffreys: SFT + (n-1) x the vbon-l RLOO loss           |
    | jbond    | Jeffreys to Best-of-2 of an anchor (hard rounds or EMA) |

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
from .checks import as_float, check_int, check_not_nan, check_reward_batch
from .config import NEEDS_CDF, RL_METHODS, TrainConfig
from .objectives import EmpiricalCDF, vbon_reward
from .policy import Samples, sequence_log_probs
from .checkpoint import Checkpointed, interrupts_held


def rloo_advantages(rewards: Tensor, k: int) -> Tensor:
    """R_j minus the mean of the other k-1 rewards of the same prompt: (B,) -> (B,), B = prompts * k."""
    k = check_int(k, "k", minimum=2)
    r = check_not_nan(as_float(rewards, "rewards"), "rewards", finite=True)
    if r.dim() != 1 or r.numel() % k:
        raise ValueError(f"rewards must be (prompts * k,) with k = {k}, got shape {tuple(r.shape)}")
    r = r.view(-1, k)
    return (k / (k - 1) * (r - (r / k).sum(1, keepdim=True))).view(-1)  # = R_j - mean of the others, no overflow


def task_reward(method: str, n: int, raw: Tensor, prompt_ids: list, log_ref: Tensor,
                cdf: EmpiricalCDF | None, ties: str = "aware") -> Tensor:
    """Per-sample task reward of ``method`` (table above): (B,).

    ``ties="aware"``: vbon uses the tie-aware exact ratio, with y's class mass max(#ties/(M+1), pi(y)),
    and vbon-l the mid-rank log F_mid; ``ties="paper"``: both use F_hat = (#below + 1)/(M + 1), as the
    paper's code does. Without tied rewards the two agree.
    """
    if method == "kl-rl":
        return raw
    if cdf is None:
        raise ValueError(f"method {method!r} needs an EmpiricalCDF of reference rewards (cdf=...)")
    aware = ties == "aware"
    if method == "vbon-l":
        return vbon_reward(cdf.log_cdf(prompt_ids, raw, ties="mid" if aware else "below"), n)
    log_mass = cdf.log_tie_mass(prompt_ids, raw) if aware else None
    return vbon_reward(cdf.log_cdf(prompt_ids, raw), n, log_ref=log_ref, log_tie_mass=log_mass)


def rl_loss(policy: nn.Module, reference: nn.Module, samples: Samples, raw_reward: Tensor,
            config: TrainConfig, cdf: EmpiricalCDF | None = None) -> tuple[Tensor, dict]:
    """RLOO surrogate loss for k samples per prompt (grouped contiguously) and its statistics."""
    logp_seq, ref_seq, k3 = sequence_log_probs(policy, reference, samples)
    k1 = logp_seq.detach() - ref_seq
    task = task_reward(config.method, config.n, raw_reward.cpu(), samples.prompt_ids, ref_seq.cpu(), cdf,
                       config.ties).to(k1)
    adv = rloo_advantages(task - config.kl_coef * k1, config.k)
    loss = -(adv * logp_seq).mean()
    return loss, {"reward": raw_reward.double().mean().item(), "task_reward": task.mean().item(),
                  "kl_k1": k1.mean().item(), "kl_k3": k3.mean().item()}


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
        if config.method in NEEDS_CDF and cdf is None:
            raise ValueError(f"method {config.method!r} needs cdf=EmpiricalCDF(...) of reference rewards")
        self.policy, self.reference, self.prompts = policy, reference, list(prompts)
        self.reward_fn, self.config, self.cdf, self.evaluate = reward_fn, config, cdf, evaluate
        self.optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.history, self.interrupted, self.eval_pending = 0, [], False, False
        self.anchor = distill.make_anchor(policy) if config.method == "jbond" else None

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
            if self.anchor is not None and (self.step + 1) % cfg.anchor_every == 0 and self.step + 1 < cfg.steps:
                distill.ema_update(self.anchor, self.policy, cfg.anchor_ema)
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
        if cfg.method in ("bon-sft", "bonbon"):
            best, worst, raw = distill.best_and_worst_of_n(self.reference, prompts, cfg.n, scored, self.generator)
            loss, stats = (distill.sft_loss(self.policy, best), {}) if cfg.method == "bon-sft" else \
                distill.bonbon_loss(self.policy, self.reference, best, worst, cfg.n, cfg.alpha)
            stats["reward"] = raw.max(1).values.double().mean().item()  # the targets' reward
        else:
            samples = self.policy.sample([p for p in prompts for _ in range(cfg.k)], self.generator)
            if cfg.method in RL_METHODS:
                loss, stats = rl_loss(self.policy, self.reference, samples, scored(samples), cfg, self.cdf)
            else:
                loss, stats = self._jeffreys_loss(prompts, samples, scored)
        stats["samples"] = sampled
        self.optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm or math.inf)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            raise FloatingPointError(f"non-finite {'loss' if not torch.isfinite(loss) else 'gradient'} ({where})")
        return loss, stats

    def _jeffreys_loss(self, prompts: list, samples: Samples, scored: Callable) -> tuple[Tensor, dict]:
        """bond, jbond: (1 - eta) * forward KL (SFT on BoN targets) + eta * backward KL (RLOO)."""
        cfg, raw = self.config, scored(samples)
        if cfg.method == "bond":  # target pi_bon; KL(q || pi_bon) = (n-1) x vBoN-L's objective, up to a constant
            best, _, _ = distill.best_and_worst_of_n(self.reference, prompts, cfg.n, scored, self.generator)
            backward, stats = rl_loss(self.policy, self.reference, samples, raw, cfg.without_unread("vbon-l"), self.cdf)
            backward = (cfg.n - 1) * backward
        else:  # jbond: target Best-of-2 of the anchor; two anchor samples per prompt serve both directions
            best, _, anchor_raw = distill.best_and_worst_of_n(self.anchor, prompts, 2, scored, self.generator)
            r_j = distill.jbond_reward(raw.view(-1, cfg.k).cpu(), anchor_raw.cpu()).view(-1)
            backward, s = rl_loss(self.policy, self.anchor, samples, r_j, cfg.without_unread("kl-rl", beta=1.0))
            stats = {"reward": raw.double().mean().item(), "task_reward": s["task_reward"],
                     "kl_to_anchor_k1": s["kl_k1"]}
        return (1 - cfg.eta) * distill.sft_loss(self.policy, best) + cfg.eta * backward, stats

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

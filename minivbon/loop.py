"""One training loop for every method: REINFORCE with a leave-one-out baseline (RLOO).

Per step: draw prompts, sample k outputs per prompt from the policy, score each
with a sequence-level reward R(y) = task_reward(y) - beta * k1(y), where
k1 = log q(y) - log pi(y) over generated tokens, and follow
grad = mean[(R - mean of the other k-1 rewards of its prompt) * grad log q(y)].

The methods differ only in the task reward and beta::

    | method   | task_reward(y)                          | beta            |
    |----------|-----------------------------------------|-----------------|
    | vbon     | log_bon_ratio(log F_hat, log g, n)/(n-1), | 1/(n-1)       |
    |          | g = max(tie-class mass, pi(y))          |                 |
    | vbon-l   | log F_mid(r(y)) (mid-rank; F_hat with   | 1/(n-1)         |
    |          | ties="paper")                           |                 |
    | kl-rl    | r(y)                                    | given           |
    | bon-sft  | maximum likelihood on the best of n reference samples (no RL) |

A policy is anything with the interface of :mod:`minivbon.policy`; the reference is a frozen
policy of the same kind.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .checks import as_float, check_int, check_not_nan, check_positive, check_reward_batch
from .objectives import EmpiricalCDF, vbon_reward
from .policy import Samples, best_of_n, sequence_log_probs
from .storage import load_safe, save_atomic

METHODS = ("vbon", "vbon-l", "kl-rl", "bon-sft")


@dataclass
class TrainConfig:
    """Everything that defines a run. ``beta=None`` means 1/(n-1) (vbon, vbon-l); kl-rl needs a beta."""

    method: str = "vbon-l"
    n: int = 4
    beta: float | None = None
    k: int = 4  # samples per prompt (RLOO needs >= 2); bon-sft: prompts_per_step * k samples per step, n per prompt
    prompts_per_step: int = 8
    steps: int = 100
    lr: float = 3e-4
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0  # AdamW's decay pulls weights to 0, not to the reference: off by default
    seed: int = 0
    eval_every: int = 10
    ties: str = "aware"  # vbon/vbon-l rewards "aware" of tied rewards, or as the "paper"'s code (a tie is a loss)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.ties not in ("aware", "paper"):
            raise ValueError(f"ties must be 'aware' or 'paper', got {self.ties!r}")
        # integer fields: a whole float (4.0) is converted to int, anything else is a TypeError
        self.n = check_int(self.n, "n", minimum=2 if self.method != "kl-rl" else 1)
        self.k = check_int(self.k, "k", minimum=2 if self.method != "bon-sft" else 1)
        for name in ("prompts_per_step", "steps", "eval_every"):
            setattr(self, name, check_int(getattr(self, name), name, minimum=1))
        self.seed = check_int(self.seed, "seed", minimum=0)
        check_positive(self.lr, "lr")
        if self.beta is not None:
            check_positive(self.beta, "beta")
        elif self.method == "kl-rl":
            raise ValueError("beta must be given for method 'kl-rl'")
        if self.max_grad_norm is not None:
            check_positive(self.max_grad_norm, "max_grad_norm")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")

    @property
    def kl_coef(self) -> float:
        return self.beta if self.beta is not None else 1.0 / (self.n - 1)


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


def sft_loss(policy: nn.Module, reference: nn.Module, prompts: list, reward_fn: Callable, n: int,
             generator: torch.Generator) -> tuple[Tensor, dict]:
    """BoN-SFT: maximise the log-likelihood of the best of n reference samples per prompt."""
    best, reward = best_of_n(reference, prompts, n, reward_fn, generator)
    logp = policy.token_log_probs(best)
    return -((logp * best.mask).sum(-1)).mean(), {"reward": reward.double().mean().item()}


class Trainer:
    """Owns the state of a run (optimizer, random generator, step, history) so it can stop and resume."""

    def __init__(self, policy: nn.Module, reference: nn.Module, prompts: list, reward_fn: Callable[[Samples], Tensor],
                 config: TrainConfig, cdf: EmpiricalCDF | None = None,
                 evaluate: Callable[[nn.Module], dict] | None = None):
        if len(prompts) == 0:
            raise ValueError("prompts is empty")
        if config.method in ("vbon", "vbon-l") and cdf is None:
            raise ValueError(f"method {config.method!r} needs cdf=EmpiricalCDF(...) of reference rewards")
        self.policy, self.reference, self.prompts = policy, reference, list(prompts)
        self.reward_fn, self.config, self.cdf, self.evaluate = reward_fn, config, cdf, evaluate
        self.optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.history, self.interrupted = 0, [], False

    def _train_step(self) -> dict:
        cfg = self.config
        where = f"method {cfg.method!r}, step {self.step + 1}; no parameter was changed"

        def scored(samples: Samples) -> Tensor:  # every reward batch is checked before it can reach a gradient
            return check_reward_batch(self.reward_fn(samples), len(samples.prompt_ids), where)

        # matched budget: every method samples prompts_per_step * k sequences per step; BoN-SFT spends them
        # as n per prompt, so it sees prompts_per_step * k / n prompts (one target each)
        count = cfg.prompts_per_step if cfg.method != "bon-sft" else max(1, cfg.prompts_per_step * cfg.k // cfg.n)
        pick = torch.randint(len(self.prompts), (count,), generator=self.generator)
        prompts = [self.prompts[i] for i in pick.tolist()]
        if cfg.method == "bon-sft":
            loss, stats = sft_loss(self.policy, self.reference, prompts, scored, cfg.n, self.generator)
        else:
            samples = self.policy.sample([p for p in prompts for _ in range(cfg.k)], self.generator)
            loss, stats = rl_loss(self.policy, self.reference, samples, scored(samples), cfg, self.cdf)
        self.optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm or math.inf)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            self.optimizer.zero_grad()
            raise FloatingPointError(f"non-finite {'loss' if not torch.isfinite(loss) else 'gradient'} ({where})")
        self.optimizer.step()
        return {"loss": loss.item(), **stats}

    def run(self, steps: int | None = None, callback: Callable[["Trainer"], None] | None = None,
            progress: bool = True) -> list[dict]:
        """Train ``steps`` more steps (default: up to config.steps). Ctrl-C stops cleanly and keeps the history."""
        steps = self.config.steps - self.step if steps is None else check_int(steps, "steps", minimum=0)
        self.interrupted = False
        if self.step == 0 and self.evaluate is not None and not self.history:
            self.history.append({"step": 0, **self.evaluate(self.policy)})
        try:
            for _ in tqdm(range(steps), disable=not progress, desc=self.config.method):
                record = {"step": self.step + 1, **self._train_step()}
                self.step += 1
                if self.evaluate is not None and self.step % self.config.eval_every == 0:
                    record.update(self.evaluate(self.policy))
                self.history.append(record)
                if callback is not None:
                    callback(self)
        except KeyboardInterrupt:
            self.interrupted = True
        return self.history

    def save(self, path) -> None:
        """Write everything needed to resume bit-for-bit, atomically: a failed save keeps the old file."""
        save_atomic({"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "generator": self.generator.get_state(), "rng": torch.get_rng_state(), "step": self.step,
                     "history": self.history, "config": asdict(self.config)}, path)

    def load(self, path) -> "Trainer":
        """Restore a checkpoint written by :meth:`save` into this trainer (same policy and config).

        Read with the safe loader: a file holding anything but plain data is refused, never run."""
        state = load_safe(path)
        keys = {"policy", "optimizer", "generator", "rng", "step", "history", "config"}
        if not isinstance(state, dict) or keys - set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else "everything"
            raise ValueError(f"{path} is not a minivbon checkpoint (missing {missing})")
        if state["config"] != asdict(self.config):
            raise ValueError(f"checkpoint config {state['config']} does not match this trainer's {asdict(self.config)}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        self.step, self.history = state["step"], state["history"]
        return self


def train(policy: nn.Module, reference: nn.Module, prompts: list, reward_fn: Callable[[Samples], Tensor],
          config: TrainConfig, cdf: EmpiricalCDF | None = None, evaluate: Callable | None = None,
          callback: Callable | None = None, progress: bool = True) -> Trainer:
    """Build a :class:`Trainer`, run ``config.steps`` steps and return it (its ``history`` holds the metrics)."""
    trainer = Trainer(policy, reference, prompts, reward_fn, config, cdf, evaluate)
    trainer.run(callback=callback, progress=progress)
    return trainer

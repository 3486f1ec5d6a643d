"""The policy interface every trainer in minivbon uses, and the helpers built only on it.

A policy is an ``nn.Module`` with two methods:

- ``sample(prompt_ids, generator) -> Samples``: one output per prompt id;
- ``token_log_probs(samples) -> (B, T)``: log q(token_t | tokens_<t) of each token (0 where
  ``samples.mask`` is False).

The toy tabular policy (:mod:`minivbon.toy`) and the transformers language model (:mod:`minivbon.lm`)
both implement it, so Best-of-N sampling, the reference CDF and the training loop work on either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from .checks import check_int, check_reward_batch
from .objectives import EmpiricalCDF, kl_k3


@dataclass
class Samples:
    """A batch of outputs: prompt_ids (B,), tokens (B, T), mask (B, T) True on generated tokens.

    ``extra`` carries whatever a policy needs besides (an attention mask, texts).
    """

    prompt_ids: list
    tokens: Tensor
    mask: Tensor
    extra: dict = field(default_factory=dict)

    def select(self, index: Tensor) -> "Samples":
        """The rows in ``index`` (B',)."""
        pick = {k: (v[index] if isinstance(v, Tensor) else [v[i] for i in index.tolist()]) for k, v in self.extra.items()}
        return Samples([self.prompt_ids[i] for i in index.tolist()], self.tokens[index], self.mask[index], pick)



def sequence_log_probs(policy: nn.Module, reference: nn.Module, samples: Samples) -> tuple[Tensor, Tensor, Tensor]:
    """(log q(y), log pi(y), k3(y)), each (B,), summed over generated tokens; log q keeps its gradient."""
    logp = policy.token_log_probs(samples)  # (B, T)
    with torch.no_grad():
        ref = reference.token_log_probs(samples)
    mask = samples.mask.to(logp.device)
    for values, whose in ((logp.detach(), "policy"), (ref, "reference")):  # on generated tokens: NaN or inf is a fault
        bad = (~torch.isfinite(values)) & mask.to(torch.bool)
        if bad.any():
            kind = "NaN" if torch.isnan(values[bad]).any() else "infinite"
            raise ValueError(f"the {whose}'s log-probabilities of the samples contain {kind} values at "
                             f"{int(bad.sum())} generated tokens"
                             + (" (a sample the reference gives probability 0)" if kind == "infinite" else ""))
    return (logp * mask).sum(-1), (ref * mask).sum(-1), (kl_k3(logp.detach(), ref) * mask).sum(-1)


@torch.no_grad()
def best_of_n(policy: nn.Module, prompts: list, n: int, reward_fn: Callable[[Samples], Tensor],
              generator: torch.Generator | None = None) -> tuple[Samples, Tensor]:
    """Best-of-n generation: n samples per prompt in one batch, keep the highest reward (first on ties).

    Returns the kept samples (one per prompt) and their rewards (P,).
    """
    n = check_int(n, "n", maximum=max(1, 2**20 // max(1, len(prompts))), why=" (all n samples per prompt are drawn in one batch)")
    samples = policy.sample([p for p in prompts for _ in range(n)], generator)
    raw = check_reward_batch(reward_fn(samples), len(samples.prompt_ids), "best_of_n").view(-1, n)
    return samples.select(raw.argmax(1).cpu() + torch.arange(len(prompts)) * n), raw.max(1).values


@torch.no_grad()
def reference_cdf(reference: nn.Module, prompts: list, reward_fn: Callable[[Samples], Tensor], m: int,
                  generator: torch.Generator | None = None, batch_size: int = 256) -> EmpiricalCDF:
    """Sample m outputs per prompt from the reference, score them, and build the per-prompt CDF."""
    m = check_int(m, "m", maximum=10**6, why=" reference samples per prompt")
    if len(set(prompts)) != len(prompts):
        raise ValueError("prompts has duplicate ids: each prompt gets one row of references")
    flat = [p for p in prompts for _ in range(m)]
    rewards = torch.cat([reward_fn(reference.sample(flat[i:i + batch_size], generator)).double().cpu()
                         for i in range(0, len(flat), batch_size)]).view(len(prompts), m)
    return EmpiricalCDF({p: rewards[i] for i, p in enumerate(prompts)})

"""How far a policy is from Best-of-N, measured from samples (no enumeration needed).

pi_bon cannot be listed on a language model, but its ratio to the reference can be evaluated for any
output y of prompt x: with the prompt's held-out reference rewards, a = F_lt(y), the class mass
g = max(#ties/(M+1), pi(y)) and b = a + g,

    log pi_bon/pi(y) = log((b^n - a^n) / g)                       (log_bon_ratio, tie-aware)

so both directions of the KL between a policy q and pi_bon are expectations of things we can compute:

    KL(q || pi_bon) = E_{y~q}[ log q(y) - log pi(y) - log pi_bon/pi(y) ]       (what vBoN minimises)
    KL(pi_bon || q) = E_{y~BoN}[ log pi(y) + log pi_bon/pi(y) - log q(y) ]     (what BoN-SFT minimises)

BoN samples come from a *pool* of reference samples per prompt, cut into disjoint groups of n. The CDF
used for the ratio must not be the pool itself (a sample would be ranked against itself): use a separate
held-out reference set. ``log F_hat`` is an estimate, so both estimators are biased at small M; halving
M measures it. Every quantity is returned as one mean per prompt (P,): samples of one prompt are
correlated, prompts are the independent units, so standard errors are over prompts (:func:`mean_se`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checks import check_int, check_positive, check_reward_batch
from .distill import bonbon_beta
from .objectives import EmpiricalCDF, log_bon_ratio
from .policy import Samples, sequence_log_probs


def log_bon_ratio_hat(cdf: EmpiricalCDF, prompt_ids, rewards: Tensor, log_ref: Tensor, n: int) -> Tensor:
    """Tie-aware log pi_bon/pi(y) from a prompt's reference rewards: (B,).

    a = F_hat_lt(r) = (#below + 1)/(M + 1), log g = max(log #ties/(M + 1), log pi(y)) (the class holds y).
    """
    log_g = torch.maximum(cdf.log_tie_mass(prompt_ids, rewards), log_ref.double().cpu())
    return log_bon_ratio(cdf.log_cdf(prompt_ids, rewards), log_g, n)


def mean_se(per_prompt: Tensor) -> tuple[float, float]:
    """Mean and standard error over prompts of one value per prompt (P,); s.e. is NaN for one prompt."""
    x = per_prompt.double()
    se = (x.std() / math.sqrt(len(x))).item() if len(x) > 1 else math.nan
    return x.mean().item(), se


def prompt_means(values: Tensor, prompts: int) -> Tensor:
    """(P * s,) values grouped by prompt, s per prompt, in prompt order -> (P,) means."""
    return values.double().reshape(prompts, -1).mean(1)


@dataclass
class BoNPool:
    """``size`` reference samples for each of P prompts (grouped by prompt), with rewards and log pi: (P, size)."""

    samples: Samples
    rewards: Tensor
    log_ref: Tensor

    @property
    def prompts(self) -> list:
        return self.samples.prompt_ids[:: self.rewards.shape[1]]

    def best_and_worst(self, n: int, per_prompt: int | None = None) -> tuple[Tensor, Tensor]:
        """Flat pool indices (P * G,) of the best and the worst of each disjoint group of n (first on ties),
        G = min(per_prompt, size // n) groups per prompt."""
        p, size = self.rewards.shape
        n = check_int(n, "n", maximum=size, why=f" (the pool holds {size} samples per prompt)")
        groups = size // n if per_prompt is None else min(check_int(per_prompt, "per_prompt"), size // n)
        r = self.rewards[:, : groups * n].reshape(p, groups, n)  # (P, G, n)
        base = (torch.arange(p)[:, None] * size + torch.arange(groups)[None, :] * n)  # (P, G)
        return (base + r.argmax(-1)).flatten(), (base + r.argmin(-1)).flatten()


@torch.no_grad()
def draw_pool(reference: nn.Module, prompts: list, size: int, reward_fn, generator: torch.Generator | None = None,
              batch_size: int = 256) -> BoNPool:
    """Sample ``size`` outputs per prompt from the reference, with their rewards and log pi(y)."""
    size = check_int(size, "size")
    if isinstance(prompts, (str, bytes)) or not prompts:
        raise ValueError("prompts must be a non-empty list of prompt ids")
    flat = [p for p in prompts for _ in range(size)]
    rewards, log_ref, parts = [], [], []
    for i in range(0, len(flat), batch_size):
        s = reference.sample(flat[i:i + batch_size], generator)
        rewards.append(check_reward_batch(reward_fn(s), len(s.prompt_ids), "draw_pool").double().cpu())
        log_ref.append(masked_sum(reference.token_log_probs(s), s))
        parts.append(s)
    return BoNPool(concat(parts), torch.cat(rewards).view(len(prompts), size), torch.cat(log_ref).view(len(prompts), size))


def masked_sum(token_logp: Tensor, samples: Samples) -> Tensor:
    """Sum over generated tokens of per-token log-probs (B, T) -> (B,) float64 on the CPU."""
    return (token_logp * samples.mask.to(token_logp.device)).sum(-1).double().cpu()


def concat(parts: list[Samples]) -> Samples:
    """One Samples from several (right-padded with masked tokens to a common width)."""
    width = max(s.tokens.shape[1] for s in parts)

    def pad(t: Tensor, value=0) -> Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    extra = {}
    for k, v in parts[0].extra.items():
        extra[k] = torch.cat([pad(s.extra[k]) for s in parts]) if isinstance(v, Tensor) else \
            [x for s in parts for x in s.extra[k]]
    return Samples([i for s in parts for i in s.prompt_ids], torch.cat([pad(s.tokens) for s in parts]),
                   torch.cat([pad(s.mask, False) for s in parts]), extra)


@torch.no_grad()
def bon_distances(policy: nn.Module, reference: nn.Module, prompts: list, reward_fn, cdf: EmpiricalCDF, n: int,
                  pool: BoNPool, samples_per_prompt: int = 4, bon_per_prompt: int = 4,
                  generator: torch.Generator | None = None, reward_transform=None,
                  other_cdfs: dict[str, EmpiricalCDF] | None = None) -> dict[str, Tensor]:
    """Per-prompt means (P,) of what the methods of the book optimise, from samples of q and of BoN(n).

    On ``samples_per_prompt`` samples of q per prompt: ``kl_k1`` (log q - log pi), ``kl_k3``, ``reward``,
    ``reward_g`` (``reward_transform`` of it, or the reward), ``win_rate`` (ties half), ``log_f_mid``,
    ``kl_to_bon`` (k1 - log pi_bon/pi). On the best (and worst) of ``bon_per_prompt`` disjoint groups of n
    in ``pool``: ``kl_from_bon`` (log pi + log pi_bon/pi - log q of the best) and ``ipo`` (BoNBoN's
    (h - 1/(2 beta_n))^2, h the best-minus-worst margin of log q/pi). ``prompts`` must be ``pool``'s.
    ``other_cdfs`` {name: cdf}: the two KLs again with other reference sets, as ``kl_to_bon_<name>`` and
    ``kl_from_bon_<name>`` (on the same samples, e.g. half the references to measure the estimator's bias).
    """
    n = check_int(n, "n", minimum=2)
    if list(prompts) != list(pool.prompts):
        raise ValueError("prompts must be the pool's prompts, in the pool's order")
    p = len(prompts)
    samples = policy.sample([x for x in prompts for _ in range(samples_per_prompt)], generator)
    r = check_reward_batch(reward_fn(samples), len(samples.prompt_ids), "bon_distances").double().cpu()
    logq, logp, k3 = (t.double().cpu() for t in sequence_log_probs(policy, reference, samples))
    ids = samples.prompt_ids
    k1 = logq - logp
    best, worst = pool.best_and_worst(n, bon_per_prompt)
    pair = pool.samples.select(torch.cat([best, worst]))
    lq = masked_sum(policy.token_log_probs(pair), pair)
    lpi = pool.log_ref.flatten()[torch.cat([best, worst])]
    rb, best_ids = pool.rewards.flatten()[best], [pool.samples.prompt_ids[i] for i in best.tolist()]
    out = {"kl_k1": k1, "kl_k3": k3, "reward": r, "reward_g": r if reward_transform is None else reward_transform(r),
           "win_rate": cdf.win_rate(ids, r), "log_f_mid": cdf.log_cdf(ids, r, ties="mid")}
    out = {k: prompt_means(v, p) for k, v in out.items()}
    for name, c in {"": cdf, **{"_" + k: v for k, v in (other_cdfs or {}).items()}}.items():
        out["kl_to_bon" + name] = prompt_means(k1 - log_bon_ratio_hat(c, ids, r, logp, n), p)
        ratio = log_bon_ratio_hat(c, best_ids, rb, lpi[: len(best)], n)
        out["kl_from_bon" + name] = prompt_means(lpi[: len(best)] + ratio - lq[: len(best)], p)
    u = lq - lpi  # log q/pi of best, then worst
    h = u[: len(best)] - u[len(best):]
    out["ipo"] = prompt_means((h - 1 / (2 * bonbon_beta(n))) ** 2, p)
    return out


def method_objective(method: str, per_prompt: dict[str, Tensor], n: int, beta: float | None = None,
                     alpha: float = 0.5, eta: float = 0.5) -> tuple[str, Tensor]:
    """(name, per-prompt value (P,)) of the quantity ``method`` minimises, from :func:`bon_distances`::

        | method  | minimises                                                          |
        |---------|--------------------------------------------------------------------|
        | vbon    | KL(q || pi_bon)                                                    |
        | vbon-l  | KL(q || pi)/(n-1) - E_q[log F_mid]   (minus the vBoN-L bound, / n-1) |
        | kl-rl   | beta KL(q || pi) - E_q[r]            (minus the KL-regularised reward) |
        | bon-sft | KL(pi_bon || q)                      (its loss, less pi_bon's entropy) |
        | bonbon  | alpha KL(pi_bon || q) + (1 - alpha) E[(h - 1/(2 beta_n))^2]         |
        | bond, jbond | (1 - eta) KL(pi_bon || q) + eta KL(q || pi_bon)  (Jeffreys; J-BOND's target after its rounds) |
    """
    d = per_prompt
    if method == "vbon":
        return "KL(q||pi_bon)", d["kl_to_bon"]
    if method == "vbon-l":
        return "KL(q||pi)/(N-1) - E_q[log F_mid]", d["kl_k1"] / (n - 1) - d["log_f_mid"]
    if method == "kl-rl":
        beta = check_positive(beta, "beta")
        return "beta KL(q||pi) - E_q[r]", beta * d["kl_k1"] - d["reward_g"]
    if method == "bon-sft":
        return "KL(pi_bon||q)", d["kl_from_bon"]
    if method == "bonbon":
        return "alpha KL(pi_bon||q) + (1-alpha) E[(h - 1/(2 beta_N))^2]", alpha * d["kl_from_bon"] + (1 - alpha) * d["ipo"]
    if method in ("bond", "jbond"):
        return "(1-eta) KL(pi_bon||q) + eta KL(q||pi_bon)", (1 - eta) * d["kl_from_bon"] + eta * d["kl_to_bon"]
    raise ValueError(f"method must be one of vbon, vbon-l, kl-rl, bon-sft, bonbon, bond, jbond; got {method!r}")

"""Other ways to distil Best-of-N into one policy: BoN-SFT, BoNBoN, BOND and J-BOND.

vBoN (:mod:`minivbon.loop`) minimises the backward KL(q || pi_bon) by RL. The methods here use BoN's
*samples* (a forward KL), a contrast of BoN's best and worst, or a mix of both directions::

    | method  | loss per prompt                                                   | samples per prompt |
    |---------|-------------------------------------------------------------------|--------------------|
    | bon-sft | -log q(y_best), y_best the best of n reference samples             | n reference        |
    |         |   (forward KL(pi_bon || q) up to a constant)                       |                    |
    | bonbon  | alpha * (-log q(y_best)) + (1 - alpha) * (h - 1/(2 beta_n))^2,     | n reference        |
    |         |   h = log q/pi(y_best) - log q/pi(y_worst), beta_n = bonbon_beta(n) |                    |
    | bond    | (1 - eta) * SFT + eta * KL(q || pi_bon) by RLOO with the vBoN-L    | n reference        |
    |         |   reward (n-1) log F(y): the Jeffreys divergence                   | + k policy         |
    | jbond   | Jeffreys divergence to Best-of-2 of an anchor (a lagged copy of q): | 2 anchor           |
    |         |   SFT on the better anchor sample + RLOO with r_J(y) - log q/anchor | + k policy         |

References: L. Gui, C. Garbacea, V. Veitch, *BoNBoN Alignment for Large Language Models and the
Sweetness of Best-of-n Sampling* (NeurIPS 2024, arXiv:2406.00832); P. G. Sessa et al., *BOND: Aligning
LLMs with Best-of-N Distillation* (ICLR 2025, arXiv:2407.14622).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import Tensor, nn

from .checks import (as_float, check_int, check_not_nan, check_probs, check_reward_batch, check_same_shape,
                     check_weight)
from .policy import Samples, sequence_log_probs

JBOND_PENALTY = math.log(16)  # r_J(y) = -log 16 when y loses to both anchor samples, else 0 (BOND, Alg. 2)


def check_policy(policy, name: str = "policy") -> nn.Module:
    """An nn.Module with the policy interface (sample, token_log_probs)."""
    if not isinstance(policy, nn.Module) or not all(hasattr(policy, m) for m in ("sample", "token_log_probs")):
        raise TypeError(f"{name} must be a policy (an nn.Module with sample and token_log_probs), "
                        f"got {type(policy).__name__}")
    return policy


def check_samples(samples, name: str) -> Samples:
    if not isinstance(samples, Samples):
        raise TypeError(f"{name} must be Samples, got {type(samples).__name__}")
    return samples


def check_table(x, name: str) -> Tensor:
    """A (P, S) table of finite numbers (float64)."""
    t = check_not_nan(as_float(x, name), name, finite=True)
    if t.dim() != 2:
        raise ValueError(f"{name} must be (P, S), got shape {tuple(t.shape)}")
    return t


def harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n (H_0 = 0)."""
    return sum(1.0 / j for j in range(1, check_int(n, "n", minimum=0) + 1))


def bonbon_beta(n: int) -> float:
    """BoNBoN's IPO coefficient beta_n = 1 / (2 (n-1) H_{n-1}).

    With continuous rewards, log(pi_bon/pi)(y) = log n + (n-1) log F(y), and the best and worst of n
    draws have E[log F] = -1/n and -H_n, so E[h] = (n-1)(H_n - 1/n) = (n-1) H_{n-1} = 1/(2 beta_n):
    IPO's target margin 1/(2 beta) is the margin BoN itself shows on average.
    """
    n = check_int(n, "n", minimum=2)
    return 1.0 / (2 * (n - 1) * harmonic(n - 1))


@torch.no_grad()
def best_and_worst_of_n(policy: nn.Module, prompts: list, n: int, reward_fn: Callable[[Samples], Tensor],
                        generator: torch.Generator | None = None) -> tuple[Samples, Samples, Tensor]:
    """n samples per prompt; keep the best and the worst (first on ties). Returns (best, worst, rewards (P, n))."""
    n = check_int(n, "n", minimum=2)
    check_policy(policy)
    if isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__len__") or len(prompts) == 0:
        raise ValueError(f"prompts must be a non-empty list of prompt ids, got {prompts!r:.80}")
    if not callable(reward_fn):
        raise TypeError(f"reward_fn must map Samples to rewards, got {type(reward_fn).__name__}")
    samples = policy.sample([p for p in prompts for _ in range(n)], generator)
    raw = check_reward_batch(reward_fn(samples), len(samples.prompt_ids), "best_and_worst_of_n").view(-1, n)  # (P, n)
    offset = torch.arange(len(prompts)) * n
    return samples.select(raw.argmax(1).cpu() + offset), samples.select(raw.argmin(1).cpu() + offset), raw


def sft_loss(policy: nn.Module, targets: Samples) -> Tensor:
    """-mean log q(y) over the targets: maximum likelihood, the forward KL to their law up to a constant."""
    check_policy(policy)
    check_samples(targets, "targets")
    logp = policy.token_log_probs(targets)  # (B, T)
    return -(logp * targets.mask.to(logp.device)).sum(-1).mean()


def bonbon_loss(policy: nn.Module, reference: nn.Module, best: Samples, worst: Samples, n: int,
                alpha: float) -> tuple[Tensor, dict]:
    """alpha * SFT(best) + (1 - alpha) * mean (h - 1/(2 beta_n))^2 over prompts (IPO's square, as in the paper).

    h = [log q(best) - log pi(best)] - [log q(worst) - log pi(worst)], each (P,).
    """
    n, alpha = check_int(n, "n", minimum=2), check_weight(alpha, "alpha")
    check_policy(policy), check_policy(reference, "reference")
    check_samples(best, "best"), check_samples(worst, "worst")
    if list(best.prompt_ids) != list(worst.prompt_ids):
        raise ValueError(f"best and worst must hold one sample each of the same prompts, in the same order; got "
                         f"{len(best.prompt_ids)} and {len(worst.prompt_ids)} samples with different prompt ids")
    lq_w, lp_w, _ = sequence_log_probs(policy, reference, best)  # (P,) each
    lq_l, lp_l, _ = sequence_log_probs(policy, reference, worst)
    h = (lq_w - lp_w) - (lq_l - lp_l)  # (P,)
    ipo = (h - 1 / (2 * bonbon_beta(n))) ** 2
    loss = alpha * (-lq_w).mean() + (1 - alpha) * ipo.mean()
    return loss, {"margin": h.detach().mean().item(), "ipo": ipo.detach().mean().item()}


def jbond_reward(raw: Tensor, anchor_raw: Tensor) -> Tensor:
    """J-BOND's estimate of log F_anchor(y) from two anchor rewards: -log 16 if r(y) is below both, else 0.

    raw (P, k) policy rewards, anchor_raw (P, 2) the same prompts' anchor rewards -> (P, k).
    """
    dtype = raw.dtype if isinstance(raw, Tensor) and raw.is_floating_point() else torch.float64
    if isinstance(raw, Tensor) and raw.dtype == torch.bool:
        raise TypeError("raw must hold real rewards, got a bool tensor")
    raw, anchor_raw = check_table(raw, "raw"), check_table(anchor_raw, "anchor_raw")
    if anchor_raw.shape != (raw.shape[0], 2):
        raise ValueError(f"anchor_raw must be (P, 2), two anchor rewards for each of raw's {raw.shape[0]} prompts, "
                         f"got shape {tuple(anchor_raw.shape)}")
    return -JBOND_PENALTY * (raw < anchor_raw.min(1, keepdim=True).values).to(dtype)


def make_anchor(policy: nn.Module) -> nn.Module:
    """A frozen copy of the policy's current weights (J-BOND's anchor)."""
    check_policy(policy)
    twin = policy.clone(trainable=False) if hasattr(policy, "clone") else copy.deepcopy(policy)
    return twin.requires_grad_(False)


@torch.no_grad()
def ema_update(anchor: nn.Module, policy: nn.Module, gamma: float) -> None:
    """theta_anchor <- (1 - gamma) theta_anchor + gamma theta_policy (gamma = 1 copies the policy)."""
    gamma = check_weight(gamma, "gamma", low_open=True)
    check_policy(anchor, "anchor"), check_policy(policy)
    pairs = list(zip(anchor.parameters(), policy.parameters()))
    if len(pairs) != len(list(policy.parameters())) or len(pairs) != len(list(anchor.parameters())) \
            or any(a.shape != p.shape for a, p in pairs):
        raise ValueError("anchor and policy must have the same parameters (anchor = make_anchor(policy))")
    for a, p in pairs:
        a.lerp_(p.detach().to(a.dtype), gamma)


def best_worst_probs(ref_probs: Tensor, rewards: Tensor, n: int) -> Tensor:
    """Exact joint law of (best, worst) of n draws from pi, for rewards without ties: (P, S, S).

    For r(a) > r(b), all n draws lie in [r(b), r(a)], at least one is a and at least one is b; with
    I = F_<=(a) - F_<(b), inclusion-exclusion gives I^n - (I - pi(b))^n - (I - pi(a))^n + (I - pi(a) - pi(b))^n.
    P(best = worst = a) = pi(a)^n (all n draws are a); every other pair has probability 0. Rows sum to pi_bon.
    """
    n = check_int(n, "n", minimum=2)
    p, r = check_law(ref_probs, rewards, "ref_probs")
    if (r.sort(-1).values.diff(dim=-1) == 0).any():
        raise ValueError("rewards has ties within a prompt: best_worst_probs needs distinct rewards")
    f_le = (p[:, None, :] * (r[:, None, :] <= r[:, :, None])).sum(-1)  # (P, S) F_<=(a)
    pa, pb = p[:, :, None], p[:, None, :]  # (P, S, 1), (P, 1, S)
    inside = (f_le[:, :, None] - f_le[:, None, :] + pb).clamp_min(0)  # (P, S, S) I = F_<=(a) - F_<(b)
    joint = inside**n - (inside - pb).clamp_min(0) ** n - (inside - pa).clamp_min(0) ** n \
        + (inside - pa - pb).clamp_min(0) ** n
    return joint * (r[:, :, None] > r[:, None, :]) + torch.diag_embed(p**n)


def check_law(probs, rewards, name: str) -> tuple[Tensor, Tensor]:
    """(probs, rewards) as float64 (P, S) tables: probs a distribution per row, rewards finite, same shape."""
    for x, what in ((probs, name), (rewards, "rewards")):
        if isinstance(x, Tensor) and x.dtype == torch.bool:
            raise TypeError(f"{what} must hold real numbers, got a bool tensor")
    p, r = check_probs(probs, name), check_table(rewards, "rewards")
    if p.dim() != 2:
        raise ValueError(f"{name} must be (P, S), got shape {tuple(p.shape)}")
    check_same_shape(p, r, name, "rewards")
    return p, r


def bonbon_objective(log_q: Tensor, log_pi: Tensor, pairs: Tensor, n: int, alpha: float) -> Tensor:
    """BoNBoN's loss in expectation, by enumeration: (P,) from log q, log pi (P, S) and best_worst_probs (P, S, S).

    alpha * E[-log q(best)] + (1 - alpha) * E[(u(best) - u(worst) - 1/(2 beta_n))^2], u = log q - log pi.
    """
    n, alpha = check_int(n, "n", minimum=2), check_weight(alpha, "alpha")
    for x, name in ((log_q, "log_q"), (log_pi, "log_pi")):
        t = check_not_nan(as_float(x, name), name, finite=True)
        if t.dim() != 2 or (t > 1e-9).any():
            raise ValueError(f"{name} must be (P, S) finite log-probabilities (<= 0), got shape {tuple(t.shape)}"
                             + (f" with a value {t.max().item():.3g} > 0" if t.dim() == 2 else ""))
    if not isinstance(log_q, Tensor):
        raise TypeError(f"log_q must be a tensor (its gradient is the point), got {type(log_q).__name__}")
    check_same_shape(log_q, torch.as_tensor(log_pi), "log_q", "log_pi")
    pr = check_not_nan(as_float(pairs, "pairs"), "pairs", finite=True)
    if pr.shape != (*log_q.shape, log_q.shape[-1]) or (pr < 0).any():
        raise ValueError(f"pairs must be best_worst_probs's (P, S, S) law, of non-negative probabilities, for log_q "
                         f"{tuple(log_q.shape)}; got shape {tuple(pr.shape)}")
    u = log_q - log_pi  # (P, S)
    margin = u[:, :, None] - u[:, None, :] - 1 / (2 * bonbon_beta(n))  # (P, S, S)
    return alpha * -(pairs.sum(2) * log_q).sum(-1) + (1 - alpha) * (pairs * margin**2).sum((1, 2))


def bonbon_optimum(ref_probs: Tensor, pairs: Tensor, n: int, alpha: float, max_steps: int = 100) -> Tensor:
    """BoNBoN's exact optimum q* (P, S) over all distributions on S outcomes, by Newton's method on the logits.

    Minimises :func:`bonbon_objective` from q = ref_probs (P, S), with ``pairs`` = best_worst_probs (P, S, S).
    The loss is convex in the logits z: alpha times a log-sum-exp plus a quadratic in the differences z_a - z_b,
    whose Hessian is 2 (diag(W 1) - W) with W = pairs + pairs^T. A first-order optimiser stalls where q is tiny
    (the SFT gradient on a logit is about q); Newton's steps do not. Each prompt's step is halved until its loss
    drops enough (Armijo), and the solve is done with a unit diagonal, as q spans many decades.
    """
    n, alpha = check_int(n, "n", minimum=2), check_weight(alpha, "alpha")
    max_steps = check_int(max_steps, "max_steps")
    p = check_probs(ref_probs, "ref_probs")
    w = check_not_nan(as_float(pairs, "pairs"), "pairs", finite=True)
    if p.dim() != 2 or w.shape != (*p.shape, p.shape[-1]):
        raise ValueError(f"ref_probs must be (P, S) and pairs (P, S, S); got {tuple(p.shape)} and {tuple(w.shape)}")
    w = w + w.transpose(1, 2)  # (P, S, S): P(best = a, worst = b) + P(best = b, worst = a)
    contrast_hessian = 2 * (torch.diag_embed(w.sum(-1)) - w)  # (P, S, S)
    loss = lambda z: bonbon_objective(z.log_softmax(-1), p.log(), pairs, n, alpha)  # noqa: E731  (P,)
    z = p.log()
    for _ in range(max_steps):
        z = z.detach().requires_grad_(True)
        value = loss(z)
        grad, = torch.autograd.grad(value.sum(), z)
        z, value, q = z.detach(), value.detach(), z.detach().softmax(-1)
        # alpha (diag q - q q^T) + (1 - alpha) contrast_hessian, plus q q^T, which removes the flat direction (one
        # constant added to every logit leaves q unchanged) without changing the step's effect on q
        hess = alpha * torch.diag_embed(q) + (1 - alpha) * (q[:, :, None] * q[:, None, :] + contrast_hessian)
        d = hess.diagonal(dim1=1, dim2=2).rsqrt()  # (P, S)
        step = -d * torch.linalg.solve(d[:, :, None] * hess * d[:, None, :], d * grad)
        t = torch.ones(len(z), 1, dtype=z.dtype)  # (P, 1); 1e-12 absorbs rounding in the sufficient-decrease test
        while not (ok := loss(z + t * step) <= value + 1e-4 * t[:, 0] * (grad * step).sum(-1) + 1e-12).all():
            t = torch.where(ok[:, None], t, t / 2)
        z = z + t * step
        if (t * step).abs().max() < 1e-10:
            break
    return z.softmax(-1)


def jbond_expected_reward(anchor_probs: Tensor, rewards: Tensor) -> Tensor:
    """E over the two anchor draws of r_J(y): -log 16 * P(both anchor rewards > r(y)) = -log 16 (1 - F_<=(y))^2.

    (P, S) from the anchor's probabilities and the rewards (P, S).
    """
    anchor_probs, rewards = check_law(anchor_probs, rewards, "anchor_probs")
    f_le = (anchor_probs[:, None, :] * (rewards[:, None, :] <= rewards[:, :, None])).sum(-1)  # (P, S)
    return -JBOND_PENALTY * (1 - f_le) ** 2

"""Aligning for the sampler used at inference, exactly on categorical distributions.

* BoN-aware fine-tuning (Chow et al., 2024, arXiv:2412.15287): maximise what Best-of-n *of the tuned model*
  earns, minus beta KL(q || pi):

      J(q) = E_{y ~ BoN_n(q)}[u(y)] - beta KL(q || pi),

  u the reward (or any utility: the reference mid-rank F_mid gives BoN's win rate). With the outcomes sorted
  by u and F_j = q(y_(1)) + ... + q(y_(j)), E_{BoN_n(q)}[u] = u_(K) - sum_{j<K} (u_(j+1) - u_(j)) F_j^n
  (summation by parts of sum_j u_(j) (F_j^n - F_(j-1)^n); tied utilities add nothing). It is concave in q,
  so J has one maximiser q* = pi e^{g(q*)/beta} / Z with g = dE/dq, found by :func:`bon_aware_optimum`.

* Calibrated reward transforms (InfAlign, Balashankar et al., 2024, arXiv:2412.19792): KL-RL on Phi(F_mid(r)),
  the reward's reference mid-rank transformed; the optimum is pi e^{Phi(F_mid)/beta} / Z. Phi = log is vBoN-L's
  reward; InfAlign's exponential Phi(u) = e^{t u} is meant for Best-of-n at inference.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .bon import bon_probs, kl_divergence, kl_rl_policy, reward_cdf, win_rate
from .checks import check_int, check_positive, check_probs, check_rewards


def bon_expected_utility(q: Tensor, utility: Tensor, n: int) -> Tensor:
    """E_{y ~ BoN_n(q)}[u(y)] for q (..., K) and u (..., K): (...); differentiable in q.

    = u_(K) - sum_{j<K} (u_(j+1) - u_(j)) F_j^n, outcomes sorted by u, F_j the cumulative mass of q.
    """
    n = check_int(n, "n")
    u_s, order = utility.sort(-1)  # (..., K)
    f = q.gather(-1, order).cumsum(-1)[..., :-1].clamp(0.0, 1.0)  # (..., K-1) F_j
    return u_s[..., -1] - ((u_s[..., 1:] - u_s[..., :-1]) * f**n).sum(-1)


def bon_aware_objective(q: Tensor, probs: Tensor, utility: Tensor, n: int, beta: float) -> Tensor:
    """J(q) = E_{BoN_n(q)}[u] - beta KL(q || pi), shape (...); differentiable in q."""
    return bon_expected_utility(q, utility, n) - beta * _kl(q, probs)


def _kl(q: Tensor, p: Tensor) -> Tensor:
    """KL(q || p) over the last dimension, unchecked and differentiable (0 log 0 = 0): (...)."""
    return (torch.xlogy(q, q) - torch.xlogy(q, p)).sum(-1)


def bon_aware_optimum(probs, utility, n: int, beta: float, tol: float = 1e-16, max_iter: int = 100_000) -> Tensor:
    """The maximiser q* of E_{BoN_n(q)}[u] - beta KL(q || pi), shape (..., K), by damped fixed-point steps.

    Each step moves log q a fraction eta of the way to log T(q), T(q) = softmax(log pi + g(q)/beta) and
    g = dE_{BoN_n(q)}[u]/dq (a mirror-ascent step); eta halves whenever a step would not make progress. It
    stops when the Jeffreys divergence KL(q || T(q)) + KL(T(q) || q) < tol (q = T(q) is the stationarity
    condition of the concave J) and raises a RuntimeError if it has not after ``max_iter`` steps. n = 1 is the
    KL-RL optimum.
    """
    n = check_int(n, "n")
    beta = check_positive(beta, "beta")
    p = check_probs(probs)
    u = check_rewards(utility, p, "utility")
    if n == 1:
        return kl_rl_policy(p, u, beta)
    support = p > 0
    log_p = torch.where(support, p.log(), -math.inf)

    def target(log_q: Tensor) -> tuple[Tensor, Tensor]:
        q = log_q.exp().requires_grad_(True)
        earned = bon_expected_utility(q, u, n)  # (...)
        (g,) = torch.autograd.grad(earned.sum(), q)
        q = q.detach()
        return torch.log_softmax(log_p + g / beta, -1), earned.detach() - beta * _kl(q, p)  # T(q), J(q)

    def residual(log_q: Tensor, log_t: Tensor) -> float:
        gap = torch.where(support, log_t - log_q, 0.0)
        return (gap * (log_t.exp() - log_q.exp())).sum(-1).max().item()  # Jeffreys divergence between q and T(q)

    log_q, eta = log_p.clone(), 0.5
    log_t, value = target(log_q)
    res = residual(log_q, log_t)
    for _ in range(max_iter):
        if res < tol:
            return log_q.exp()
        trial = torch.log_softmax(torch.where(support, log_q + eta * (log_t - log_q), -math.inf), -1)
        trial_t, trial_value = target(trial)
        trial_res = residual(trial, trial_t)
        # J must rise, or (near q*, where J changes by O(residual^2), below rounding) hold while the residual falls;
        # a step that does neither (an overshoot, or a 2-cycle at equal J) is retried with half the step
        slack = 1e-13 * (1 + value.abs().sum().item())
        gain = (trial_value - value).sum().item()
        if gain > slack or (gain > -slack and trial_res < res):
            log_q, log_t, value, res, eta = trial, trial_t, trial_value, trial_res, min(0.5, 1.5 * eta)
        else:
            eta /= 2
    raise RuntimeError(f"bon_aware_optimum did not converge in {max_iter} steps (residual {res:.3g})")


def _exponential(t: float) -> Callable[[Tensor], Tensor]:
    return lambda f: torch.exp(t * f)


TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda f: f,  # the calibrated reward: the win rate against one reference sample
    "log": torch.log,  # vBoN-L: optimum pi F^{1/beta}, Best-of-(1/beta + 1)'s continuous law
    "exp(5)": _exponential(5.0),
    "exp(10)": _exponential(10.0),
    "exp(20)": _exponential(20.0),
}


def transform_of(transform: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The function Phi a transform names (a key of :data:`TRANSFORMS`), or the function itself."""
    if isinstance(transform, str):
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {tuple(TRANSFORMS)} or a function, got {transform!r}")
        return TRANSFORMS[transform]
    if not callable(transform):
        raise TypeError(f"transform must be a name or a function of F_mid, got {type(transform).__name__}")
    return transform


def calibrated_reward(probs, rewards, transform: str | Callable[[Tensor], Tensor]) -> Tensor:
    """Phi(F_mid(y)), F_mid = (F_lt + F_le)/2 the reference mid-rank of r(y): (..., K).

    ``transform`` is a name in :data:`TRANSFORMS` or a function of F_mid (a tensor in (0, 1])."""
    phi = transform_of(transform)
    f_lt, f_le = reward_cdf(probs, rewards)
    return phi((f_lt + f_le) / 2)


def calibrated_policy(probs, rewards, transform, beta: float) -> Tensor:
    """The KL-RL optimum on the calibrated reward: pi e^{Phi(F_mid)/beta} / Z, (..., K)."""
    return kl_rl_policy(probs, calibrated_reward(probs, rewards, transform), beta)


def inference_win_rate(policy_probs, ref_probs, rewards, n: int) -> Tensor:
    """Win rate of Best-of-n of the policy against Best-of-n of the reference (ties count 1/2): (...).

    InfAlign's inference-time win rate for the Best-of-n procedure; n = 1 is the ordinary win rate."""
    return win_rate(bon_probs(policy_probs, rewards, n), bon_probs(ref_probs, rewards, n), rewards)


def beta_for_kl(policy_of_beta: Callable[[float], Tensor], probs, kl: float, low: float = 1e-6,
                high: float = 1e12, iters: int = 60) -> float:
    """The beta at which policy_of_beta(beta) (..., K) is ``kl`` nats from pi on average over prompts.

    Bisection in log beta: the KL of every optimum in this module falls as beta grows. A ValueError says
    when ``kl`` lies outside the KLs at ``low`` and ``high``.
    """
    kl = check_positive(kl, "kl")
    p = check_probs(probs)
    mean_kl = lambda beta: kl_divergence(policy_of_beta(beta), p).mean().item()  # noqa: E731
    if not mean_kl(high) <= kl <= mean_kl(low):
        raise ValueError(f"kl = {kl:.4g} is outside [{mean_kl(high):.4g}, {mean_kl(low):.4g}], the KLs at beta = "
                         f"{high:g} and {low:g}")
    lo, hi = math.log(low), math.log(high)
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_kl(math.exp(mid)) > kl else (lo, mid)
    return math.exp((lo + hi) / 2)

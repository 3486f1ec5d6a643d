"""Soft Best-of-n (Verdun, Oesterling, Lakkaraju, Calmon, 2025, arXiv:2505.03156), exactly and by simulation.

Soft BoN draws y_1..y_n from pi and returns y_i with probability w_i / sum_j w_j, w = exp(r / temperature).
Temperature -> 0 is Best-of-n (ties broken uniformly, as :func:`minivbon.bon.bon_probs`); n -> infinity is
the KL-RL optimum pi e^{r/temperature} / Z (:func:`minivbon.bon.kl_rl_policy`).

Its law. By exchangeability, with S the sum of the other n-1 weights,

    P_n(y) = n pi(y) w(y) E[1 / (w(y) + S)],
    E[1 / (a + S)] = int_0^inf e^{-a t} M(t)^{n-1} dt,   M(t) = E_{y'~pi}[e^{-t w(y')}],

since 1/x = int_0^inf e^{-t x} dt and the n-1 draws are independent. With t = e^s the integrand is smooth
and decays at both ends, so the trapezoid rule in s converges geometrically; every factor is kept in log
space (weights are divided by the largest, so w <= 1 and nothing overflows), which keeps it finite and
accurate for n up to 10^6 and temperatures down to (max r - min r) / 10^5.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .bon import selection_runs
from .checks import check_int, check_positive, check_probs, check_rewards

STEP = 0.125  # trapezoid step in s = log t; the error falls like exp(-pi^2 / STEP) (about 1e-34 here)
TAIL = 40.0  # each truncated tail is below e^-40 of the integral
MAX_GRID = 1_000_000  # grid points per prompt: (max r - min r) / temperature up to about 1.2e5


def integral_grid(low_log_w: float, n: int) -> Tensor:
    """The trapezoid grid in s = log t: (G,) points STEP apart on [-log n - TAIL, log(X) - low_log_w],
    X = TAIL + log(n + 1) - low_log_w, outside which the integrand is negligible (``low_log_w`` <= 0 is the
    smallest log weight, -(max r - min r)/temperature). A ValueError when it would exceed MAX_GRID points."""
    lo = -math.log(n) - TAIL
    hi = -low_log_w + math.log(TAIL + math.log(n + 1) - low_log_w)
    points = int(math.ceil((hi - lo) / STEP)) + 1
    if points > MAX_GRID:
        raise ValueError(f"temperature is too small for these rewards: (max r - min r) / temperature = "
                         f"{-low_log_w:.3g} needs {points} grid points (at most {MAX_GRID}); use a larger "
                         "temperature, or bon_probs for the temperature -> 0 limit")
    return lo + STEP * torch.arange(points, dtype=torch.float64)


def log_soft_bon_integral(log_w: Tensor, log_mass: Tensor, n: int, chunk: int = 1 << 22) -> Tensor:
    """log E[1/(a + S)] for each a = exp(log_w[c]): (C,), S the sum of n-1 draws of the weight law.

    ``log_w`` (C,) are the log weights of the distinct values (all <= 0, the largest 0) and ``log_mass``
    (C,) their log probabilities under pi. Trapezoid rule in s on :func:`integral_grid`, outside which the
    integrand e^{s - a e^s} M(e^s)^{n-1} is negligible.
    """
    s = integral_grid(log_w.min().item(), n)  # (G,)
    points = len(s)
    rows = max(1, chunk // len(log_w))
    log_m = torch.cat([torch.logsumexp(log_mass - (g[:, None] + log_w).exp(), -1)  # (G,) log M(e^s)
                       for g in s.split(rows)])
    base = s + (n - 1) * log_m  # (G,)
    out = torch.cat([torch.logsumexp(base[:, None] - (s[:, None] + lw).exp(), 0)  # (C,), classes in chunks
                     for lw in log_w.split(max(1, chunk // points))])
    return out + math.log(STEP)


def soft_bon_probs(probs, rewards, n: int, temperature: float) -> Tensor:
    """Exact law of soft Best-of-n, shape (..., K): P_n(y) = n pi(y) w(y) E[1/(w(y) + S)], w = e^{r/temperature}.

    Outcomes with equal rewards have equal weights (ties need no rule). Outcomes with pi(y) = 0 get 0 and
    do not enter S. O(G (K + C)) per prompt for G grid points and C distinct rewards; n = 1 returns pi.
    """
    n = check_int(n, "n", maximum=10**6)
    temperature = check_positive(temperature, "temperature")
    p = check_probs(probs)
    r = check_rewards(rewards, p)
    if n == 1:
        return p.clone()
    out = torch.zeros_like(p)
    flat_p, flat_r, flat_out = p.reshape(-1, p.shape[-1]), r.reshape(-1, p.shape[-1]), out.view(-1, p.shape[-1])
    for row in range(len(flat_p)):
        support = flat_p[row] > 0
        r_in, p_in = flat_r[row][support], flat_p[row][support]
        log_w_all = (r_in - r_in.max()) / temperature  # (K',) every weight <= 1
        log_w, cls = torch.unique(log_w_all, return_inverse=True)  # (C,) distinct values; cls (K',)
        mass = torch.zeros_like(log_w).index_add_(0, cls, p_in)
        log_int = log_soft_bon_integral(log_w, mass.log(), n)  # (C,)
        flat_out[row][support] = (math.log(n) + p_in.log() + log_w_all + log_int[cls]).exp()
    return out


def soft_bon_sample(probs, rewards, n: int, temperature: float, num_samples: int,
                    generator: torch.Generator | None = None, chunk: int = 1 << 22) -> Tensor:
    """Run soft Best-of-n ``num_samples`` times: LongTensor (..., num_samples).

    Each run draws n outcomes from pi and returns draw i with probability softmax(r / temperature)_i,
    picked as the argmax of r_i / temperature + Gumbel noise (the Gumbel-max trick).
    """
    n = check_int(n, "n", maximum=chunk, why=" (one run holds its n draws in memory at once)")
    num_samples = check_int(num_samples, "num_samples")
    temperature = check_positive(temperature, "temperature")
    p = check_probs(probs)

    def gumbel_max(dr: Tensor) -> Tensor:
        gumbel = -torch.empty(dr.shape, dtype=torch.float64).exponential_(generator=generator).log()
        return (dr / temperature + gumbel).argmax(-1)

    return selection_runs(p, check_rewards(rewards, p), n, num_samples, gumbel_max, generator, chunk)

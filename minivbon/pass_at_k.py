"""Per-sample rewards for training on max@k (pass@k for 0/1 rewards) from a group of n >= k samples.

Best-of-k of a policy q earns E[max(r(y_1), ..., r(y_k))], y_i ~ q. By the score-function identity its
gradient is E[max_j r(y_j) * sum_j grad log q(y_j)]. From n >= k samples of one prompt, averaging over all
C(n, k) subsets S of size k (Walder and Karkhanis, 2025, PKPO, arXiv:2505.15201) gives unbiased estimates

    max@k:      U = sum_i C(i-1, k-1) / C(n, k) * r_(i)                      (r_(1) <= ... <= r_(n))
    gradient:   sum_i s_i grad log q(y_i),   s_i = (1 / C(n, k)) * sum_{S containing i} max_S r,

and for the sample of rank i, s_(i) = [C(i-1, k-1) r_(i) + sum_{m>i} C(m-2, k-2) r_(m)] / C(n, k): either i is
the largest of S (the other k-1 from below), or the largest is some m > i (the other k-2 from below m).
A baseline b_i that does not depend on y_i keeps it unbiased: the leave-one-out one is
b_i = (k / n) U_{-i}, U_{-i} the max@k estimate from the other n-1 samples (needs n >= k + 1); then
sum_i (s_i - b_i) = 0, since the mean of the U_{-i} is U. Ties need no rule (max_S does not depend on which
tied sample is "the" maximum). :func:`minivbon.inference_aware.bon_expected_utility` is the exact value.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .checks import as_float, check_int, check_not_nan


def _log_binom(a: Tensor, b: int) -> Tensor:
    """log C(a, b) for a tensor a >= b >= 0 (float64)."""
    return torch.lgamma(a + 1) - torch.lgamma(torch.as_tensor(b + 1.0, dtype=torch.float64)) - torch.lgamma(a - b + 1)


def _coefficients(n: int, k: int, offset: int) -> Tensor:
    """C(i - 1 - offset, k - 1 - offset) / C(n, k) for ranks i = 1..n (0 where i - 1 - offset < k - 1 - offset): (n,)."""
    a = torch.arange(n, dtype=torch.float64) - offset  # i - 1 - offset
    b = k - 1 - offset
    ok = a >= b
    log_c = _log_binom(a.clamp_min(b), b) - _log_binom(torch.tensor(float(n), dtype=torch.float64), k)
    return torch.where(ok, log_c.exp(), 0.0)


def _suffix_sums(x: Tensor) -> Tensor:
    """For each position i of the last dimension, the sum of x over positions i, i+1, ...: (..., n)."""
    return x.flip(-1).cumsum(-1).flip(-1)


def _check(rewards, k: int, extra: int = 0) -> tuple[Tensor, int]:
    r = check_not_nan(as_float(rewards, "rewards"), "rewards", finite=True)
    if r.dim() != 2:
        raise ValueError(f"rewards must be (groups, n): one row of n samples per prompt, got shape {tuple(r.shape)}")
    k = check_int(k, "k")
    if r.shape[1] < k + extra:
        raise ValueError(f"each group needs n >= k{' + 1' if extra else ''} = {k + extra} samples for this estimate, "
                         f"got n = {r.shape[1]}")
    return r, k


def max_at_k_estimate(rewards, k: int) -> Tensor:
    """Unbiased estimate of E[max of k rewards] from each row of n >= k samples: (groups, n) -> (groups,)."""
    r, k = _check(rewards, k)
    return (r.sort(-1).values * _coefficients(r.shape[1], k, 0)).sum(-1)


def max_at_k_rewards(rewards, k: int, baseline: bool = True) -> Tensor:
    """Per-sample rewards s_i (- b_i): (groups, n), with sum_i s_i grad log q(y_i) unbiased for grad E[max of k].

    ``baseline=True`` subtracts the leave-one-out b_i = (k/n) U_{-i} (needs n >= k + 1); the rewards of a
    row then sum to 0. k = 1 without baseline gives r_i / n, the plain policy gradient of E[r].
    """
    r, k = _check(rewards, k, extra=int(baseline))
    n = r.shape[1]
    r_s, order = r.sort(-1)  # (G, n) ascending
    s = _coefficients(n, k, 0) * r_s  # C(i-1, k-1) r_(i) / C(n, k): i is the largest of S
    if k >= 2:  # the largest of S is some rank m above i: C(m-2, k-2) r_(m) / C(n, k) summed over m > i
        terms = _coefficients(n, k, 1) * r_s  # (G, n), at rank m
        s = s + _suffix_sums(terms) - terms
    if baseline:
        s = s - k / n * _leave_one_out(r_s, k)
    return torch.empty_like(s).scatter_(-1, order, s)


def _leave_one_out(r_s: Tensor, k: int) -> Tensor:
    """U_{-i}, the max@k estimate of the n-1 samples other than rank i: (G, n), from sorted rows r_s."""
    n = r_s.shape[1]
    c = _coefficients(n - 1, k, 0)  # weights of ranks 1..n-1 among n-1 samples
    zero = torch.zeros_like(r_s[:, :1])
    below = torch.cat([zero, (c * r_s[:, :-1]).cumsum(-1)], -1)  # ranks j < i keep rank j
    above = _suffix_sums(torch.cat([c * r_s[:, 1:], zero], -1))  # rank j > i becomes rank j - 1 among the others
    return below + above

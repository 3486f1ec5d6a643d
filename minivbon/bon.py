"""Best-of-N on categorical distributions, exactly and by simulation.

Notation (as in the book, chapters 1-2): reference probabilities ``probs`` = pi(y) over K
outcomes, rewards r(y), and per outcome

    F_lt(y) = P_{y'~pi}[r(y') <  r(y)],   F_le(y) = P_{y'~pi}[r(y') <= r(y)].

Every function takes tensors (or array-likes) of shape (..., K); leading
dimensions are independent prompts. Whatever the input dtype, the maths runs in
float64 and results are float64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_int, check_positive, check_probs, check_rewards, check_same_shape


def _tie_classes(probs: Tensor, rewards: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(F_lt, F_le, pi(G(y)), probs renormalised), each (..., K), in the outcomes' own order.

    Sort the rewards once; y's tie class occupies sorted positions lo(y) .. hi(y)-1, found by binary
    search (searchsorted, as :class:`~minivbon.EmpiricalCDF` does for samples). Then F_lt and F_le are
    the cumulative mass before lo and before hi, and pi(G(y)) is summed member by member (not
    F_le - F_lt, which loses a tiny class next to F = 1 to rounding).
    """
    r_s, order = rewards.sort(dim=-1)  # (..., K)
    r_s = r_s.contiguous()
    cum = probs.gather(-1, order).cumsum(-1)  # (..., K) mass of the first j+1 sorted outcomes
    total = cum[..., -1:]
    p, cum = probs / total, torch.cat([torch.zeros_like(total), cum / total], -1)  # cum: (..., K+1), ends at 1
    r = rewards.contiguous()
    lo = torch.searchsorted(r_s, r, right=False)  # (..., K) first sorted position of G(y)
    hi = torch.searchsorted(r_s, r, right=True)  # (..., K) one past its last
    class_mass = torch.zeros_like(p).scatter_add_(-1, lo, p).gather(-1, lo)  # pi(G(y)): members added up
    return cum.gather(-1, lo), cum.gather(-1, hi), class_mass, p


def reward_cdf(probs, rewards) -> tuple[Tensor, Tensor]:
    """Reference CDF of the reward at each outcome: ``(F_lt, F_le)``, each (..., K).

    F_lt(y) = sum_{y': r(y') < r(y)} pi(y'),  F_le(y) = sum_{y': r(y') <= r(y)} pi(y').
    O(K log K) per prompt: one sort and two binary searches.
    """
    p = check_probs(probs)
    f_lt, f_le, _, _ = _tie_classes(p, check_rewards(rewards, p))
    return f_lt, f_le


def bon_probs(probs, rewards, n: int) -> Tensor:
    """Exact law of Best-of-n with uniform tie-breaking, shape (..., K).

        pi_bon(y) = pi(y) / pi(G(y)) * (F_le(y)^n - F_lt(y)^n),

    G(y) the outcomes tied with y. Without ties this is (F_lt + pi(y))^n - F_lt^n.
    The difference of powers is taken in log space,
    n log F_le + log(-expm1(n (log F_lt - log F_le))), so it neither
    underflows nor cancels for n up to 10^6 and more.
    """
    n = check_int(n, "n")
    p = check_probs(probs)
    f_lt, f_le, class_mass, p = _tie_classes(p, check_rewards(rewards, p))
    log_le, log_lt = f_le.log(), f_lt.log()
    gap = torch.where(f_le > 0, log_lt - log_le, -math.inf)  # <= 0
    log_top = n * log_le + torch.log(-torch.expm1(n * gap))  # log P(top reward class = G(y))
    share = torch.where(p > 0, p / class_mass.clamp_min(torch.finfo(p.dtype).tiny), 0.0)  # pi(y)/pi(G(y))
    return share * log_top.exp()


def bon_sample(probs, rewards, n: int, num_samples: int, generator: torch.Generator | None = None,
               chunk: int = 1 << 22) -> Tensor:
    """Run the Best-of-n algorithm ``num_samples`` times: LongTensor (..., num_samples).

    Each run draws n outcomes from pi and returns one of the maximal-reward
    draws, chosen uniformly at random. Vectorised: draws come from inverse-CDF
    sampling (binary search in the cumulative probabilities), processed in
    chunks of at most ``chunk`` draws.
    """
    n = check_int(n, "n", maximum=chunk, why=" (one run of Best-of-n holds its n draws in memory at once)")
    num_samples = check_int(num_samples, "num_samples")
    p = check_probs(probs)
    r = check_rewards(rewards, p)
    batch = p.shape[:-1]
    p2, r2 = p.reshape(-1, p.shape[-1]), r.reshape(-1, p.shape[-1])  # (P, K)
    cum = p2.to(torch.float64).cumsum(-1)
    cum = (cum / cum[:, -1:]).contiguous()
    per_chunk = max(1, chunk // (n * p2.shape[0]))
    out = []
    for start in range(0, num_samples, per_chunk):
        s = min(per_chunk, num_samples - start)
        u = torch.rand(p2.shape[0], s * n, dtype=torch.float64, generator=generator)
        draws = torch.searchsorted(cum, u, right=True).clamp_max(p2.shape[-1] - 1).view(-1, s, n)  # (P, s, n)
        dr = r2.gather(-1, draws.view(p2.shape[0], -1)).view(-1, s, n)  # rewards of the draws
        is_max = dr == dr.amax(-1, keepdim=True)
        keys = torch.rand(dr.shape, generator=generator).masked_fill(~is_max, -1.0)  # random tie-break
        out.append(draws.gather(-1, keys.argmax(-1, keepdim=True)).squeeze(-1))  # (P, s)
    return torch.cat(out, -1).view(*batch, num_samples)


def kl_divergence(p, q) -> Tensor:
    """KL(p || q) = sum_y p(y) log(p(y)/q(y)) over the last dimension, shape (...).

    Terms with p(y) = 0 count 0; p(y) > 0 where q(y) = 0 gives +inf.
    """
    p, q = check_probs(p, "p"), check_probs(q, "q")
    check_same_shape(p, q, "p", "q")
    q = q.to(p.dtype)
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)


def bon_kl_bound(n: int) -> float:
    """Upper bound on KL(pi_bon || pi): log n - (n-1)/n, reached only in the continuous limit."""
    n = check_int(n, "n")
    return math.log(n) - (n - 1) / n


def win_rate(policy_probs, ref_probs, rewards) -> Tensor:
    """P[r(Y) > r(Y')] + 1/2 P[r(Y) = r(Y')], Y ~ policy, Y' ~ reference, shape (...).

    Equals E_{y~policy}[F_lt(y) + (F_le(y) - F_lt(y))/2]: the policy's expected
    mid-rank under the reference CDF. Best-of-n's win rate is at most n/(n+1), with equality only when
    ties have probability 0 (the continuous limit); on K outcomes it is lower (chapter 2).
    """
    q = check_probs(policy_probs, "policy_probs")
    f_lt, f_le = reward_cdf(check_probs(ref_probs, "ref_probs"), rewards)
    check_same_shape(q, f_lt, "policy_probs", "ref_probs")
    return (q.to(f_lt.dtype) * (f_lt + f_le) / 2).sum(-1)


def kl_rl_policy(probs, rewards, beta: float) -> Tensor:
    """Optimum of E_q[r] - beta KL(q || pi): q(y) proportional to pi(y) exp(r(y)/beta), (..., K).

    Computed as a softmax of log pi + (r - max r)/beta, the maximum taken where pi > 0, so r/beta
    never overflows to +inf: finite for tiny beta and huge rewards.
    """
    beta = check_positive(beta, "beta")
    p = check_probs(probs)
    r = check_rewards(rewards, p)
    top = torch.where(p > 0, r, -math.inf).amax(-1, keepdim=True)
    return torch.softmax(torch.where(p > 0, p.log() + (r - top) / beta, -math.inf), dim=-1)


def expected_reward(probs, rewards) -> Tensor:
    """E_{y~probs}[r(y)], shape (...)."""
    p = check_probs(probs)
    return (p * check_rewards(rewards, p)).sum(-1)

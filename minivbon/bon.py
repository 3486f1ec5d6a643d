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


def _sorted_cdf(probs: Tensor, rewards: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """In reward order: (F_lt, F_le, pi(G(y)), probs renormalised, the sort order), each (..., K).

    One sort; a tie class is a run of equal sorted rewards, located by a
    cumulative count of run starts, so everything after the sort is O(K).
    """
    r_s, order = rewards.sort(dim=-1)
    p_s = probs.gather(-1, order)
    cum = p_s.cumsum(-1)
    total = cum[..., -1:]
    cum, p_s = cum / total, p_s / total  # the CDF ends at exactly 1, whatever the rounding
    cum0 = torch.cat([torch.zeros_like(cum[..., :1]), cum], -1)  # (..., K+1): cum0[j] = mass of the first j
    k = r_s.shape[-1]
    starts = torch.ones_like(r_s, dtype=torch.bool)
    starts[..., 1:] = r_s[..., 1:] != r_s[..., :-1]  # a tie class begins here (each row begins one)
    flat = starts.reshape(-1)
    run = flat.cumsum(0) - 1  # (P*K,) which class each sorted outcome is in
    begin = flat.nonzero().squeeze(1)  # (C,) flat index where each class begins
    end = torch.cat([begin[1:], begin.new_tensor([flat.numel()])])  # one past its last member
    first, past = (begin[run] % k).view(r_s.shape), ((end[run] - 1) % k + 1).view(r_s.shape)
    mass = torch.zeros(begin.numel(), dtype=p_s.dtype).index_add_(0, run, p_s.reshape(-1))[run]
    return cum0.gather(-1, first), cum0.gather(-1, past), mass.view(r_s.shape), p_s, order


def _unsort(x: Tensor, order: Tensor) -> Tensor:
    """Undo the reward sort: out[..., order[j]] = x[..., j]."""
    return torch.empty_like(x).scatter_(-1, order, x)


def reward_cdf(probs, rewards) -> tuple[Tensor, Tensor]:
    """Reference CDF of the reward at each outcome: ``(F_lt, F_le)``, each (..., K).

    F_lt(y) = sum_{y': r(y') < r(y)} pi(y'),  F_le(y) = sum_{y': r(y') <= r(y)} pi(y').
    O(K log K) per prompt: one sort, then a linear scan for the tie classes.
    """
    p = check_probs(probs)
    f_lt, f_le, _, _, order = _sorted_cdf(p, check_rewards(rewards, p))
    return _unsort(f_lt, order), _unsort(f_le, order)


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
    f_lt, f_le, class_mass, p, order = _sorted_cdf(p, check_rewards(rewards, p))  # in reward order
    log_le, log_lt = f_le.log(), f_lt.log()
    gap = torch.where(f_le > 0, log_lt - log_le, -math.inf)  # <= 0
    log_top = n * log_le + torch.log(-torch.expm1(n * gap))  # log P(top reward class = G(y))
    share = torch.where(p > 0, p / class_mass.clamp_min(torch.finfo(p.dtype).tiny), 0.0)  # pi(y)/pi(G(y))
    return _unsort(share * log_top.exp(), order)


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
    mid-rank under the reference CDF. Best-of-n gives n/(n+1) without ties.
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

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

from .checks import (as_float, broadcast_to, check_int, check_positive, check_probs, check_rewards, check_same_shape,
                     check_sorted_finite)


def _tie_classes(probs: Tensor, rewards: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """Group the outcomes into tie classes with one sort: ``(order, p_s, cls, F_lt, F_le, mass)``.

    The P = prod(...) rows of K outcomes are flattened. Sorting a row puts each tie class G in one
    run of equal rewards; runs are numbered c = 0 .. C-1 in sorted order across all rows, and

        cls[j] = (number of run starts at sorted positions <= j) - 1,
        F_le(G) = cum[last position of G],   F_lt(G) = F_le(class below G) (0 for a row's lowest),
        mass(G) = sum_{y in G} pi(y), added member by member (not F_le - F_lt, which loses a tiny
                  class next to F = 1 to rounding),

    with cum the cumulative mass in sorted order divided by its row total (so it ends at exactly 1).
    Everything after the sort is O(K): one gather, a cumsum and a run-length count.

    order (P*K,): flat index of the outcome at each sorted position; p_s (P*K,): pi in sorted order,
    not renormalised (only pi(y) / mass(G(y)) is used); cls (P*K,): class of each sorted position,
    or None when every class is a single outcome (no ties; then C = P*K and mass is p_s);
    F_lt, F_le, mass (C,).
    """
    k = probs.shape[-1]
    r_s, order = rewards.reshape(-1, k).sort(dim=-1)  # (P, K)
    check_sorted_finite(r_s)  # the rewards were not searched for NaN and infinities before the sort
    if len(order) > 1:
        order += torch.arange(0, order.numel(), k).unsqueeze(1)  # row offsets in the flat layout
    order = order.view(-1)
    p_s = probs.reshape(-1).index_select(0, order)
    step = r_s[:, 1:] != r_s[:, :-1]  # (P, K-1): a new class starts at the next position
    cum = torch.cumsum(p_s.view(-1, k), -1, out=r_s)  # into r_s's memory: the sorted rewards are done with
    cum = cum.div_(cum[:, -1:].clone()).view(-1)
    if step.all():
        cls, f_le, mass, lowest = None, cum, p_s, torch.arange(0, cum.numel(), k)
    else:
        edge = step.new_ones(len(step), 1)
        cls = torch.cat([edge, step], 1).view(-1).cumsum(0).sub_(1)
        f_le = cum[torch.cat([step, edge], 1).view(-1)]  # at each class's last position
        mass = torch.zeros_like(f_le).index_add_(0, cls, p_s)
        lowest = cls.view(-1, k)[:, 0]
    f_lt = torch.cat([f_le.new_zeros(1), f_le[:-1]]).index_fill_(0, lowest, 0.0)
    return order, p_s, cls, f_lt, f_le, mass


def _rewards_like(x, p: Tensor) -> Tensor:
    """Rewards as float64, broadcast to the shape of ``p``; :func:`_tie_classes` checks they are finite."""
    return broadcast_to(as_float(x, "rewards"), p.shape, "rewards")


def _per_outcome(x: Tensor, cls: Tensor | None) -> Tensor:
    """A per-class quantity (C,) read at every sorted position: x[cls], shape (P*K,)."""
    return x if cls is None else x.index_select(0, cls)


def _unsort(x_s: Tensor, order: Tensor, shape: torch.Size, out: Tensor | None = None) -> Tensor:
    """Undo the reward sort: out[order[j]] = x_s[j], returned with shape (..., K); ``out`` (P*K,), if given,
    is a spare buffer to write into (every entry is written, since ``order`` is a permutation)."""
    return (torch.empty_like(x_s) if out is None else out).index_copy_(0, order, x_s).view(shape)


def reward_cdf(probs, rewards) -> tuple[Tensor, Tensor]:
    """Reference CDF of the reward at each outcome: ``(F_lt, F_le)``, each (..., K).

    F_lt(y) = sum_{y': r(y') < r(y)} pi(y'),  F_le(y) = sum_{y': r(y') <= r(y)} pi(y').
    O(K log K) per prompt: one sort, then a linear scan for the tie classes.
    """
    p = check_probs(probs)
    order, _, cls, f_lt, f_le, _ = _tie_classes(p, _rewards_like(rewards, p))
    return _unsort(_per_outcome(f_lt, cls), order, p.shape), _unsort(_per_outcome(f_le, cls), order, p.shape)


def bon_probs(probs, rewards, n: int) -> Tensor:
    """Exact law of Best-of-n with uniform tie-breaking, shape (..., K).

        pi_bon(y) = pi(y) / pi(G(y)) * (F_le(y)^n - F_lt(y)^n),

    G(y) the outcomes tied with y. Without ties this is (F_lt + pi(y))^n - F_lt^n.
    The difference of powers is taken in log space, per tie class (shape (C,)),
    F_le^n - F_lt^n = -exp(n log F_le) expm1(n (log F_lt - log F_le)), so it neither
    underflows nor cancels for n up to 10^6 and more. O(K log K): one sort, then O(K).
    """
    n = check_int(n, "n")
    p = check_probs(probs)
    order, p_s, cls, f_lt, f_le, mass = _tie_classes(p, _rewards_like(rewards, p))
    # in place where it can be: at large K each fresh temporary costs as much as the arithmetic on it
    log_le = f_le.log_()
    # log(F_lt / F_le) <= 0; it is -inf - (-inf) = NaN only where F_le = 0, and 0 there makes top 0
    gap = f_lt.log_().sub_(log_le).nan_to_num_(nan=0.0, neginf=-math.inf)
    top = log_le.mul_(n).exp_().mul_(gap.mul_(n).expm1_()).neg_()  # (C,) P(top reward class = G)
    if cls is None:  # share pi(y)/pi(G(y)) is 1 (and top is 0 where pi(y) = 0); p_s's memory takes the result
        return _unsort(top, order, p.shape, out=p_s)
    tiny = torch.finfo(p_s.dtype).tiny
    return _unsort(p_s / _per_outcome(mass.clamp_min(tiny), cls) * _per_outcome(top, cls), order, p.shape)


def reference_draws(probs: Tensor, n: int, num_samples: int, generator: torch.Generator | None = None,
                    chunk: int = 1 << 22):
    """Yield ``num_samples`` runs of n reference draws per row of ``probs`` (P, K), in chunks: (P, s, n) each.

    Inverse-CDF sampling (binary search in the cumulative probabilities), at most ``chunk`` draws at once.
    """
    cum = probs.to(torch.float64).cumsum(-1)
    cum = (cum / cum[:, -1:]).contiguous()
    per_chunk = max(1, chunk // (n * probs.shape[0]))
    for start in range(0, num_samples, per_chunk):
        s = min(per_chunk, num_samples - start)
        u = torch.rand(probs.shape[0], s * n, dtype=torch.float64, generator=generator)
        yield torch.searchsorted(cum, u, right=True).clamp_max(probs.shape[-1] - 1).view(-1, s, n)


def selection_runs(p: Tensor, r: Tensor, n: int, num_samples: int, pick, generator: torch.Generator | None,
                   chunk: int) -> Tensor:
    """``num_samples`` runs of a selection rule over n reference draws: LongTensor (..., num_samples).

    ``p`` and ``r`` (..., K) are checked probabilities and rewards; ``pick(rewards of the draws (P, s, n))``
    returns the index (P, s) of the draw each run keeps. Best-of-n and soft Best-of-n differ only in ``pick``.
    """
    p2, r2 = p.reshape(-1, p.shape[-1]), r.reshape(-1, p.shape[-1])  # (P, K)
    out = []
    for draws in reference_draws(p2, n, num_samples, generator, chunk):  # (P, s, n)
        kept = pick(r2.gather(-1, draws.flatten(1)).view(draws.shape))
        out.append(draws.gather(-1, kept.unsqueeze(-1)).squeeze(-1))  # (P, s)
    return torch.cat(out, -1).view(*p.shape[:-1], num_samples)


def bon_sample(probs, rewards, n: int, num_samples: int, generator: torch.Generator | None = None,
               chunk: int = 1 << 22) -> Tensor:
    """Run the Best-of-n algorithm ``num_samples`` times: LongTensor (..., num_samples).

    Each run draws n outcomes from pi (:func:`reference_draws`) and returns one of the maximal-reward
    draws, chosen uniformly at random.
    """
    n = check_int(n, "n", maximum=chunk, why=" (one run of Best-of-n holds its n draws in memory at once)")
    num_samples = check_int(num_samples, "num_samples")
    p = check_probs(probs)

    def uniform_among_the_best(dr: Tensor) -> Tensor:
        keys = torch.rand(dr.shape, generator=generator).masked_fill(dr != dr.amax(-1, keepdim=True), -1.0)
        return keys.argmax(-1)  # a random key per draw; the non-maximal draws cannot win

    return selection_runs(p, check_rewards(rewards, p), n, num_samples, uniform_among_the_best, generator, chunk)


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


from .soft_bon import soft_bon_probs, soft_bon_sample  # noqa: E402  soft Best-of-n lives beside its own integral

"""Checkers for the book's exercises, in the spirit of Tensor-Puzzles (a book helper: `import checkers`).

A reader writes a function; ``check(name, fn)`` first tries the exercise's fixed hard cases (large N,
tiny probabilities: where a naive formula underflows or cancels), then a few hundred random problems
drawn by hypothesis, and compares each answer with a reference answer. It prints either how many
problems passed or the first failing case: its arguments and shapes, the expected and the returned
values, and the largest difference. Derandomised, so a notebook shows the same verdict on every run.
Worked solutions are in ``book/solutions/``: look there on purpose, after trying.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minivbon as mv
from minivbon import distill, extractive
from minivbon.inference_aware import bon_expected_utility
from minivbon.pass_at_k import max_at_k_rewards


def _dist(draw, k: int) -> torch.Tensor:
    w = torch.tensor(draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k)), dtype=torch.float64)
    return w / w.sum()


@st.composite
def categorical_problems(draw, ties: bool = True, max_k: int = 8, max_n: int = 10):
    """(probs, rewards, n): a float64 distribution over K <= max_k outcomes, rewards (K,), 1 <= n <= max_n.

    With ``ties`` rewards are small integers (so ties are common); without, distinct.
    """
    k = draw(st.integers(1, max_k))
    values = st.integers(-3, 3) if ties else st.integers(-1000, 1000)
    r = draw(st.lists(values, min_size=k, max_size=k, unique=not ties))
    return _dist(draw, k), torch.tensor(r, dtype=torch.float64), draw(st.integers(1, max_n))


@st.composite
def _with_policy(draw):
    """(q, probs, rewards, n): a categorical problem plus another distribution q on its outcomes."""
    p, r, n = draw(categorical_problems())
    return _dist(draw, len(p)), p, r, n


@st.composite
def _grouped_rewards(draw):
    """(rewards (P*k,), k): k samples for each of P prompts, grouped contiguously."""
    k, p = draw(st.integers(2, 6)), draw(st.integers(1, 4))
    return torch.tensor(draw(st.lists(st.floats(-10, 10), min_size=p * k, max_size=p * k)), dtype=torch.float64), k


def _reward_rows(draw, prompts: int, width: int) -> torch.Tensor:
    """(prompts, width) rewards from few distinct values (multiples of 1/2 in [-2, 2]), so ties are common."""
    values = st.integers(-4, 4).map(lambda v: v / 2)
    return torch.tensor([draw(st.lists(values, min_size=width, max_size=width)) for _ in range(prompts)],
                        dtype=torch.float64)


@st.composite
def _rewards_and_references(draw):
    """(rewards (P, B), references (P, M)): few distinct values, so samples often tie with references."""
    p, b, m = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 12))
    return _reward_rows(draw, p, b), _reward_rows(draw, p, m)


@st.composite
def _loss_batch(draw):
    """(logp (B,), task (B,), k1 (B,), beta, k) for the RLOO surrogate loss; logp requires grad."""
    k, p = draw(st.integers(2, 5)), draw(st.integers(1, 3))
    vec = lambda lo, hi: torch.tensor(draw(st.lists(st.floats(lo, hi), min_size=p * k, max_size=p * k)),
                                      dtype=torch.float64)
    return vec(-30, 0).requires_grad_(), vec(-5, 0), vec(-2, 5), draw(st.floats(0.01, 2.0)), k


_log_probs = st.floats(-20.0, 0.0).map(lambda x: torch.tensor([x], dtype=torch.float64))
_t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


def _log_f_hat_mid(rewards, references):
    """Reference answer: log((#below + #equal/2 + 1)/(M + 1)), row by row, by the library's EmpiricalCDF."""
    cdf = mv.EmpiricalCDF(references)
    return cdf.log_cdf(list(range(len(references))), rewards, ties="mid")


def _win_rate_from_samples(rewards, references):
    return mv.EmpiricalCDF(references).win_rate(list(range(len(references))), rewards).mean(-1)


def _rloo_loss(logp, task, k1, beta, k):
    return -(mv.rloo_advantages(task - beta * k1, k) * logp).mean()


def _mid_rank_bound(log_f_lt, log_mass, n):
    return math.log(n) + (n - 1) * torch.logaddexp(log_f_lt, log_mass - math.log(2))


def _bon_win_rate_from_pool(pool, references, n):
    best = pool.view(len(pool), -1, n).amax(-1)  # (P, S/n): the best of each disjoint group of n
    return _win_rate_from_samples(best, references)


@st.composite
def _pool_problems(draw):
    """(pool (P, S), references (P, M), n) with S a multiple of n."""
    p, n, groups, m = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 10))
    return _reward_rows(draw, p, n * groups), _reward_rows(draw, p, m), n


def _mean_se(x, groups):
    blocks = x.double().view(groups, -1).mean(1)
    return blocks.mean(), blocks.std() / math.sqrt(groups)


def _pareto_front(kl, value):
    """Brute force: a point is on the front when no other point has KL <= and value >=, one strictly."""
    n = len(kl)
    return torch.tensor([not any(kl[j] <= kl[i] and value[j] >= value[i] and (kl[j] < kl[i] or value[j] > value[i])
                                 for j in range(n)) for i in range(n)])


def _best_worst_probs(probs, rewards, n):
    return distill.best_worst_probs(probs[None], rewards[None], n)[0]


def _jeffreys(p, q, eta):
    return (1 - eta) * mv.kl_divergence(p, q) + eta * mv.kl_divergence(q, p)


@st.composite
def _distribution_pairs(draw):
    """(p, q, eta): two distributions over the same K outcomes, q > 0 where p > 0 and vice versa, eta in [0, 1]."""
    k = draw(st.integers(1, 8))
    return _dist(draw, k), _dist(draw, k), draw(st.floats(0.0, 1.0))


def _kl_penalised_rewards(rewards, logp, ref_logp, mask, beta):
    return rewards - beta * ((logp - ref_logp) * mask).sum(-1)


def _log_f_mid_by_id(rewards, prompt_ids, references):
    cdf = mv.EmpiricalCDF(references)
    return cdf.log_cdf(list(prompt_ids), rewards, ties="mid")


def _rloo_advantages_nan(rewards, k):
    """Brute force, group by group: each scorable reward minus the mean of the other scorable ones."""
    out = torch.zeros_like(rewards)
    for g in range(0, len(rewards), k):
        ok = [j for j in range(g, g + k) if not torch.isnan(rewards[j])]
        for j in ok:
            others = [rewards[i] for i in ok if i != j]
            out[j] = rewards[j] - sum(others) / len(others) if others else 0.0
    return out


@st.composite
def _token_batches(draw):
    """(rewards (B,), logp (B, T), ref_logp (B, T), mask (B, T) bool, beta)."""
    b, t = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    vec = lambda n, lo, hi: draw(st.lists(st.floats(lo, hi), min_size=n, max_size=n))  # noqa: E731
    rewards = torch.tensor(vec(b, -3, 3), dtype=torch.float64)
    logp, ref = (torch.tensor(vec(b * t, -8, 0), dtype=torch.float64).view(b, t) for _ in range(2))
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).view(b, t)
    return rewards, logp, ref, mask, draw(st.floats(0.01, 2.0))


@st.composite
def _rewards_by_id(draw):
    """(rewards (B,), prompt ids (B,), {id: references (M,)}): ids are not 0..P-1, references tie often."""
    keys = draw(st.lists(st.integers(10, 99), min_size=1, max_size=3, unique=True))
    refs = {key: _reward_rows(draw, 1, draw(st.integers(1, 8)))[0] for key in keys}
    b = draw(st.integers(1, 6))
    return _reward_rows(draw, 1, b)[0], [draw(st.sampled_from(keys)) for _ in range(b)], refs


@st.composite
def _rewards_with_nan(draw):
    """(rewards (P*k,) with some NaN, k)."""
    k, p = draw(st.integers(2, 5), label="k"), draw(st.integers(1, 3))
    values = st.one_of(st.floats(-5, 5), st.just(math.nan))
    return torch.tensor(draw(st.lists(values, min_size=p * k, max_size=p * k)), dtype=torch.float64), k


def _bon_kl(probs, rewards, n):
    return mv.kl_divergence(mv.bon_probs(probs, rewards, n), probs)


@st.composite
def _bon_kl_problems(draw):
    """(probs (K,), rewards (K,), n): ties are common and some outcomes have probability 0, like the extracts
    that use a sentence a paper lacks (chapter 8)."""
    p, r, n = draw(categorical_problems(max_n=50))
    zero = torch.tensor(draw(st.lists(st.booleans(), min_size=len(p), max_size=len(p))))
    zero[int(p.argmax())] = False  # at least one outcome keeps its mass
    p = torch.where(zero, 0.0, p)
    return p / p.sum(), r, n


def _gao_fit(kl, gold):
    """Least squares of gold - gold[0] = d (alpha - beta d), d = sqrt(max(KL, 0)): (alpha, beta)."""
    d = kl.clamp_min(0).sqrt()
    x = torch.stack([d, -d * d], 1)
    alpha, beta = torch.linalg.lstsq(x, (gold - gold[0])[:, None]).solution.squeeze(1)
    return alpha, beta


@st.composite
def _bon_curves(draw):
    """(kl (K,), gold (K,)): KL from 0 upwards in distinct steps (so the fit is well posed), gold anything."""
    k = draw(st.integers(3, 10))
    steps = draw(st.lists(st.integers(1, 8), min_size=k - 1, max_size=k - 1))
    kl = torch.tensor([0] + steps, dtype=torch.float64).cumsum(0) / 4
    return kl, torch.tensor(draw(st.lists(st.floats(-1, 1), min_size=k, max_size=k)), dtype=torch.float64)


@st.composite
def _preference_batches(draw):
    """(r_a (B,), r_b (B,), label (B,)): rewards of both extracts of B pairs (requiring grad), 1 where a won."""
    b = draw(st.integers(1, 6))
    vec = lambda: torch.tensor(draw(st.lists(st.floats(-20, 20), min_size=b, max_size=b)),  # noqa: E731
                               dtype=torch.float64).requires_grad_()
    return vec(), vec(), torch.tensor(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=b, max_size=b)),
                                      dtype=torch.float64)


@st.composite
def _soft_bon_problems(draw):
    """(probs (K,), rewards (K,), n <= 4, temperature): small enough to list every n-tuple; ties common."""
    p, r, _ = draw(categorical_problems(max_k=6))
    return p, r, draw(st.integers(1, 4)), draw(st.sampled_from([0.2, 0.5, 1.0, 2.0, 5.0]))


def _max_at_k_rewards(rewards, k):
    return max_at_k_rewards(rewards[None], k)[0]


@st.composite
def _group_rewards(draw):
    """(rewards (n,), k) with 1 <= k < n <= 8 and ties common."""
    n = draw(st.integers(2, 8))
    values = draw(st.lists(st.integers(-3, 3).map(float), min_size=n, max_size=n))
    return torch.tensor(values, dtype=torch.float64), draw(st.integers(1, n - 1))



@dataclass
class Exercise:
    signature: str  # what the reader writes
    answer: Callable  # the reference answer, same arguments
    problems: st.SearchStrategy  # random argument tuples
    cases: list = field(default_factory=list)  # fixed argument tuples tried first (the hard ones)
    grad: bool = False  # also compare gradients with respect to arguments that require them
    verify: Callable | None = None  # custom check for random outputs: verify(fn) -> None or a failure text


def _bon_sample_verify(fn) -> str | None:
    """Statistical check: 40,000 runs per problem; every frequency within 5 standard errors of pi_bon."""
    problems = [(_t(0.2, 0.5, 0.3), _t(1.0, 3.0, 2.0), 3), (_t(0.1, 0.3, 0.2, 0.4), _t(2.0, 1.0, 2.0, 0.0), 2),
                (_t(0.25, 0.25, 0.5), _t(0.0, 0.0, 0.0), 5), (_t(0.5, 0.3, 0.2), _t(1.0, 2.0, 3.0), 64)]
    runs = 40_000
    for probs, rewards, n in problems:
        out = torch.as_tensor(fn(probs, rewards, n, runs, torch.Generator().manual_seed(0)))
        if out.shape != (runs,):
            return f"arguments probs {tuple(probs.shape)}, n = {n}, num_samples = {runs}\n  expected shape ({runs},), got {tuple(out.shape)}"
        freq = torch.bincount(out.long().flatten(), minlength=len(probs))[: len(probs)].double() / runs
        want = mv.bon_probs(probs, rewards, n)
        se = (want * (1 - want) / runs).sqrt()
        bad = (freq - want).abs() > 5 * se + 1e-3
        if bad.any():
            return (f"arguments probs={probs.tolist()}, rewards={rewards.tolist()}, n={n}, {runs} runs\n"
                    f"  expected frequencies {want.numpy().round(4).tolist()}\n  got                  "
                    f"{freq.numpy().round(4).tolist()}\n  largest difference {(freq - want).abs().max():.4f} "
                    f"(allowed about {(5 * se + 1e-3).max():.4f})")
    return None


EXERCISES: dict[str, Exercise] = {
    "expected_reward": Exercise("f(probs, rewards) -> E[r]", mv.expected_reward,
                                categorical_problems().map(lambda c: c[:2])),
    "reward_cdf": Exercise("f(probs, rewards) -> (F_lt, F_le)", mv.reward_cdf,
                           categorical_problems().map(lambda c: c[:2])),
    "bon_probs_no_ties": Exercise("f(probs, rewards, n) -> pi_bon", mv.bon_probs, categorical_problems(ties=False),
                                  [(_t(1e-3, 0.5, 0.499), _t(0.0, 1.0, 2.0), 5000)]),
    "bon_probs": Exercise("f(probs, rewards, n) -> pi_bon", mv.bon_probs, categorical_problems(),
                          [(_t(0.2, 0.3, 0.5), _t(0.0, 1.0, 1.0), 3), (_t(1e-3, 0.5, 0.499), _t(0.0, 1.0, 1.0), 5000)]),
    "bon_sample": Exercise("f(probs, rewards, n, num_samples, generator) -> (num_samples,) outcome indices",
                           mv.bon_sample, st.nothing(), verify=_bon_sample_verify),
    "win_rate": Exercise("f(policy_probs, ref_probs, rewards) -> win rate", mv.win_rate,
                         _with_policy().map(lambda c: c[:3])),
    "kl_rl_policy": Exercise("f(probs, rewards, beta) -> q", mv.kl_rl_policy,
                             st.tuples(categorical_problems().map(lambda c: c[:2]), st.floats(0.1, 5.0))
                             .map(lambda c: (*c[0], c[1])),
                             [(_t(0.5, 0.3, 0.2), _t(10.0, 10.5, 11.0), 1e-3)]),
    "win_rate_from_samples": Exercise("f(rewards (P, B), references (P, M)) -> (P,) win rates",
                                      _win_rate_from_samples, _rewards_and_references()),
    "log_bon_ratio": Exercise("f(log_cdf, log_ref, n) -> log pi_bon/pi", mv.log_bon_ratio,
                              st.tuples(_log_probs, _log_probs, st.integers(1, 30)),
                              [(_t(-1e-3), _t(-30.0), 1000), (_t(-0.5), _t(-40.0), 30), (_t(-2.0), _t(-1.0), 300)]),
    "vbon_loss": Exercise("f(q, probs, rewards, n) -> KL(q || pi_bon)",
                          lambda q, p, r, n: mv.kl_divergence(q, mv.bon_probs(p, r, n)), _with_policy()),
    "mid_rank_bound": Exercise("f(log_f_lt, log_mass, n) -> log N + (N-1) log(F_lt + pi(G)/2)", _mid_rank_bound,
                               st.tuples(_log_probs, _log_probs, st.integers(1, 30)),
                               [(_t(-800.0), _t(-800.0), 2000)]),
    "rloo_advantages": Exercise("f(rewards, k) -> advantages", mv.rloo_advantages, _grouped_rewards()),
    "log_f_hat": Exercise("f(rewards (P, B), references (P, M)) -> log F_mid (P, B)", _log_f_hat_mid,
                          _rewards_and_references()),
    "rloo_loss": Exercise("f(logp, task_reward, k1, beta, k) -> surrogate loss", _rloo_loss, _loss_batch(),
                          grad=True),
    "mean_se": Exercise("f(x (P*S,), groups) -> (mean, standard error over the P prompt blocks)", _mean_se,
                        st.tuples(st.integers(2, 6), st.integers(1, 4)).flatmap(
                            lambda g: st.tuples(st.lists(st.floats(-5, 5), min_size=g[0] * g[1], max_size=g[0] * g[1])
                                                .map(lambda v: torch.tensor(v, dtype=torch.float64)), st.just(g[0])))),
    "bon_win_rate_from_pool": Exercise("f(pool (P, S), references (P, M), n) -> (P,) win rates of BoN(n)",
                                       _bon_win_rate_from_pool, _pool_problems()),
    "bonbon_beta": Exercise("f(n) -> 1 / (2 (n-1) H_(n-1))", distill.bonbon_beta,
                            st.integers(2, 500).map(lambda n: (n,)), cases=[(2,), (3,), (1000,)]),
    "best_worst_probs": Exercise("f(probs (K,), rewards (K,), n) -> (K, K) P(best = a, worst = b)", _best_worst_probs,
                                 categorical_problems(ties=False).filter(lambda a: a[2] >= 2),
                                 cases=[(_t(0.5, 0.5), _t(0.0, 1.0), 2), (_t(0.9, 0.05, 0.05), _t(2.0, 1.0, 0.0), 5)]),
    "jeffreys": Exercise("f(p (..., K), q (..., K), eta) -> (1-eta) KL(p||q) + eta KL(q||p)", _jeffreys,
                         _distribution_pairs(),
                         cases=[(_t(1.0, 0.0), _t(1.0, 0.0), 0.5), (_t(0.2, 0.8), _t(0.7, 0.3), 0.0),
                                (_t(0.2, 0.8), _t(0.7, 0.3), 1.0)]),
    "kl_penalised_rewards": Exercise("f(rewards (B,), logp (B, T), ref_logp (B, T), mask (B, T), beta) -> (B,)",
                                     _kl_penalised_rewards, _token_batches(),
                                     cases=[(_t(1.0), _t(-1.0, -2.0).view(1, 2), _t(-1.5, -1.0).view(1, 2),
                                             torch.tensor([[True, False]]), 0.5)]),
    "log_f_mid_by_id": Exercise("f(rewards (B,), prompt_ids (B,), {id: references (M,)}) -> (B,) log F_mid",
                                _log_f_mid_by_id, _rewards_by_id(),
                                cases=[(_t(1.0, 1.0), [42, 7], {7: _t(0.0, 2.0), 42: _t(1.0, 1.0, 1.0)})]),
    "rloo_advantages_nan": Exercise("f(rewards (P*k,) with NaN for unscorable, k) -> (P*k,) advantages",
                                    _rloo_advantages_nan, _rewards_with_nan(),
                                    cases=[(_t(1.0, math.nan, 3.0, 2.0), 2), (_t(1.0, 2.0, math.nan), 3)]),
    "bradley_terry_loss": Exercise("f(r_a (B,), r_b (B,), label (B,)) -> mean Bradley-Terry loss",
                                   extractive.bradley_terry_loss, _preference_batches(), grad=True,
                                   cases=[(_t(800.0, -800.0).requires_grad_(), _t(0.0, 0.0).requires_grad_(),
                                           _t(0.0, 1.0))]),
    "bon_kl": Exercise("f(probs (K,), rewards (K,), n) -> KL(pi_bon || pi)", _bon_kl, _bon_kl_problems(),
                       cases=[(_t(0.0, 0.5, 0.5, 0.0), _t(0.0, 1.0, 1.0, 2.0), 4),
                              (_t(1e-3, 0.5, 0.499, 0.0), _t(0.0, 1.0, 2.0, 3.0), 10000)]),
    "gao_fit": Exercise("f(kl (K,), gold (K,)) -> (alpha, beta)", _gao_fit, _bon_curves(),
                        cases=[(_t(-2e-17, 0.25, 1.0, 2.25, 4.0), _t(0.2, 0.2175, 0.23, 0.2375, 0.24))]),
    "pareto_front": Exercise("f(kl (K,), value (K,)) -> (K,) bool, True on the upper-left Pareto front", _pareto_front,
                             st.integers(1, 8).flatmap(lambda k: st.tuples(
                                 *[st.lists(st.integers(0, 4).map(float), min_size=k, max_size=k)
                                   .map(lambda v: torch.tensor(v, dtype=torch.float64))] * 2))),
    "soft_bon_law": Exercise("f(probs (K,), rewards (K,), n, temperature) -> (K,) law of soft Best-of-n",
                             mv.bon.soft_bon_probs, _soft_bon_problems(),
                             cases=[(_t(0.2, 0.3, 0.5), _t(0.0, 1.0, 1.0), 3, 0.5), (_t(0.5, 0.5), _t(0.0, 50.0), 4, 0.2)]),
    "bon_expected_reward": Exercise("f(q (K,), rewards (K,), n) -> E over Best-of-n of q of r", bon_expected_utility,
                                    _with_policy().map(lambda c: (c[0], c[2], c[3])),
                                    cases=[(_t(1e-3, 0.5, 0.499), _t(0.0, 1.0, 1.0), 10000)]),
    "max_at_k_rewards": Exercise("f(rewards (n,), k) -> (n,) PKPO rewards minus the leave-one-out baseline",
                                 _max_at_k_rewards, _group_rewards(),
                                 cases=[(_t(1.0, 1.0, 0.0, 2.0, 2.0), 2), (_t(0.0, 1.0, 0.0, 0.0, 1.0, 0.0), 5)]),
}


def _shapes(args) -> str:
    return ", ".join(f"{tuple(a.shape)}" if isinstance(a, torch.Tensor) else repr(a) for a in args)


def _compare(got, want, tol: float) -> str | None:
    """None when got matches want; else what differs (count, shapes, the largest difference and where)."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    if len(got) != len(want):
        return f"returned {len(got)} value(s), expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        w = torch.as_tensor(w).detach()
        g = torch.as_tensor(g).detach().to(torch.float64 if w.dtype.is_floating_point else w.dtype)
        if g.shape != w.shape and g.numel() != w.numel():
            return f"output {i}: shape {tuple(g.shape)}, expected {tuple(w.shape)}"
        g, w = g.reshape(w.shape), w.double() if w.dtype.is_floating_point else w
        if not w.dtype.is_floating_point:
            if not torch.equal(g, w):
                return f"output {i}: {int((g != w).sum())} of {w.numel()} entries differ"
            continue
        same = torch.isclose(g, w, atol=tol, rtol=tol, equal_nan=False) | ((g == w) & torch.isinf(w))
        if not same.all():
            diff = torch.where(same, 0.0, (g - w).abs().nan_to_num(math.inf))
            where = tuple(torch.nonzero(diff == diff.max())[0].tolist()) if diff.dim() else ()
            return (f"output {i}: largest difference {diff.max().item():.3g} at index {where} "
                    f"(shape {tuple(w.shape)}; {int((~same).sum())} of {w.numel()} entries differ)")
    return None


def _grads(fn, args) -> tuple:
    args = tuple(a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) and a.requires_grad else a
                 for a in args)
    out = fn(*args)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return (torch.zeros(0),) * len(inputs)  # no gradient at all: the comparison reports it
    return torch.autograd.grad(out.sum(), inputs, allow_unused=True)


def _first_failure(ex: Exercise, fn: Callable, args, tol: float) -> str | None:
    want = ex.answer(*args)
    try:
        got = fn(*args)
    except NotImplementedError:
        raise
    except Exception as e:  # a crash is a failing case too: show its arguments
        return f"arguments (shapes {_shapes(args)})\n  your function raised {type(e).__name__}: {e}"
    problem = _compare(got, want, tol)
    if problem is None and ex.grad:
        problem = _compare(_grads(fn, args), _grads(ex.answer, args), tol)
        problem = problem and "gradient " + problem
    if problem is None:
        return None
    def show(x):
        if not isinstance(x, torch.Tensor):
            return x
        x = x.detach()
        if x.dim() == 0:
            return round(x.item(), 6) if x.is_floating_point() else x.item()
        return x.double().numpy().round(6).tolist() if x.is_floating_point() else x.tolist()

    return (f"arguments (shapes {_shapes(args)}): {[show(a) for a in args]}\n"
            f"  expected {[show(w) for w in (want if isinstance(want, tuple) else (want,))]}\n"
            f"  got      {[show(torch.as_tensor(g)) for g in (got if isinstance(got, tuple) else (got,))]}\n"
            f"  {problem}")


WIDTH = 100  # characters: a longer printed line wraps unevenly in JupyterLab beside the file browser


def wrapped(message: str) -> str:
    """``message`` with every line longer than WIDTH broken at spaces, continuations indented."""
    return "\n".join(textwrap.fill(line, WIDTH, subsequent_indent=" " * (4 + len(line) - len(line.lstrip())),
                                    break_long_words=False, break_on_hyphens=False) if len(line) > WIDTH else line
                      for line in message.split("\n"))


def check(name: str, fn: Callable, max_examples: int = 200, tol: float = 1e-9) -> bool:
    """Check the reader's ``fn`` for exercise ``name``; print and return the verdict.

    True when the fixed hard cases and every random problem match the reference answer to ``tol``.
    A function that still raises NotImplementedError is reported as not answered yet.
    """
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    ex = EXERCISES[name]
    failure: list[str] = []
    try:
        if ex.verify is not None:
            message = ex.verify(fn)
            if message:
                failure.append(message)
        for args in ex.cases:
            if not failure and (message := _first_failure(ex, fn, args, tol)):
                failure.append("a fixed case (ties, large N or tiny probabilities):\n  " + message)
        if not failure and ex.verify is None:
            @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(ex.problems)
            def run(args):
                message = _first_failure(ex, fn, args, tol)
                if message:
                    failure[:] = ["the smallest failing case found:\n  " + message]
                    raise AssertionError(message)

            try:
                run()
            except AssertionError:
                pass
    except NotImplementedError:
        print(wrapped(f"{name}: not answered yet.\n  Write {ex.signature}, then run this cell again."))
        return False
    if failure:
        print(wrapped(f"{name}: not yet. Failed on {failure[0]}"))
        return False
    fixed = f"{len(ex.cases)} fixed cases and " if ex.cases else ""
    count = f"{fixed}{max_examples} random problems" if ex.verify is None else "4 problems, 40,000 runs each"
    print(wrapped(f"{name}: correct on {count}."))
    return True

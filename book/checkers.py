"""Checkers for the book's exercises, in the spirit of Tensor-Puzzles (a book helper: `import checkers`).

A reader writes a function; ``check(name, fn)`` calls it on random problems
drawn by hypothesis, compares it with minivbon's own answer and prints either
how many problems passed or the smallest failing one found. Derandomised, so
a notebook shows the same verdict on every run.
"""
from __future__ import annotations

from typing import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minivbon import bon_probs, kl_divergence, kl_rl_policy, log_bon_ratio, reward_cdf, rloo_advantages, win_rate


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


_log_probs = st.floats(-20.0, 0.0).map(lambda x: torch.tensor([x], dtype=torch.float64))

# name -> (the function the reader writes, minivbon's answer, random arguments for both)
EXERCISES: dict[str, tuple[str, Callable, st.SearchStrategy]] = {
    "reward_cdf": ("f(probs, rewards) -> (F_lt, F_le)", reward_cdf,
                   categorical_problems().map(lambda c: c[:2])),
    "bon_probs_no_ties": ("f(probs, rewards, n) -> pi_bon", bon_probs, categorical_problems(ties=False)),
    "bon_probs": ("f(probs, rewards, n) -> pi_bon", bon_probs, categorical_problems()),
    "win_rate": ("f(policy_probs, ref_probs, rewards) -> win rate", win_rate, _with_policy().map(lambda c: c[:3])),
    "kl_rl_policy": ("f(probs, rewards, beta) -> q", kl_rl_policy,
                     st.tuples(categorical_problems().map(lambda c: c[:2]), st.floats(0.1, 5.0))
                     .map(lambda c: (*c[0], c[1]))),
    "log_bon_ratio": ("f(log_cdf, log_ref, n) -> log pi_bon/pi", log_bon_ratio,
                      st.tuples(_log_probs, _log_probs, st.integers(1, 30))),
    "vbon_loss": ("f(q, probs, rewards, n) -> KL(q || pi_bon)",
                  lambda q, p, r, n: kl_divergence(q, bon_probs(p, r, n)), _with_policy()),
    "rloo_advantages": ("f(rewards, k) -> advantages", rloo_advantages, _grouped_rewards()),
}


def _same(got, want, tol: float) -> bool:
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        g = torch.as_tensor(g, dtype=torch.float64)
        if g.numel() != w.numel() or not torch.allclose(g.reshape(w.shape), w.double(), atol=tol, rtol=tol):
            return False
    return True


def check(name: str, fn: Callable, max_examples: int = 200, tol: float = 1e-9) -> bool:
    """Call the reader's ``fn`` for exercise ``name`` on random problems; print and return the verdict.

    True when every problem matches minivbon to ``tol``. A function that still
    raises NotImplementedError is reported as not answered yet.
    """
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    signature, answer, problems = EXERCISES[name]
    failure: list[str] = []

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(problems)
    def run(args):
        got, want = fn(*args), answer(*args)
        if not _same(got, want, tol):
            failure[:] = [f"arguments {args}\n  expected {want}\n  got      {got}"]
            raise AssertionError(failure[0])

    try:
        run()
    except NotImplementedError:
        print(f"{name}: not answered yet. Write {signature} and run this cell again.")
        return False
    except AssertionError:
        print(f"{name}: not yet. Smallest failing case found:\n  {failure[0]}")
        return False
    print(f"{name}: correct on {max_examples} random problems.")
    return True

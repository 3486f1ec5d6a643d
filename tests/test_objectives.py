"""minivbon.objectives: the empirical CDF, the exact and lower-bound vBoN rewards, KL estimators."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minivbon import (EmpiricalCDF, bon_probs, kl_divergence, kl_k1, kl_k3, log_bon_ratio, reward_cdf,
                      vbon_reward)


# ---------------------------------------------------------------- EmpiricalCDF
def test_log_cdf_matches_hand_computed_ranks():
    cdf = EmpiricalCDF({"a": [3.0, 1.0, 2.0, 2.0], "b": [10.0, 0.0]})
    # prompt a, M = 4: below 0.5 -> 0, below 2 -> 1 (ties not counted), below 2.5 -> 3, above all -> 4
    got = cdf.log_cdf(["a", "a", "a", "a", "b", "b"], torch.tensor([0.5, 2.0, 2.5, 9.0, 5.0, 11.0]))
    want = torch.log(torch.tensor([1 / 5, 2 / 5, 4 / 5, 5 / 5, 2 / 3, 3 / 3], dtype=torch.float64))
    assert torch.allclose(got, want, atol=1e-15)
    assert len(cdf) == 2


def test_log_cdf_is_floored_at_minus_log_m_plus_one():
    refs = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    cdf = EmpiricalCDF(refs)
    low = cdf.log_cdf([0, 1, 2], torch.full((3,), -1e9))
    assert torch.allclose(low, torch.full((3,), -math.log(51), dtype=torch.float64))


def test_log_cdf_takes_a_block_of_samples_per_prompt():
    cdf = EmpiricalCDF(torch.tensor([[0.0, 1.0, 2.0], [5.0, 6.0, 7.0]]))
    r = torch.tensor([[0.5, 1.5, 9.0], [0.5, 6.5, 5.5]])  # (B=2, k=3)
    want = torch.log(torch.tensor([[2, 3, 4], [1, 3, 2]], dtype=torch.float64) / 4)
    assert torch.allclose(cdf.log_cdf(torch.tensor([0, 1]), r), want)


def test_log_cdf_converges_to_the_true_cdf():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(20, generator=g, dtype=torch.float64), -1)
    r = torch.randn(20, generator=g, dtype=torch.float64)
    refs = r[torch.multinomial(p, 20_000, replacement=True, generator=g)]
    cdf = EmpiricalCDF({"x": refs})
    f_lt, _ = reward_cdf(p, r)
    est = cdf.log_cdf(["x"], r[None]).exp()[0]
    assert torch.allclose(est, f_lt, atol=0.015)


def test_win_rate_against_references_counts_ties_half():
    cdf = EmpiricalCDF({7: [1.0, 2.0, 2.0, 3.0]})
    got = cdf.win_rate([7, 7, 7], torch.tensor([2.0, 0.0, 4.0]))
    assert torch.allclose(got, torch.tensor([(1 + 1) / 4, 0.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("refs,match", [
    ({"a": [1.0], "b": []}, "prompt 'b' are empty"),
    ({"a": [1.0, float("nan")]}, "prompt 'a' contain NaN"),
    ({}, "holds no prompts"),
    (torch.zeros(3), r"\(P, M\) tensor"),
])
def test_bad_references(refs, match):
    with pytest.raises(ValueError, match=match):
        EmpiricalCDF(refs)


def test_bad_lookups():
    cdf = EmpiricalCDF({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="prompt id 'zzz' has no reference rewards"):
        cdf.log_cdf(["a", "zzz"], torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="rewards contains NaN"):
        cdf.log_cdf(["a"], torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="rewards has 2 rows but there are 1 prompt ids"):
        cdf.log_cdf(["a"], torch.tensor([1.0, 2.0]))


# ---------------------------------------------------------------- log_bon_ratio
def test_log_bon_ratio_equals_categorical_ratio():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(12, generator=g, dtype=torch.float64), -1)
    r = torch.randn(12, generator=g, dtype=torch.float64)  # distinct rewards
    f_lt, _ = reward_cdf(p, r)
    for n in [1, 2, 3, 8, 40]:
        want = (bon_probs(p, r, n) / p).log()
        assert torch.allclose(log_bon_ratio(f_lt.log(), p.log(), n), want, atol=1e-12)


log_probs = st.floats(-50, 0, allow_nan=False)


@given(st.lists(st.tuples(log_probs, log_probs), min_size=1, max_size=20), st.integers(1, 200))
@settings(max_examples=200, deadline=None)
def test_log_bon_ratio_is_above_its_first_term(pairs, n):
    lf = torch.tensor([a for a, _ in pairs], dtype=torch.float64)
    lp = torch.tensor([b for _, b in pairs], dtype=torch.float64)
    exact = log_bon_ratio(lf, lp, n)
    assert (exact >= math.log(n) + (n - 1) * lf - 1e-9).all()
    # and below log of the full binomial sum at pi^(i-1) <= 1: log (F + 1)^n - log F ... kept simple:
    # every term is at most C(n,i) F^(n-i), so the sum is at most (1 + F)^n - F^n <= 2^n
    assert (exact <= n * math.log(2) + 1e-9).all()


def test_log_bon_ratio_is_stable_for_large_n_and_tiny_probabilities():
    lf = torch.tensor([-1e-3, -0.5, -3.0], dtype=torch.float64)
    lp = torch.full((3,), -1e4, dtype=torch.float64)
    got = log_bon_ratio(lf, lp, 10_000)
    assert torch.isfinite(got).all()
    # pi(y) = e^-10000: every term beyond i = 1 vanishes, so the bound is tight
    assert torch.allclose(got, math.log(10_000) + 9_999 * lf, atol=1e-9)


def test_log_bon_ratio_handles_zero_cdf():
    # the lowest outcome (F = 0): only the i = n term survives, giving (n-1) log pi
    got = log_bon_ratio(torch.tensor([-math.inf]), torch.tensor([math.log(0.25)]), 3)
    assert got.item() == pytest.approx(2 * math.log(0.25))


def test_vbon_reward_forms():
    lf = torch.tensor([-0.1, -1.0, -2.0], dtype=torch.float64)
    lp = torch.tensor([-5.0, -3.0, -1.0], dtype=torch.float64)
    assert torch.equal(vbon_reward(lf, 4), lf)
    assert torch.allclose(vbon_reward(lf, 4, log_ref=lp), log_bon_ratio(lf, lp, 4) / 3)
    # exact reward = lower bound / (n-1) + something >= 0, lower bound = log n/(n-1) + log F
    assert (vbon_reward(lf, 4, log_ref=lp) >= lf + math.log(4) / 3 - 1e-12).all()


@pytest.mark.parametrize("call,match", [
    (lambda: vbon_reward(torch.tensor([-1.0]), 1), "n must be >= 2"),
    (lambda: vbon_reward(torch.tensor([0.5]), 3), "log_cdf must be <= 0"),
    (lambda: log_bon_ratio(torch.tensor([-1.0]), torch.tensor([0.1]), 3), "log_ref must be <= 0"),
    (lambda: log_bon_ratio(torch.tensor([float("nan")]), torch.tensor([-1.0]), 3), "log_cdf contains NaN"),
    (lambda: log_bon_ratio(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0, -1.0]), 3), "log_ref has shape"),
    (lambda: log_bon_ratio(torch.tensor([-1.0]), torch.tensor([-1.0]), 0), "n must be >= 1"),
    (lambda: kl_k1(torch.zeros(3), torch.zeros(2)), "logp has shape"),
    (lambda: kl_k3(torch.tensor([float("nan")]), torch.zeros(1)), "logp contains NaN"),
])
def test_objective_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- KL estimators
@given(st.lists(st.floats(-700, 700, allow_nan=False), min_size=1, max_size=30),
       st.lists(st.floats(-700, 700, allow_nan=False), min_size=30, max_size=30))
@settings(max_examples=200, deadline=None)
def test_k3_is_never_negative(a, b):
    lp = torch.tensor(a, dtype=torch.float64)
    lr = torch.tensor(b[: len(a)], dtype=torch.float64)
    assert (kl_k3(lp, lr) >= 0).all()


def test_k3_near_zero_is_quadratic_not_negative():
    l = torch.tensor([1e-12, -1e-12, 1e-8, 3e-5], dtype=torch.float64)
    got = kl_k3(l, torch.zeros_like(l))
    assert torch.allclose(got, l**2 / 2, rtol=1e-3, atol=1e-30)
    assert (kl_k3(torch.tensor([1e-4] * 5, dtype=torch.float32), torch.zeros(5)) >= 0).all()


def test_k1_and_k3_are_unbiased_for_kl():
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(10, generator=g, dtype=torch.float64), -1)
    p = torch.softmax(torch.randn(10, generator=g, dtype=torch.float64), -1)
    y = torch.multinomial(q, 400_000, replacement=True, generator=g)
    exact = kl_divergence(q, p).item()
    assert kl_k1(q.log()[y], p.log()[y]).mean().item() == pytest.approx(exact, abs=0.01)
    assert kl_k3(q.log()[y], p.log()[y]).mean().item() == pytest.approx(exact, abs=0.01)


# ---------------------------------------------------------------- ties
def tied_world(seed=0, k=30, classes=6):
    """A categorical reference over k outcomes whose rewards fall in a few tie classes."""
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), -1)
    r = torch.randint(classes, (k,), generator=g).double()
    return p, r


@pytest.mark.parametrize("n", [1, 2, 4, 16, 1000])
def test_tie_aware_ratio_matches_the_exact_bon_law(n):
    p, r = tied_world()
    a, b = reward_cdf(p, r)
    got = log_bon_ratio(a.log(), (b - a).log(), n)
    assert torch.isfinite(got).all()
    # the BoN law itself underflows float64 at n = 1000; there compare with (b^n - a^n)/(b - a) in log space
    want = (bon_probs(p, r, n) / p).log() if n <= 16 else \
        n * b.log() + torch.log(-torch.expm1(n * (a.log() - b.log()))) - (b - a).log()
    assert torch.allclose(got, want, atol=1e-10, rtol=1e-10)


def test_ratio_matches_the_binomial_sum_term_by_term():
    log_f = torch.log(torch.tensor([0.0, 0.1, 0.5, 0.99, 0.3], dtype=torch.float64))
    log_p = torch.log(torch.tensor([0.01, 0.2, 1e-30, 0.01, 1e-300], dtype=torch.float64))
    for n in [1, 2, 4, 64]:
        want = [math.log(math.fsum(math.comb(n, i) * f ** (n - i) * p ** (i - 1) for i in range(1, n + 1)))
                for f, p in zip([0.0, 0.1, 0.5, 0.99, 0.3], [0.01, 0.2, 1e-30, 0.01, 1e-300])]
        assert torch.allclose(log_bon_ratio(log_f, log_p, n), torch.tensor(want, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_mid_rank_bound_holds_for_every_outcome_and_beats_the_paper_bound(seed):
    p, r = tied_world(seed)
    a, b = reward_cdf(p, r)
    for n in [2, 4, 16]:
        exact = log_bon_ratio(a.log(), (b - a).log(), n)
        mid = math.log(n) + (n - 1) * ((a + b) / 2).log()
        paper = math.log(n) + (n - 1) * a.log()
        assert (mid <= exact + 1e-12).all() and (paper <= mid).all()


def test_worked_example_of_the_tie_aware_reward():
    # N = 4, a tie class from F_lt = 0.30 to F_le = 0.69: per (N-1), exact -0.193, mid-rank -0.241, F_lt -0.742
    a, b, n = torch.tensor([0.30], dtype=torch.float64), torch.tensor([0.69], dtype=torch.float64), 4
    exact = log_bon_ratio(a.log(), (b - a).log(), n)[0] / (n - 1)
    mid = (math.log(n) + (n - 1) * math.log((0.30 + 0.69) / 2)) / (n - 1)
    paper = (math.log(n) + (n - 1) * math.log(0.30)) / (n - 1)
    assert (round(exact.item(), 3), round(mid, 3), round(paper, 3)) == (-0.193, -0.241, -0.742)


def test_empirical_tie_counts_and_the_two_smoothings():
    cdf = EmpiricalCDF({"a": [1.0, 2.0, 2.0, 2.0, 3.0]})  # M = 5
    ids, r = ["a"] * 3, torch.tensor([2.0, 2.5, 0.0])
    below, equal, m = cdf.tie_counts(ids, r)
    assert below.tolist() == [1, 4, 0] and equal.tolist() == [3, 0, 0] and m.tolist() == [5, 5, 5]
    paper = cdf.log_cdf(ids, r).exp()
    mid = cdf.log_cdf(ids, r, ties="mid").exp()
    assert torch.allclose(paper, torch.tensor([2 / 6, 5 / 6, 1 / 6], dtype=torch.float64))
    assert torch.allclose(mid, torch.tensor([3.5 / 6, 5 / 6, 1 / 6], dtype=torch.float64))  # equal without ties
    assert torch.allclose(cdf.log_tie_mass(ids, r).exp(), torch.tensor([3 / 6, 0, 0], dtype=torch.float64))
    with pytest.raises(ValueError, match="ties must be"):
        cdf.log_cdf(ids, r, ties="half")


def test_vbon_reward_uses_the_larger_of_the_tie_mass_and_pi_y():
    log_f = torch.log(torch.tensor([0.3, 0.3], dtype=torch.float64))
    log_ref = torch.log(torch.tensor([1e-20, 1e-20], dtype=torch.float64))
    no_ties = torch.tensor([-math.inf, -math.inf], dtype=torch.float64)
    assert torch.allclose(vbon_reward(log_f, 4, log_ref, no_ties), vbon_reward(log_f, 4, log_ref), atol=1e-12)
    tied = torch.log(torch.tensor([0.39, 1e-30], dtype=torch.float64))
    got = vbon_reward(log_f, 4, log_ref, tied)
    assert round(got[0].item(), 3) == -0.193  # class mass 0.39 from the references
    assert torch.allclose(got[1], vbon_reward(log_f, 4, log_ref)[1])  # pi(y) > estimated mass: pi(y) wins

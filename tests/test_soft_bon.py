"""minivbon.soft_bon: the exact law of soft Best-of-n against enumeration of the n draws, simulation, its two
limits (temperature -> 0 is Best-of-n, n -> infinity is the KL-RL optimum), its O(1/n) rate and bad input."""
import itertools
import math

import pytest
import torch

from minivbon.bon import bon_probs, kl_rl_policy, soft_bon_probs, soft_bon_sample


def brute_force_soft_bon(p, r, n, temperature):
    """Enumerate all K^n ordered draw tuples; credit draw i of a tuple w_i / sum_j w_j of its mass, w = e^{r/T}."""
    top = max(r)
    w = [math.exp((x - top) / temperature) for x in r]  # the common factor e^{max r / T} cancels
    out = [0.0] * len(p)
    for draw in itertools.product(range(len(p)), repeat=n):
        mass = math.prod(p[i] for i in draw)
        total = sum(w[i] for i in draw)
        for i in draw:
            out[i] += mass * w[i] / total
    return torch.tensor(out, dtype=torch.float64)


def problem(seed, k=5, zero=True):
    """pi with pi(y_0) = 0 (when ``zero``), and rewards on a grid of 0.5 with ties (three outcomes share one value)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(k, generator=g, dtype=torch.float64) + 0.05
    if zero:
        p[0] = 0.0
    p = p / p.sum()
    r = torch.randint(0, 4, (k,), generator=g).double() / 2
    r[1] = r[2] = r[3]  # a tie class of three outcomes, whatever the draw
    r[0] = r.max() + 1.0  # the pi = 0 outcome has the best reward: it must still get nothing
    return p, r


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_soft_bon_probs_matches_enumeration(n):
    for seed in range(2):
        p, r = problem(seed)
        assert (r[1:4] == r[1]).all() and p[0] == 0
        for temperature in (0.1, 0.5, 1.0, 5.0):
            exact = brute_force_soft_bon(p.tolist(), r.tolist(), n, temperature)
            got = soft_bon_probs(p, r, n, temperature)
            assert got[0].item() == 0.0
            assert torch.allclose(got, exact, atol=1e-10, rtol=0), (n, temperature, got, exact)


def test_soft_bon_probs_of_a_batch_is_each_row_by_enumeration():
    rows = [problem(seed, zero=seed == 0) for seed in (0, 1)]
    p, r = torch.stack([a for a, _ in rows]), torch.stack([b for _, b in rows])  # (2, 5)
    for n, temperature in ((3, 0.3), (4, 2.0)):
        got = soft_bon_probs(p, r, n, temperature)
        assert got.shape == (2, 5)
        for i in range(2):
            exact = brute_force_soft_bon(p[i].tolist(), r[i].tolist(), n, temperature)
            assert torch.allclose(got[i], exact, atol=1e-10, rtol=0)
    # rewards shared by every row broadcast
    shared = soft_bon_probs(p, r[1], 3, 0.7)
    for i in range(2):
        exact = brute_force_soft_bon(p[i].tolist(), r[1].tolist(), 3, 0.7)
        assert torch.allclose(shared[i], exact, atol=1e-10, rtol=0)


def test_soft_bon_sample_matches_the_exact_law():
    p, r = problem(1)
    n, temperature, runs = 3, 0.4, 200_000
    draws = soft_bon_sample(p, r, n, temperature, runs, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (runs,) and draws.dtype == torch.long
    freq = torch.bincount(draws, minlength=len(p)).double() / runs
    exact = soft_bon_probs(p, r, n, temperature)
    se = (exact * (1 - exact) / runs).sqrt()
    assert freq[0].item() == 0.0  # never the pi = 0 outcome
    assert ((freq - exact).abs() <= 5 * se + 1e-12).all(), (freq, exact)
    # the test has power: Best-of-n and the KL-RL optimum are each many standard errors away
    for other in (bon_probs(p, r, n), kl_rl_policy(p, r, temperature)):
        assert ((freq - other).abs() > 5 * se).any()


def test_soft_bon_sample_of_a_batch_is_seeded():
    rows = [problem(seed, zero=False) for seed in (2, 3)]
    p, r = torch.stack([a for a, _ in rows]), torch.stack([b for _, b in rows])
    a = soft_bon_sample(p, r, 4, 1.0, 50_000, generator=torch.Generator().manual_seed(1))
    b = soft_bon_sample(p, r, 4, 1.0, 50_000, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 50_000) and torch.equal(a, b)
    exact = soft_bon_probs(p, r, 4, 1.0)
    for i in range(2):
        freq = torch.bincount(a[i], minlength=5).double() / 50_000
        se = (exact[i] * (1 - exact[i]) / 50_000).sqrt()
        assert ((freq - exact[i]).abs() <= 5 * se + 1e-12).all()


def test_temperature_to_zero_is_best_of_n_with_uniform_tie_breaking():
    p, r = problem(0)  # reward gaps >= 0.5 between distinct values, and a three-way tie
    for n in (2, 5, 50):
        got = soft_bon_probs(p, r, n, 1e-3)  # e^{-gap/T} <= e^{-500}: no trace of a lower reward
        assert (got - bon_probs(p, r, n)).abs().max().item() < 1e-9
    g = torch.Generator().manual_seed(4)
    q = torch.softmax(torch.randn(8, generator=g, dtype=torch.float64), -1)
    ranks = torch.randperm(8, generator=g).double() / 10  # distinct rewards 0.1 apart
    got = soft_bon_probs(q, ranks, 6, 1e-3)  # e^{-100}
    assert (got - bon_probs(q, ranks, 6)).abs().max().item() < 1e-9


def test_large_n_approaches_the_kl_rl_optimum():
    p, r = problem(1)
    for temperature in (0.3, 1.0):
        target = kl_rl_policy(p, r, temperature)
        gaps = [(soft_bon_probs(p, r, n, temperature) - target).abs().max().item() for n in (10, 100, 10**4, 10**6)]
        assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
        assert gaps[3] < 1e-5 and gaps[3] < gaps[0] * 1e-3  # O(1/n): five decades of n, at least three of error


@pytest.mark.parametrize("n", [10**4, 10**6])
def test_many_draws_of_many_outcomes_stay_finite_and_normalised(n):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4096, generator=g, dtype=torch.float64)
    p /= p.sum()
    r = torch.randn(4096, generator=g, dtype=torch.float64)
    for temperature in (0.05, 1.0):
        q = soft_bon_probs(p, r, n, temperature)
        assert torch.isfinite(q).all() and (q >= 0).all()
        assert abs(q.sum().item() - 1) < 1e-9
        # P_n / pi_T = mu n E[1/(w + S)] falls with r and P_n / pi = n E[w/(w + S)] rises with r, so the expected
        # reward of soft BoN lies between pi's and its n -> infinity limit's
        target = kl_rl_policy(p, r, temperature)
        assert (q * r).sum().item() <= (target * r).sum().item() + 1e-9
        assert (q * r).sum().item() > (p * r).sum().item()


def test_the_ratio_to_the_limit_is_one_plus_c_over_n():
    """P_n(y) / pi_T(y) = 1 + c(y)/n + O(1/n^2), c(y) = E_pi[w^2]/mu^2 - w(y)/mu, w = e^{r/T}, mu = E_pi[w]."""
    g = torch.Generator().manual_seed(7)
    distinct = (torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), -1), torch.randn(6, generator=g,
                                                                                              dtype=torch.float64))
    for (p, r), temperature in itertools.product((problem(0), distinct), (0.5, 2.0)):
        w = ((r - r.max()) / temperature).exp()
        mu = (p * w).sum()
        c = (p * w**2).sum() / mu**2 - w / mu
        target = kl_rl_policy(p, r, temperature)
        support = p > 0
        errors = []
        for n in (100, 1000, 10_000):
            ratio = soft_bon_probs(p, r, n, temperature)[support] / target[support]
            errors.append((n * (ratio - 1) - c[support]).abs().max().item())
        assert errors[0] < 0.05 * c[support].abs().max().item()  # already close at n = 100
        assert errors[1] < errors[0] / 8 and errors[2] < errors[1] / 8  # the remainder is O(1/n): ~10x per decade


def test_n_equal_one_is_the_reference():
    p, r = problem(2)
    assert torch.equal(soft_bon_probs(p, r, 1, 0.3), p)


def test_bad_input_is_refused_naming_the_argument():
    p, r = problem(0, zero=False)
    with pytest.raises(ValueError, match="n must be"):
        soft_bon_probs(p, r, 0, 1.0)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="temperature"):
            soft_bon_probs(p, r, 3, bad)
        with pytest.raises(ValueError, match="temperature"):
            soft_bon_sample(p, r, 3, bad, 10)
    nan_r = r.clone()
    nan_r[2] = math.nan
    with pytest.raises(ValueError, match="rewards contains NaN"):
        soft_bon_probs(p, nan_r, 3, 1.0)
    with pytest.raises(ValueError, match="rewards contains NaN"):
        soft_bon_sample(p, nan_r, 3, 1.0, 10)
    with pytest.raises(ValueError, match="probs must sum to 1"):
        soft_bon_probs(p * 1.1, r, 3, 1.0)
    with pytest.raises(ValueError, match="probs must sum to 1"):
        soft_bon_sample(p * 1.1, r, 3, 1.0, 10)
    with pytest.raises(ValueError, match="n must be"):
        soft_bon_sample(p, r, 0, 1.0, 10)


def test_a_temperature_too_small_for_the_reward_range_is_refused():
    p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match="temperature"):
        soft_bon_probs(p, torch.tensor([0.0, 1.0]), 4, 1e-7)  # (max r - min r) / T = 10^7
    # the same range at a temperature within reach is computed, and is Best-of-n there
    assert torch.allclose(soft_bon_probs(p, torch.tensor([0.0, 1.0]), 4, 1e-4), bon_probs(p, [0.0, 1.0], 4),
                          atol=1e-12, rtol=0)

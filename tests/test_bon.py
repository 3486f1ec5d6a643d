"""minivbon.bon against brute-force enumeration, simulation and its stated properties."""
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minivbon import (bon_kl_bound, bon_probs, bon_sample, expected_reward, kl_divergence, kl_rl_policy,
                      reward_cdf, win_rate)


def brute_force_bon(p, r, n):
    """Enumerate all K^n draw tuples; credit each maximal draw 1/(#maximal draws) of the tuple's mass."""
    k = len(p)
    out = [0.0] * k
    for draw in itertools.product(range(k), repeat=n):
        mass = math.prod(p[i] for i in draw)
        best = max(r[i] for i in draw)
        winners = [i for i in draw if r[i] == best]
        for i in winners:
            out[i] += mass / len(winners)
    return torch.tensor(out, dtype=torch.float64)


def random_problem(seed, k, ties, zeros=False):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(k, generator=g, dtype=torch.float64) + 0.05
    if zeros and k > 2:
        p[0] = 0.0
    p = p / p.sum()
    r = torch.randint(0, 3, (k,), generator=g).double() if ties else torch.randn(k, generator=g, dtype=torch.float64)
    return p, r


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_bon_probs_matches_enumeration(k, n, ties):
    for seed in range(3):
        p, r = random_problem(seed, k, ties, zeros=seed == 2)
        exact = brute_force_bon(p.tolist(), r.tolist(), n)
        assert torch.allclose(bon_probs(p, r, n), exact, atol=1e-12, rtol=0)


def test_reward_cdf_matches_enumeration():
    p, r = random_problem(0, 7, ties=True)
    f_lt, f_le = reward_cdf(p, r)
    for y in range(7):
        assert f_lt[y].item() == pytest.approx(p[r < r[y]].sum().item(), abs=1e-15)
        assert f_le[y].item() == pytest.approx(p[r <= r[y]].sum().item(), abs=1e-15)


@pytest.mark.parametrize("ties", [False, True])
def test_tie_classes_match_enumeration(ties):
    from minivbon.bon import _per_outcome, _tie_classes, _unsort
    rows = [random_problem(s, 7, ties=ties, zeros=s == 1) for s in range(3)]
    p, r = torch.stack([a for a, _ in rows]), torch.stack([b for _, b in rows])
    order, p_s, cls, f_lt, f_le, mass = _tie_classes(p, r)
    assert (cls is None) == (not ties)
    got = [_unsort(_per_outcome(x, cls), order, p.shape) for x in (f_lt, f_le, mass)] + [_unsort(p_s, order, p.shape)]
    for i in range(3):
        for y in range(7):
            below, tied = r[i] < r[i, y], r[i] == r[i, y]
            assert got[0][i, y].item() == pytest.approx(p[i][below].sum().item(), abs=1e-15)
            assert got[1][i, y].item() == pytest.approx(p[i][below | tied].sum().item(), abs=1e-15)
            assert got[2][i, y].item() == pytest.approx(p[i][tied].sum().item(), abs=1e-15)
            assert got[3][i, y].item() == p[i, y].item()


def test_batched_rows_are_independent():
    rows = [random_problem(s, 6, ties=s % 2 == 0) for s in range(4)]
    p = torch.stack([a for a, _ in rows])
    r = torch.stack([b for _, b in rows])
    batched = bon_probs(p, r, 4)
    for i, (a, b) in enumerate(rows):
        assert torch.allclose(batched[i], bon_probs(a, b, 4), atol=1e-15)


def test_rewards_broadcast_over_prompts():
    p = torch.softmax(torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    r = torch.arange(5.0)
    assert torch.allclose(bon_probs(p, r, 3), bon_probs(p, r.expand(3, 5), 3))


def test_low_precision_input_is_computed_and_returned_in_float64():
    # in float32 the rare top outcome vanished: 1 - (1 - 1e-8)^(10^6) = 0.00995 became 0
    for dtype in (torch.float32, torch.bfloat16):
        p = torch.tensor([1e-8, 1 - 1e-8], dtype=dtype)
        top = p[0].item() / p.double().sum().item()  # the rare outcome's mass as the dtype can hold it
        q = bon_probs(p, torch.tensor([1, 0], dtype=dtype), 10**6)
        assert q.dtype == torch.float64 and q[0].item() == pytest.approx(-math.expm1(10**6 * math.log1p(-top)), rel=1e-6)
        assert q[0].item() > 0.009
    # distinct float64 rewards stay distinct (a float32 cast merged them into one tie class)
    r = torch.tensor([1.0, 1.0 + 1e-12, 2.0], dtype=torch.float64)
    q = bon_probs(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float32), r, 2)
    assert q[1].item() > q[0].item()


@pytest.mark.parametrize("ties", [False, True])
def test_bon_sample_converges_to_bon_probs(ties):
    p, r = random_problem(1, 10, ties)
    g = torch.Generator().manual_seed(0)
    draws = bon_sample(p, r, 4, 1_000_000, generator=g)
    hist = torch.bincount(draws, minlength=10).double() / draws.numel()
    tv = 0.5 * (hist - bon_probs(p, r, 4)).abs().sum().item()
    assert tv < 0.01
    # a systematic error (e.g. always keeping the first maximal draw's id) would show far above noise
    assert tv < 5 * math.sqrt(10 / 1_000_000)


def test_bon_sample_is_seeded_batched_and_chunked():
    p, r = random_problem(2, 6, True)
    pb, rb = p.expand(3, 6), r.expand(3, 6)
    a = bon_sample(pb, rb, 3, 1000, generator=torch.Generator().manual_seed(5))
    b = bon_sample(pb, rb, 3, 1000, generator=torch.Generator().manual_seed(5))
    c = bon_sample(pb, rb, 3, 1000, generator=torch.Generator().manual_seed(5), chunk=100)
    assert a.shape == (3, 1000) and a.dtype == torch.long and torch.equal(a, b)
    hist_a = torch.bincount(a.flatten(), minlength=6).double() / a.numel()
    hist_c = torch.bincount(c.flatten(), minlength=6).double() / c.numel()
    exact = bon_probs(p, r, 3)
    assert 0.5 * (hist_a - exact).abs().sum() < 0.05 and 0.5 * (hist_c - exact).abs().sum() < 0.05


def test_bon_sample_never_returns_zero_probability_outcomes():
    p = torch.tensor([0.5, 0.0, 0.5])
    draws = bon_sample(p, [0.0, 10.0, 1.0], 8, 10_000, generator=torch.Generator().manual_seed(0))
    assert (draws != 1).all()


@pytest.mark.parametrize("k,n", [(10**4, 10**6), (10**6, 10**6), (10**6, 10**4)])
def test_large_n_and_k_stay_finite_and_normalised(k, n):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(k, generator=g, dtype=torch.float64)
    p /= p.sum()
    r = torch.randn(k, generator=g, dtype=torch.float64)
    q = bon_probs(p, r, n)
    assert torch.isfinite(q).all() and (q >= 0).all()
    assert abs(q.sum().item() - 1) < 1e-9
    # the top outcome wins unless all n draws miss it: 1 - (1 - pi(top))^n
    top = r.argmax()
    assert q[top].item() == pytest.approx(-math.expm1(n * math.log1p(-p[top].item())), rel=1e-9)


# ---------------------------------------------------------------- properties
problems = st.integers(1, 12).flatmap(lambda k: st.tuples(
    st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k),
    st.lists(st.integers(-20, 20), min_size=k, max_size=k),
))


def normalise(w):
    t = torch.tensor(w, dtype=torch.float64)
    return t / t.sum()


@given(problems, st.integers(1, 50))
@settings(max_examples=200, deadline=None)
def test_bon_probs_is_a_distribution(prob, n):
    p, r = normalise(prob[0]), torch.tensor(prob[1], dtype=torch.float64)
    q = bon_probs(p, r, n)
    assert (q >= 0).all() and abs(q.sum().item() - 1) < 1e-12


@given(problems)
@settings(max_examples=100, deadline=None)
def test_n_equal_one_gives_reference(prob):
    p, r = normalise(prob[0]), torch.tensor(prob[1], dtype=torch.float64)
    assert torch.allclose(bon_probs(p, r, 1), p, atol=1e-15)


@given(problems, st.integers(1, 20), st.sampled_from(["cube", "exp", "affine"]))
@settings(max_examples=150, deadline=None)
def test_bon_is_invariant_to_increasing_reward_transforms(prob, n, g):
    p, r = normalise(prob[0]), torch.tensor(prob[1], dtype=torch.float64)
    transform = {"cube": lambda x: x**3 + x, "exp": lambda x: torch.exp(x / 4), "affine": lambda x: 7 * x - 3}[g]
    assert torch.allclose(bon_probs(p, r, n), bon_probs(p, transform(r), n), atol=1e-14)


def test_kl_rl_optimum_is_not_invariant():
    p, r = normalise([1, 1, 1, 1]), torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    assert not torch.allclose(kl_rl_policy(p, r, 1.0), kl_rl_policy(p, r**3, 1.0), atol=1e-3)


@given(problems, st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_kl_of_bon_is_below_the_bound(prob, n):
    p, r = normalise(prob[0]), torch.tensor(prob[1], dtype=torch.float64)
    assert kl_divergence(bon_probs(p, r, n), p).item() <= bon_kl_bound(n) + 1e-12


@given(problems, st.integers(1, 32))
@settings(max_examples=200, deadline=None)
def test_bon_win_rate_never_exceeds_n_over_n_plus_one(prob, n):
    p, r = normalise(prob[0]), torch.tensor(prob[1], dtype=torch.float64)
    assert win_rate(bon_probs(p, r, n), p, r).item() <= n / (n + 1) + 1e-12


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_bon_win_rate_continuous_limit(n):
    g = torch.Generator().manual_seed(n)
    p = torch.rand(100_000, generator=g, dtype=torch.float64)
    p /= p.sum()
    r = torch.randn(100_000, generator=g, dtype=torch.float64)
    assert win_rate(bon_probs(p, r, n), p, r).item() == pytest.approx(n / (n + 1), abs=1e-3)
    # the bound on KL is also nearly tight there
    assert kl_divergence(bon_probs(p, r, n), p).item() == pytest.approx(bon_kl_bound(n), abs=1e-2)


def test_ties_lower_the_win_rate():
    p, r = normalise([1] * 8), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2], dtype=torch.float64)
    assert win_rate(bon_probs(p, r, 4), p, r).item() < 4 / 5 - 0.02
    assert win_rate(p, p, r).item() == pytest.approx(0.5)


def test_win_rate_matches_simulation():
    p, r = random_problem(3, 9, ties=True)
    q = bon_probs(p, r, 3)
    g = torch.Generator().manual_seed(1)
    y = torch.multinomial(q, 400_000, replacement=True, generator=g)
    y_ref = torch.multinomial(p, 400_000, replacement=True, generator=g)
    sim = ((r[y] > r[y_ref]).double() + 0.5 * (r[y] == r[y_ref]).double()).mean().item()
    assert sim == pytest.approx(win_rate(q, p, r).item(), abs=4e-3)


def test_kl_rl_policy_is_the_optimum():
    p, r = random_problem(4, 6, ties=False)
    beta = 0.7
    best = kl_rl_policy(p, r, beta)

    def objective(q):
        return expected_reward(q, r) - beta * kl_divergence(q, p)

    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        other = torch.softmax(best.log() + 0.3 * torch.randn(6, generator=g, dtype=torch.float64), -1)
        assert objective(other) < objective(best)
    # closed form: the optimum's value is beta * log E_pi[exp(r/beta)]
    assert objective(best).item() == pytest.approx(beta * math.log((p * torch.exp(r / beta)).sum().item()))


def test_kl_rl_policy_is_stable_for_tiny_beta():
    p, r = normalise([1, 2, 3]), torch.tensor([0.0, 5.0, 1.0])
    q = kl_rl_policy(p, r, 1e-8)
    assert torch.isfinite(q).all() and q[1].item() == pytest.approx(1.0)


def test_kl_divergence_values():
    p, q = normalise([1, 1]), normalise([1, 3])
    assert kl_divergence(p, q).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert kl_divergence([0.5, 0.5, 0.0], [0.5, 0.25, 0.25]).item() == pytest.approx(0.5 * math.log(2))
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]).item() == math.inf


# ---------------------------------------------------------------- bad input
P, R = [0.2, 0.3, 0.5], [1.0, 2.0, 3.0]


@pytest.mark.parametrize("call,match", [
    (lambda: bon_probs([0.2, 0.3, 0.6], R, 2), "probs must sum to 1"),
    (lambda: bon_probs([-0.2, 0.7, 0.5], R, 2), "probs has a negative"),
    (lambda: bon_probs([float("nan"), 0.5, 0.5], R, 2), "probs contains NaN"),
    (lambda: bon_probs([float("inf"), 0.5, 0.5], R, 2), "probs contains an infinite"),
    (lambda: bon_probs(P, [1.0, float("nan"), 2.0], 2), "rewards contains NaN"),
    (lambda: bon_probs(P, [1.0, 2.0], 2), "rewards has shape"),
    (lambda: bon_probs(P, R, 0), "n must be >= 1"),
    (lambda: bon_probs([], [], 2), "probs is empty"),
    (lambda: bon_probs(0.5, 1.0, 2), "at least one dimension"),
    (lambda: reward_cdf([0.5, 0.6], [1, 2]), "probs must sum to 1"),
    (lambda: bon_sample(P, R, 2, 0), "num_samples must be >= 1"),
    (lambda: bon_sample(P, R, -1, 10), "n must be >= 1"),
    (lambda: kl_divergence(P, [0.5, 0.5]), "p has shape"),
    (lambda: kl_divergence(P, [0.5, 0.6, -0.1]), "q has a negative"),
    (lambda: bon_kl_bound(0), "n must be >= 1"),
    (lambda: win_rate([0.5, 0.5], P, R), "policy_probs has shape"),
    (lambda: win_rate([0.5, 0.6, 0.5], P, R), "policy_probs must sum to 1"),
    (lambda: kl_rl_policy(P, R, 0.0), "beta must be a finite number > 0"),
    (lambda: kl_rl_policy(P, R, -1.0), "beta must be a finite number > 0"),
    (lambda: kl_rl_policy(P, R, float("nan")), "beta must be a finite number > 0"),
    (lambda: kl_rl_policy(P, [1.0, float("inf"), 0.0], 1.0), "rewards contains an infinite"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: bon_probs(["a", "b"], [1, 2], 2), "probs must be a tensor"),
    (lambda: bon_probs(P, R, 2.5), "n must be an integer"),
    (lambda: bon_probs(P, R, True), "n must be an integer"),
    (lambda: bon_probs(P, R, "3"), "n must be an integer"),
    (lambda: bon_probs(torch.tensor([0.5, 0.5], dtype=torch.complex64), [1, 2], 2), "probs must be real"),
])
def test_input_of_the_wrong_kind_raises_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_n_accepts_integral_floats_and_numpy_ints():
    import numpy as np
    assert torch.equal(bon_probs(P, R, 3.0), bon_probs(P, R, np.int64(3)))

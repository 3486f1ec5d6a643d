"""minivbon.inference_aware: what Best-of-n of a policy earns (against bon_probs and enumeration of the n draws),
the BoN-aware optimum (a maximum, a fixed point, KL-RL at n = 1) on the string world, InfAlign's calibrated
rewards and policies against the reference CDF, and the inference-time win rate."""
import itertools
import math

import pytest
import torch

from minivbon.bon import bon_probs, expected_reward, kl_divergence, kl_rl_policy, reward_cdf, win_rate
from minivbon.inference_aware import (TRANSFORMS, bon_aware_objective, bon_aware_optimum, bon_expected_utility,
                                      calibrated_policy, calibrated_reward, inference_win_rate)
from minivbon.toy import make_world


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (tests/conftest.py)


def random_problem(seed, k, shape=()):
    """q over k outcomes (one of them 0 when k > 3) and tied utilities on a grid of 4 values."""
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(*shape, k, generator=g, dtype=torch.float64) + 0.05
    if k > 3:
        q[..., 1] = 0.0
    q = q / q.sum(-1, keepdim=True)
    u = torch.randint(0, 4, (*shape, k), generator=g).double() - 1.5
    return q, u


def world_problem(seed):
    world = make_world(num_prompts=2, vocab=3, length=3, seed=seed)
    return world.ref_log_probs().exp(), world.rewards_all()  # (2, 27) each


# ------------------------------------------------------------------ E_{BoN_n(q)}[u]
@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_bon_expected_utility_is_the_mean_utility_under_bon_probs(n):
    for seed in range(4):
        q, u = random_problem(seed, 9, shape=(3,))
        assert (u[0].unique().numel() < 9)  # ties present
        want = (bon_probs(q, u, n) * u).sum(-1)
        assert torch.allclose(bon_expected_utility(q, u, n), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bon_expected_utility_matches_enumerating_the_n_draws(n):
    for seed in range(3):
        q, u = random_problem(seed, 5)
        want = sum(math.prod(q[i].item() for i in draw) * max(u[i].item() for i in draw)
                   for draw in itertools.product(range(5), repeat=n))
        assert bon_expected_utility(q, u, n).item() == pytest.approx(want, abs=1e-13)


def test_the_gradient_of_bon_expected_utility_is_n_times_the_mean_of_a_max_against_n_minus_1_draws():
    """dE/dq(y) of the degree-n polynomial sum_{y_1..y_n} prod q(y_i) max u(y_i) is n E[max(u(y), M_{n-1})].

    bon_expected_utility writes E as u_(K) - sum_j (u_(j+1) - u_(j)) F_j^n, which equals that polynomial on the
    simplex but not off it (u_(K) stands for u_(K) (sum q)^n), so the gradients agree up to a constant per row:
    the same directional derivative along the simplex, and the same fixed point pi e^{g/beta} / Z."""
    q, u = random_problem(5, 7)
    for n in (2, 3, 6):
        leaf = q.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(bon_expected_utility(leaf, u, n), leaf)
        law = bon_probs(q, u, n - 1)  # law of the best of the other n - 1 draws
        want = n * (law[None, :] * torch.maximum(u[:, None], u[None, :])).sum(-1)
        assert torch.allclose(g - g.mean(), want - want.mean(), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ BoN-aware optimum
CASES = [(2, 0.5), (4, 1.0), (8, 0.2)]


@pytest.mark.parametrize("n,beta", CASES)
def test_bon_aware_optimum_beats_every_nearby_policy(n, beta):
    p, r = world_problem(3)
    q_star = bon_aware_optimum(p, r, n, beta)
    assert torch.allclose(q_star.sum(-1), torch.ones(2, dtype=torch.float64), atol=1e-12) and (q_star > 0).all()
    best = bon_aware_objective(q_star, p, r, n, beta)  # (2,)
    g = torch.Generator().manual_seed(n)
    for scale in (0.01, 0.1):
        noise = torch.randn(300, *p.shape, generator=g, dtype=torch.float64)
        nearby = torch.softmax(q_star.log() + scale * noise, -1)  # (300, 2, 27)
        values = bon_aware_objective(nearby, p.expand_as(nearby), r.expand_as(nearby), n, beta)
        assert (values < best).all(), (best - values).min()


@pytest.mark.parametrize("n,beta", CASES)
def test_bon_aware_optimum_is_the_fixed_point_pi_exp_g_over_beta(n, beta):
    p, r = world_problem(0)
    q_star = bon_aware_optimum(p, r, n, beta)
    leaf = q_star.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(bon_expected_utility(leaf, r, n).sum(), leaf)
    target = p * (g / beta - (g / beta).amax(-1, keepdim=True)).exp()
    target = target / target.sum(-1, keepdim=True)
    # the solver stops at a Jeffreys divergence < 1e-16 between q and T(q): |log T - log q| ~ 1e-8
    assert torch.allclose(q_star, target, atol=1e-7, rtol=1e-6)
    # and it is no fixed point of the other maps: the KL-RL optimum is not, nor the reference
    for other in (kl_rl_policy(p, r, beta), p):
        leaf = other.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(bon_expected_utility(leaf, r, n).sum(), leaf)
        assert not torch.allclose(other, kl_rl_policy(p, g, beta), atol=1e-3)


def test_bon_aware_optimum_of_one_draw_is_the_kl_rl_optimum():
    p, r = world_problem(1)
    for beta in (0.3, 1.0, 3.0):
        assert torch.allclose(bon_aware_optimum(p, r, 1, beta), kl_rl_policy(p, r, beta), atol=1e-15)


@pytest.mark.parametrize("n,beta", CASES)
def test_best_of_n_of_the_optimum_earns_more_than_best_of_n_of_pi_net_of_its_kl(n, beta):
    p, r = world_problem(3)
    q_star = bon_aware_optimum(p, r, n, beta)
    gain = expected_reward(bon_probs(q_star, r, n), r) - expected_reward(bon_probs(p, r, n), r)  # (2,)
    kl = kl_divergence(q_star, p)
    assert (kl > 0).all() and (gain > beta * kl).all()  # J(q*) > J(pi) = E_{BoN_n(pi)}[r]
    # and J(q*) is above J of the other natural candidates
    best = bon_aware_objective(q_star, p, r, n, beta)
    for other in (kl_rl_policy(p, r, beta), bon_probs(p, r, n), calibrated_policy(p, r, "log", 1 / (n - 1))):
        assert (bon_aware_objective(other, p, r, n, beta) < best).all()


def test_bon_aware_optimum_of_a_batch_with_zero_mass_outcomes():
    q, u = random_problem(2, 6, shape=(3,))  # outcome 1 has pi = 0 in every row
    q_star = bon_aware_optimum(q, u, 3, 0.5)
    assert (q_star[:, 1] == 0).all() and torch.allclose(q_star.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)
    for i in range(3):
        assert torch.allclose(q_star[i], bon_aware_optimum(q[i], u[i], 3, 0.5), atol=1e-9)


# ------------------------------------------------------------------ calibrated rewards (InfAlign)
def brute_force_mid_rank(p, r):
    """F_mid(y) = sum_{r(y') < r(y)} pi(y') + 1/2 sum_{r(y') = r(y)} pi(y'), outcome by outcome."""
    return torch.tensor([(p[r < r[y]].sum() + p[r == r[y]].sum() / 2).item() for y in range(len(p))],
                        dtype=torch.float64)


def test_calibrated_reward_is_the_transformed_reference_mid_rank():
    q, u = random_problem(3, 8, shape=(2,))
    f_lt, f_le = reward_cdf(q, u)
    mid = (f_lt + f_le) / 2
    for i in range(2):
        assert torch.allclose(mid[i], brute_force_mid_rank(q[i], u[i]), atol=1e-15)
    assert torch.allclose(calibrated_reward(q, u, "log"), mid.log(), atol=1e-15)
    assert torch.allclose(calibrated_reward(q, u, "identity"), mid, atol=1e-15)
    for t in (5, 10, 20):
        assert torch.allclose(calibrated_reward(q, u, f"exp({t})"), (t * mid).exp(), rtol=1e-14)
    assert set(TRANSFORMS) == {"identity", "log", "exp(5)", "exp(10)", "exp(20)"}
    assert torch.allclose(calibrated_reward(q, u, lambda f: 1 - f), 1 - mid, atol=1e-15)  # any function of F_mid


@pytest.mark.parametrize("big_n", [2, 4, 9])
def test_calibrated_log_policy_at_beta_one_over_n_minus_one_is_pi_times_f_mid_to_the_n_minus_one(big_n):
    p, r = world_problem(0)
    mid = torch.stack([brute_force_mid_rank(p[i], r[i]) for i in range(2)])
    want = p * mid ** (big_n - 1)
    want = want / want.sum(-1, keepdim=True)
    assert torch.allclose(calibrated_policy(p, r, "log", 1 / (big_n - 1)), want, atol=1e-14)
    # exponential transform: pi e^{e^{5 F}/beta} / Z
    want = p * ((5 * mid).exp() / 0.5).exp()
    assert torch.allclose(calibrated_policy(p, r, "exp(5)", 0.5), want / want.sum(-1, keepdim=True), atol=1e-12)


def test_an_unknown_transform_is_refused():
    q, u = random_problem(0, 4)
    with pytest.raises(ValueError, match="transform must be one of"):
        calibrated_reward(q, u, "exp(7)")
    with pytest.raises(ValueError, match="transform"):
        calibrated_policy(q, u, "square", 1.0)
    with pytest.raises(TypeError, match="transform"):
        calibrated_reward(q, u, 3.0)
    with pytest.raises(TypeError, match="transform"):
        calibrated_policy(q, u, None, 1.0)


# ------------------------------------------------------------------ inference-time win rate
def test_inference_win_rate_of_a_policy_against_itself_is_one_half():
    for seed in range(3):
        q, u = random_problem(seed, 7, shape=(2,))
        for n in (1, 2, 5, 100):
            assert torch.allclose(inference_win_rate(q, q, u, n), torch.full((2,), 0.5, dtype=torch.float64),
                                  atol=1e-14)


def test_inference_win_rate_of_one_draw_is_the_win_rate():
    p, r = world_problem(1)
    q = kl_rl_policy(p, r, 0.7)
    assert torch.allclose(inference_win_rate(q, p, r, 1), win_rate(q, p, r), atol=1e-15)


def test_inference_win_rate_matches_enumerating_both_samplers():
    """Y = best of n draws of q, Y' = best of n draws of pi (first maximal draw: tied draws share a reward)."""
    q, u = random_problem(4, 4)
    p = torch.softmax(torch.randn(4, generator=torch.Generator().manual_seed(9), dtype=torch.float64), -1)
    n = 3
    tuples = list(itertools.product(range(4), repeat=n))

    def best_reward_law(w):  # law of max u over n draws of w, as {reward: probability}
        law = {}
        for draw in tuples:
            top = max(u[i].item() for i in draw)
            law[top] = law.get(top, 0.0) + math.prod(w[i].item() for i in draw)
        return law

    mine, theirs = best_reward_law(q), best_reward_law(p)
    want = sum(a * b * (1.0 if x > y else 0.5 if x == y else 0.0) for x, a in mine.items() for y, b in theirs.items())
    assert inference_win_rate(q, p, u, n).item() == pytest.approx(want, abs=1e-13)

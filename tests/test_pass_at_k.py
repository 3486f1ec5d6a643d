"""minivbon.pass_at_k: PKPO's max@k estimate and per-sample rewards against enumeration of the C(n, k) subsets,
their unbiasedness for the exact gradient of E[max of k rewards] (by enumeration, through
bon_expected_utility), the variance the leave-one-out baseline saves, and bad input."""
import itertools
import math

import pytest
import torch

from minivbon.inference_aware import bon_expected_utility
from minivbon.pass_at_k import max_at_k_estimate, max_at_k_rewards


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (tests/conftest.py)


def tied_rewards(seed, groups, n):
    """(groups, n) rewards on a grid of 5 values, so most rows hold ties."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (groups, n), generator=g).double() / 2 - 1


def subsets_max_mean(row, k):
    """Mean over all C(n, k) subsets of the subset maximum."""
    subsets = list(itertools.combinations(range(len(row)), k))
    return sum(max(row[j] for j in s) for s in subsets) / len(subsets)


def subsets_credit(row, k):
    """For each sample i: (1 / C(n, k)) * sum over the subsets containing i of the subset maximum."""
    n = len(row)
    subsets = list(itertools.combinations(range(n), k))
    out = [0.0] * n
    for s in subsets:
        top = max(row[j] for j in s)
        for i in s:
            out[i] += top / len(subsets)
    return out


NK = [(n, k) for n in (1, 2, 3, 5, 7) for k in range(1, n + 1)]


@pytest.mark.parametrize("n,k", NK)
def test_max_at_k_estimate_is_the_mean_subset_maximum(n, k):
    r = tied_rewards(n * 10 + k, 4, n)
    got = max_at_k_estimate(r, k)
    assert got.shape == (4,)
    for g in range(4):
        assert got[g].item() == pytest.approx(subsets_max_mean(r[g].tolist(), k), abs=1e-12)


@pytest.mark.parametrize("n,k", NK)
def test_max_at_k_rewards_without_baseline_credit_each_sample_its_subsets(n, k):
    r = tied_rewards(n * 10 + k + 1, 4, n)
    got = max_at_k_rewards(r, k, baseline=False)
    assert got.shape == r.shape
    for g in range(4):
        assert got[g].tolist() == pytest.approx(subsets_credit(r[g].tolist(), k), abs=1e-12)
    # every subset credits its maximum to its k members: the credits add up to k times the estimate
    assert torch.allclose(got.sum(-1), k * max_at_k_estimate(r, k), atol=1e-12)


@pytest.mark.parametrize("n,k", [(n, k) for n, k in NK if n >= k + 1])
def test_max_at_k_rewards_with_baseline_subtract_k_over_n_of_the_leave_one_out_estimate(n, k):
    r = tied_rewards(n * 10 + k + 2, 4, n)
    got = max_at_k_rewards(r, k)
    for g in range(4):
        row = r[g].tolist()
        credit = subsets_credit(row, k)
        want = [credit[i] - k / n * subsets_max_mean(row[:i] + row[i + 1:], k) for i in range(n)]
        assert got[g].tolist() == pytest.approx(want, abs=1e-12)
    assert torch.allclose(got.sum(-1), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    # the baselined rewards do not move when every reward does (the baseline absorbs the shift)
    assert torch.allclose(max_at_k_rewards(r + 100.0, k), got, atol=1e-10)


def test_k_equal_one_without_baseline_is_the_plain_policy_gradient():
    r = tied_rewards(0, 3, 6)
    assert torch.allclose(max_at_k_rewards(r, 1, baseline=False), r / 6, atol=1e-15)
    assert torch.allclose(max_at_k_estimate(r, 1), r.mean(-1), atol=1e-15)
    assert torch.allclose(max_at_k_estimate(r, 6), r.max(-1).values, atol=1e-15)


# ------------------------------------------------------------------ unbiased for the exact gradient
K = 6
REPLICATES = 40_000


def exact_gradient(theta, rewards, k):
    """d/dtheta E_{y_1..y_k ~ softmax(theta)}[max r(y_j)], by enumeration (bon_expected_utility is exact)."""
    leaf = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(bon_expected_utility(torch.softmax(leaf, -1), rewards, k), leaf)
    return g


def estimates(theta, rewards, k, n, baseline, seed):
    """REPLICATES independent estimates sum_i s_i (onehot(y_i) - q) from n draws each: (REPLICATES, K)."""
    q = torch.softmax(theta, -1)
    g = torch.Generator().manual_seed(seed)
    draws = torch.multinomial(q, REPLICATES * n, replacement=True, generator=g).view(REPLICATES, n)
    s = max_at_k_rewards(rewards[draws], k, baseline=baseline)  # (R, n)
    onehot = torch.zeros(REPLICATES, K, dtype=torch.float64).scatter_add_(1, draws, s)
    return onehot - s.sum(-1, keepdim=True) * q


def problem(seed, binary=False):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(K, generator=g, dtype=torch.float64)
    rewards = (torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64) if binary
               else torch.tensor([0.0, 1.0, 1.0, 2.5, 3.0, 3.0], dtype=torch.float64))  # ties
    return theta, rewards


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("k", [2, 3])
def test_per_sample_rewards_estimate_the_exact_gradient_without_bias(k, binary):
    theta, rewards = problem(k, binary)
    exact = exact_gradient(theta, rewards, k)
    assert exact.abs().max() > 0.01  # a gradient worth estimating
    traces = {}
    for n in (k + 1, 8):
        for baseline in (False, True):
            est = estimates(theta, rewards, k, n, baseline, seed=100 * n + k + baseline)
            mean, se = est.mean(0), est.std(0) / math.sqrt(REPLICATES)
            assert ((mean - exact).abs() <= 4.5 * se).all(), (n, baseline, (mean - exact) / se)
            traces[n, baseline] = est.var(0).sum().item()
    # the leave-one-out baseline removes variance, for many samples most of all
    assert traces[8, True] < traces[8, False]
    # and a wrong estimator is caught: max_at_k(k + 1) rewards estimate another gradient
    est = estimates(theta, rewards, k + 1, 8, True, seed=7)
    mean, se = est.mean(0), est.std(0) / math.sqrt(REPLICATES)
    assert ((mean - exact).abs() > 4.5 * se).any()


def test_for_binary_rewards_the_target_is_pass_at_k():
    """E[max of k 0/1 rewards] = 1 - (1 - P(correct))^k, and the estimate is the classic unbiased pass@k."""
    theta, rewards = problem(0, binary=True)
    q = torch.softmax(theta, -1)
    correct = (q * rewards).sum()
    for k in (1, 2, 5):
        assert bon_expected_utility(q, rewards, k).item() == pytest.approx(1 - (1 - correct.item()) ** k, abs=1e-14)
    r = torch.tensor([[1.0, 0, 0, 1, 0, 0, 0, 0], [0.0] * 8, [1.0] * 8], dtype=torch.float64)
    for k in (1, 2, 3, 7):
        c = r.sum(-1)  # correct samples of 8
        want = torch.tensor([1 - math.comb(8 - int(ci), k) / math.comb(8, k) for ci in c], dtype=torch.float64)
        assert torch.allclose(max_at_k_estimate(r, k), want, atol=1e-14)


# ------------------------------------------------------------------ bad input
def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"rewards must be \(groups, n\)"):
        max_at_k_estimate(torch.arange(5.0), 2)
    with pytest.raises(ValueError, match=r"rewards must be \(groups, n\)"):
        max_at_k_rewards(torch.arange(5.0), 2)
    with pytest.raises(ValueError, match="n >= k"):
        max_at_k_estimate(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="n >= k"):
        max_at_k_rewards(torch.zeros(2, 3), 4, baseline=False)
    with pytest.raises(ValueError, match=r"n >= k \+ 1"):
        max_at_k_rewards(torch.zeros(2, 3), 3)  # n = k: no other samples to build the baseline from
    assert max_at_k_rewards(torch.zeros(2, 3), 3, baseline=False).shape == (2, 3)
    bad = torch.zeros(2, 4)
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="rewards contains NaN"):
        max_at_k_estimate(bad, 2)
    with pytest.raises(ValueError, match="rewards contains NaN"):
        max_at_k_rewards(bad, 2)
    bad[1, 2] = math.inf
    with pytest.raises(ValueError, match="infinite"):
        max_at_k_rewards(bad, 2)
    with pytest.raises(ValueError, match="k must be"):
        max_at_k_rewards(torch.zeros(2, 4), 0)

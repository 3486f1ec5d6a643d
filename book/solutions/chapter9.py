"""Chapter 9: soft Best-of-n by listing n-tuples, what Best-of-n of q earns, PKPO's per-sample rewards."""
import itertools

import torch


def my_soft_bon_law(probs, rewards, n, temperature):
    """Sum over every ordered n-tuple: its probability times softmax(r / temperature) of its members."""
    out = torch.zeros_like(probs)
    for draws in itertools.product(range(len(probs)), repeat=n):
        idx = torch.tensor(draws)
        chance = probs[idx].prod()
        if chance > 0:
            out.index_add_(0, idx, chance * torch.softmax(rewards[idx] / temperature, 0))
    return out


def my_bon_expected_reward(q, rewards, n):
    """Summation by parts: r_(K) - sum_j (r_(j+1) - r_(j)) F_j^n, outcomes sorted by reward; no difference of powers."""
    r_s, order = rewards.sort()
    f = q[order].cumsum(0)[:-1].clamp(0.0, 1.0)  # F_j, j < K
    return r_s[-1] - ((r_s[1:] - r_s[:-1]) * f**n).sum()


def my_max_at_k_rewards(rewards, k):
    """s_i = mean over the k-subsets S that hold i of max_S r, times k/n; minus (k/n) x the max@k estimate of the others."""
    n = len(rewards)
    subsets = list(itertools.combinations(range(n), k))
    s = torch.zeros_like(rewards)
    for subset in subsets:
        s[list(subset)] += rewards[list(subset)].max() / len(subsets)
    others = [[j for j in range(n) if j != i] for i in range(n)]
    loo = torch.stack([torch.stack([rewards[list(c)].max() for c in itertools.combinations(o, k)]).mean() for o in others])
    return s - k / n * loo


SOLUTIONS = {"soft_bon_law": my_soft_bon_law, "bon_expected_reward": my_bon_expected_reward,
             "max_at_k_rewards": my_max_at_k_rewards}

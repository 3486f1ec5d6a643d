"""Chapter 1: the reward CDF, the BoN law with and without ties, and the BoN sampler."""
import torch


def my_reward_cdf(probs, rewards):
    """F_lt(y) = sum of pi over outcomes with a smaller reward, F_le with a smaller or equal one (K,)."""
    smaller = rewards[None, :] < rewards[:, None]  # (K, K): [y, y'] is r(y') < r(y)
    not_larger = rewards[None, :] <= rewards[:, None]
    return (smaller * probs).sum(-1), (not_larger * probs).sum(-1)


def my_bon_no_ties(probs, rewards, n):
    """(F_lt + pi)^n - F_lt^n, as a difference of logs so that large n neither underflows nor cancels."""
    f_lt, _ = my_reward_cdf(probs, rewards)
    f_le = f_lt + probs
    return f_le**n * -torch.expm1(n * (torch.log(f_lt) - torch.log(f_le)))


def my_bon(probs, rewards, n):
    """pi(y)/pi(G) * (F_le^n - F_lt^n): the chance that G is the top class, times the chance that y is the member drawn."""
    f_lt, f_le = my_reward_cdf(probs, rewards)
    class_mass = torch.stack([probs[rewards == r].sum() for r in rewards])
    return probs / class_mass * f_le**n * -torch.expm1(n * (torch.log(f_lt) - torch.log(f_le)))


def my_bon_sample(probs, rewards, n, num_samples, generator=None):
    """Draw n outcomes per run, keep one of the highest-reward draws uniformly at random."""
    draws = torch.multinomial(probs.expand(num_samples, -1), n, replacement=True, generator=generator)  # (S, n)
    r = rewards[draws]  # (S, n)
    is_best = r == r.max(-1, keepdim=True).values
    keys = torch.rand(r.shape, generator=generator, dtype=torch.float64).masked_fill(~is_best, -1.0)
    return draws.gather(-1, keys.argmax(-1, keepdim=True)).squeeze(-1)  # (S,)


SOLUTIONS = {"reward_cdf": my_reward_cdf, "bon_probs_no_ties": my_bon_no_ties, "bon_probs": my_bon,
             "bon_sample": my_bon_sample}

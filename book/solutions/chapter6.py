"""Chapter 6: BoNBoN's beta, the law of the best and the worst of n draws, the Jeffreys divergence."""
import torch


def my_bonbon_beta(n):
    """1 / (2 (n-1) H_(n-1)), with H_m = 1 + 1/2 + ... + 1/m."""
    return 1.0 / (2 * (n - 1) * sum(1.0 / j for j in range(1, n)))


def my_best_worst_probs(probs, rewards, n):
    """P(best = a, worst = b) by inclusion-exclusion over the draws that fall in [r(b), r(a)]."""
    f_le = (probs[None, :] * (rewards[None, :] <= rewards[:, None])).sum(-1)  # (K,) F_<=(a)
    pa, pb = probs[:, None], probs[None, :]  # (K, 1), (1, K)
    inside = (f_le[:, None] - f_le[None, :] + pb).clamp_min(0)  # (K, K) mass of [r(b), r(a)]
    joint = sum(sign * (inside - minus).clamp_min(0) ** n
                for sign, minus in [(1, 0), (-1, pb), (-1, pa), (1, pa + pb)])  # at least one a and one b
    return joint * (rewards[:, None] > rewards[None, :]) + torch.diag(probs**n)  # a = b: all n draws are a


def my_jeffreys(p, q, eta):
    """(1 - eta) KL(p || q) + eta KL(q || p), summed over the last axis; xlogy makes 0 log 0 = 0."""
    kl = lambda a, b: (torch.xlogy(a, a) - torch.xlogy(a, b)).sum(-1)  # noqa: E731
    return (1 - eta) * kl(p, q) + eta * kl(q, p)


SOLUTIONS = {"bonbon_beta": my_bonbon_beta, "best_worst_probs": my_best_worst_probs, "jeffreys": my_jeffreys}

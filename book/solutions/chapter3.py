"""Chapter 3: the exact log ratio log(pi_bon/pi), the vBoN objective and the mid-rank bound."""
import math

import torch

import minivbon as mv


def my_log_bon_ratio(log_cdf, log_ref, n):
    """log sum_{i=1..n} C(n, i) F^(n-i) pi^(i-1), every term in log space, then one logsumexp."""
    i = torch.arange(1, n + 1, dtype=torch.float64)  # (n,)
    log_binom = math.lgamma(n + 1) - torch.lgamma(i + 1) - torch.lgamma(n - i + 1)
    terms = log_binom + (n - i) * log_cdf[..., None] + (i - 1) * log_ref[..., None]  # (..., n)
    return torch.logsumexp(terms, -1)


def my_vbon_loss(q, probs, rewards, n):
    """KL(q || pi_bon) = sum_y q log(q / pi_bon), with 0 log 0 = 0."""
    return (torch.xlogy(q, q) - torch.xlogy(q, mv.bon_probs(probs, rewards, n))).sum(-1)


def my_mid_rank_bound(log_f_lt, log_mass, n):
    """log N + (N-1) log(F_lt + pi(G)/2), the sum taken in log space (logaddexp), so F ~ 1e-300 is fine."""
    return math.log(n) + (n - 1) * torch.logaddexp(log_f_lt, log_mass - math.log(2))


SOLUTIONS = {"log_bon_ratio": my_log_bon_ratio, "vbon_loss": my_vbon_loss, "mid_rank_bound": my_mid_rank_bound}

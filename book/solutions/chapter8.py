"""Chapter 8: the Bradley-Terry loss, the exact KL of Best-of-N on one paper, the over-optimisation fit."""
import torch
from torch.nn.functional import logsigmoid


def my_bradley_terry_loss(r_a, r_b, label):
    """Mean of -[y log sigmoid(d) + (1 - y) log sigmoid(-d)], d = r_a - r_b; logsigmoid stays finite for |d| = 800."""
    d = r_a - r_b
    return -(label * logsigmoid(d) + (1 - label) * logsigmoid(-d)).mean()


def my_bon_kl(probs, rewards, n):
    """KL(pi_bon || pi) = sum_y pi_bon(y) log(pi_bon(y)/pi(y)), with the tie-aware ratio
    pi_bon/pi = (F_le^n - F_lt^n) / pi(G) taken in log space: n log F_le + log(1 - (F_lt/F_le)^n) - log pi(G)."""
    f_lt = (probs[None, :] * (rewards[None, :] < rewards[:, None])).sum(-1)  # (K,)
    f_le = (probs[None, :] * (rewards[None, :] <= rewards[:, None])).sum(-1)
    log_ratio = n * f_le.log() + torch.log(-torch.expm1(n * (f_lt.log() - f_le.log()))) - (f_le - f_lt).log()
    log_ratio = torch.where(probs > 0, log_ratio, 0.0)  # outcomes of probability 0 add nothing (0 log 0 = 0)
    return (probs * log_ratio.exp() * log_ratio).sum()


def my_gao_fit(kl, gold):
    """Least squares of gold - gold[0] = alpha d - beta d^2, d = sqrt(KL) (a tiny negative KL from rounding is 0)."""
    d = kl.clamp_min(0).sqrt()
    x = torch.stack([d, -d * d], 1)  # (K, 2)
    alpha, beta = torch.linalg.solve(x.T @ x, x.T @ (gold - gold[0]))  # the normal equations
    return alpha, beta


SOLUTIONS = {"bradley_terry_loss": my_bradley_terry_loss, "bon_kl": my_bon_kl, "gao_fit": my_gao_fit}

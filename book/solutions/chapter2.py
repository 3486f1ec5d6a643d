"""Chapter 2: the win rate (exact and from samples) and the KL-RL optimum."""
import torch


def my_win_rate(policy_probs, ref_probs, rewards):
    """sum_y q(y) (F_lt(y) + F_le(y)) / 2: the policy's expected mid-rank under the reference."""
    smaller = (rewards[None, :] < rewards[:, None]).double()
    equal = (rewards[None, :] == rewards[:, None]).double()
    mid_rank = (smaller + equal / 2) @ ref_probs  # (K,)
    return (policy_probs * mid_rank).sum()


def my_kl_rl_policy(probs, rewards, beta):
    """q proportional to pi exp(r / beta), as a softmax of log pi + r / beta (no overflow for tiny beta)."""
    return torch.softmax(probs.log() + rewards / beta, -1)


def my_win_rate_from_samples(rewards, references):
    """Per prompt, the mean over samples of (#references below + #equal / 2) / M: (P, B), (P, M) -> (P,)."""
    below = (references[:, None, :] < rewards[:, :, None]).double().sum(-1)  # (P, B)
    equal = (references[:, None, :] == rewards[:, :, None]).double().sum(-1)
    return ((below + equal / 2) / references.shape[-1]).mean(-1)


SOLUTIONS = {"win_rate": my_win_rate, "kl_rl_policy": my_kl_rl_policy,
             "win_rate_from_samples": my_win_rate_from_samples}

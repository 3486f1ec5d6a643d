"""REINFORCE with a leave-one-out baseline (RLOO): the policy gradient every RL method of the loop uses.

For k samples y_1..y_k of one prompt, each with a sequence-level reward

    R(y) = task_reward(y) - kl_coef * k1(y),     k1(y) = log q(y) - log pi(y)  (generated tokens only),

the surrogate loss is -mean_j[(R_j - mean of the other k-1 rewards of its prompt) * log q(y_j)], whose
gradient is an unbiased estimate of -grad E_q[R] (Kool, van Hoof, Welling, 2019).
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from .checks import as_float, check_int, check_not_nan, check_positive
from .policy import Samples, sequence_log_probs


def rloo_advantages(rewards: Tensor, k: int) -> Tensor:
    """R_j minus the mean of the other k-1 rewards of the same prompt: (B,) -> (B,), B = prompts * k."""
    k = check_int(k, "k", minimum=2)
    r = check_not_nan(as_float(rewards, "rewards"), "rewards", finite=True)
    if r.dim() != 1 or r.numel() % k:
        raise ValueError(f"rewards must be (prompts * k,) with k = {k}, got shape {tuple(r.shape)}")
    r = r.view(-1, k)
    return (k / (k - 1) * (r - (r / k).sum(1, keepdim=True))).view(-1)  # = R_j - mean of the others, no overflow


def rl_loss(policy: nn.Module, reference: nn.Module, samples: Samples, task_reward: Tensor | Callable[[Tensor], Tensor],
            kl_coef: float, k: int, task_is_advantage: bool = False) -> tuple[Tensor, dict]:
    """RLOO surrogate loss of k samples per prompt (grouped contiguously) and its statistics.

    ``task_reward`` is the task reward (B,), or a function of log pi(y) (B,) returning it, for a reward that
    needs the reference's log-probability of the sample (vBoN's exact ratio); ``kl_coef`` is beta in
    R = task_reward - beta * k1. ``task_is_advantage=True`` takes the task reward as already baselined (its
    own unbiased baseline, as :func:`minivbon.pass_at_k.max_at_k_rewards` gives): only the KL term then gets the
    leave-one-out baseline (a leave-one-out mean of rewards that depend on the other samples would bias it). Returns (loss, {"task_reward", "kl_k1", "kl_k3"}), the statistics as batch means.
    """
    kl_coef = check_positive(kl_coef, "kl_coef")
    logp_seq, ref_seq, k3 = sequence_log_probs(policy, reference, samples)  # (B,) each
    k1 = logp_seq.detach() - ref_seq
    task = (task_reward(ref_seq) if callable(task_reward) else task_reward).to(k1)  # (B,)
    if task_is_advantage:
        adv = task - kl_coef * rloo_advantages(k1, k)
    else:
        adv = rloo_advantages(task - kl_coef * k1, k)
    loss = -(adv * logp_seq).mean()
    return loss, {"task_reward": task.mean().item(), "kl_k1": k1.mean().item(), "kl_k3": k3.mean().item()}

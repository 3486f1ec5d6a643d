"""Chapter 4: the smoothed CDF estimate, the leave-one-out advantage and the surrogate loss."""
import torch


def my_log_f_hat(rewards, references):
    """log((#below + #equal/2 + 1) / (M + 1)) for each sample against its own prompt's references."""
    below = (references[:, None, :] < rewards[:, :, None]).double().sum(-1)  # (P, B)
    equal = (references[:, None, :] == rewards[:, :, None]).double().sum(-1)
    return torch.log((below + equal / 2 + 1) / (references.shape[-1] + 1))


def my_rloo_advantages(rewards, k):
    """R_j minus the mean of the other k-1 rewards of its group: k/(k-1) (R_j - group mean)."""
    r = rewards.view(-1, k)
    return (k / (k - 1) * (r - r.mean(-1, keepdim=True))).view(-1)


def my_rloo_loss(logp, task_reward, k1, beta, k):
    """-(1/B) sum_j A_j log q(y_j) with A = leave-one-out advantage of R = task - beta * k1 (no gradient)."""
    advantages = my_rloo_advantages((task_reward - beta * k1).detach(), k)
    return -(advantages * logp).mean()


SOLUTIONS = {"log_f_hat": my_log_f_hat, "rloo_advantages": my_rloo_advantages, "rloo_loss": my_rloo_loss}

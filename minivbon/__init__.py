"""minivbon: Variational Best-of-N alignment (Amini, Vieira, Ash, Cotterell, ICLR 2025) in a few hundred lines."""
from .bon import (bon_kl_bound, bon_probs, bon_sample, expected_reward, kl_divergence, kl_rl_policy,
                  reward_cdf, win_rate)
from .objectives import EmpiricalCDF, kl_k1, kl_k3, log_bon_ratio, vbon_reward
from .train import Samples, TrainConfig, Trainer, best_of_n, reference_cdf, rl_loss, rloo_advantages, train

__all__ = [
    "reward_cdf", "bon_probs", "bon_sample", "kl_divergence", "bon_kl_bound", "win_rate",
    "kl_rl_policy", "expected_reward",
    "EmpiricalCDF", "log_bon_ratio", "vbon_reward", "kl_k1", "kl_k3",
    "Samples", "TrainConfig", "Trainer", "train", "best_of_n", "reference_cdf", "rl_loss", "rloo_advantages",
]

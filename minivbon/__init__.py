"""minivbon: Variational Best-of-N alignment (Amini, Vieira, Ash, Cotterell, ICLR 2025) in a small library.

Modules: ``bon`` (Best-of-N on categorical distributions), ``objectives`` (the vBoN rewards from samples),
``policy`` (the policy interface, Best-of-N sampling, the reference CDF), ``distance`` (KL(q || pi_bon) and
KL(pi_bon || q) estimated from samples), ``methods`` (every training method as one row of a table),
``config``, ``rloo`` and ``loop`` (the one training loop), ``distill`` and ``dpo`` (the losses that distil BoN
from its samples),
``soft_bon``, ``inference_aware`` and ``pass_at_k`` (aligning for the sampler used at inference: soft Best-of-n,
BoN-aware fine-tuning, calibrated rewards, max@k rewards), ``toy`` / ``lm`` / ``sentiment`` (policies and tasks), ``storage`` and ``provenance`` (state and results on
disk). No name re-exported here shadows a module.
"""
from .bon import (bon_kl_bound, bon_probs, bon_sample, expected_reward, kl_divergence, kl_rl_policy,
                  reward_cdf, win_rate)
from .loop import TrainConfig, Trainer, train
from .rloo import rl_loss, rloo_advantages
from .objectives import EmpiricalCDF, kl_k1, kl_k3, log_bon_ratio, vbon_reward
from .policy import Samples, best_of_n, reference_cdf, sequence_log_probs

__all__ = [
    "reward_cdf", "bon_probs", "bon_sample", "kl_divergence", "bon_kl_bound", "win_rate",
    "kl_rl_policy", "expected_reward",
    "EmpiricalCDF", "log_bon_ratio", "vbon_reward", "kl_k1", "kl_k3",
    "Samples", "best_of_n", "reference_cdf", "sequence_log_probs",
    "TrainConfig", "Trainer", "train", "rl_loss", "rloo_advantages",
]

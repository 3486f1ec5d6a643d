"""vBoN-L with Hugging Face TRL: a reward function for ``RLOOTrainer``, the reference CDFs it reads, and a
config that keeps beta = 1/(N-1). Needs the optional extra: ``pip install "minivbon[trl]"``.

Where TRL puts the KL. ``RLOOTrainer`` (trl 1.16, ``trl/trainer/rloo_trainer.py``) subtracts beta times a
per-sequence KL from each completion's reward *before* the leave-one-out baseline
(``rewards = rewards - self.beta * kl``, with ``kl`` the sum over completion tokens of log pi_old - log pi_ref,
the k1 estimate). With the reward log F_mid(r(y)) and beta = 1/(N-1) it therefore follows the gradient of
vBoN-L's objective, E_q[log F] - KL(q || pi)/(N-1): the objective of minivbon's own loop with
``method="vbon-l"``. ``GRPOTrainer`` instead adds a per-token KL to the *loss* and, by default, divides
rewards by their group's standard deviation; neither keeps that objective, so :func:`check_vbon_config`
refuses GRPO configs.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch import Tensor

from .checks import check_int, check_positive
from .lm import LMPolicy
from .objectives import EmpiricalCDF
from .policy import reference_cdf


class VBoNLReward:
    """TRL reward function: log F_mid(r(prompt + completion)) for each completion, looked up per prompt.

    TRL calls it as ``f(prompts=[...], completions=[...], completion_ids=[...], **columns)``: one entry per
    completion, and every other dataset column as a list of the same length. ``key`` names the column that
    holds each prompt's id in ``cdf`` (the prompt text is no safe key: TRL re-tokenises it). ``reward`` maps
    texts to rewards (B,); F_mid counts reference rewards tied with r(y) as half (the tie-aware vBoN-L of
    :func:`minivbon.vbon_reward`).
    """

    def __init__(self, cdf: EmpiricalCDF, reward: Callable[[list[str]], Tensor], key: str = "prompt_id"):
        if not isinstance(cdf, EmpiricalCDF):
            raise TypeError(f"cdf must be an EmpiricalCDF, got {type(cdf).__name__}")
        if not callable(reward):
            raise TypeError(f"reward must map a list of texts to rewards, got {type(reward).__name__}")
        self.cdf, self.reward, self.key = cdf, reward, key
        self.__name__ = "vbon_l"  # TRL logs each reward function under its __name__

    def __call__(self, prompts: list, completions: list, **columns) -> list[float]:
        if self.key not in columns:
            raise KeyError(f"VBoNLReward needs the dataset column {self.key!r} (each prompt's id in the CDF); TRL "
                           f"passed the columns {sorted(k for k in columns if not k.startswith('log_'))}")
        if not all(isinstance(p, str) and isinstance(c, str) for p, c in zip(prompts, completions)):
            raise TypeError("VBoNLReward scores plain-text prompts and completions, not conversational messages")
        raw = torch.as_tensor(self.reward([p + c for p, c in zip(prompts, completions)]), dtype=torch.float64)
        if raw.shape != (len(prompts),):
            raise ValueError(f"reward returned shape {tuple(raw.shape)} for {len(prompts)} texts")
        return self.cdf.log_cdf(list(columns[self.key]), raw, ties="mid").tolist()


@torch.no_grad()
def build_reference_cdf(model, tokenizer, prompts: dict, reward: Callable[[list[str]], Tensor], m: int,
                        max_new_tokens: int, temperature: float = 1.0, seed: int = 0,
                        batch_size: int = 256) -> EmpiricalCDF:
    """M reference samples per prompt, scored, as an EmpiricalCDF keyed by the ids of ``prompts`` (id -> text).

    Sampling is batched and uses TRL's default sampler (temperature, top_k = 0, top_p = 1) with the same
    ``max_new_tokens`` as the training's ``max_completion_length``: the CDF must describe the rewards of the
    distribution the KL term is measured against. Build it once, before training, and save it
    (:func:`minivbon.storage.save_atomic`) so that every process of a multi-GPU run loads the same one.
    """
    m = check_int(m, "m")
    check_positive(temperature, "temperature")
    policy = LMPolicy(model, tokenizer, prompts, max_new_tokens, temperature)
    return reference_cdf(policy, list(prompts), lambda s: reward(s.extra["texts"]), m,
                         torch.Generator().manual_seed(seed), batch_size)


def check_vbon_config(config, n: int) -> None:
    """Raise ValueError for TRL settings under which training is not vBoN-L at this N; warn for harmless ones."""
    n = check_int(n, "n", minimum=2)
    name = type(config).__name__
    if name.startswith("GRPO") or hasattr(config, "scale_rewards"):
        raise ValueError(f"{name}: GRPO adds its KL to the loss, per token, and scales rewards per group; vBoN-L "
                         "needs the KL inside the reward, as RLOOTrainer does. Use vbon_rloo_config(n, ...)")
    beta = getattr(config, "beta", None)
    if beta is None or not math.isclose(beta, 1 / (n - 1), rel_tol=1e-9):
        raise ValueError(f"beta must be 1/(N-1) = {1 / (n - 1):.6g} for N = {n}, got {beta!r}: any other beta "
                         "(0 included) trains towards another distribution than Best-of-N")
    if getattr(config, "sync_ref_model", False):
        raise ValueError("sync_ref_model=True moves the reference during training, but the reward CDF and the KL "
                         "term must both describe the fixed reference")
    if getattr(config, "reward_clip_range", None) is not None:
        raise ValueError("reward_clip_range clips log F, which changes the objective; leave it None")
    if getattr(config, "reward_weights", None) not in (None, [1.0], (1.0,)):
        raise ValueError(f"reward_weights {config.reward_weights} rescales the vBoN-L reward against the KL term "
                         "(the N-beta link); use one reward function with weight 1")
    if check_int(getattr(config, "num_generations", 2) or 2, "num_generations") < 2:
        raise ValueError("num_generations must be at least 2: the leave-one-out baseline needs another sample")
    if getattr(config, "normalize_advantages", False):
        warnings.warn("normalize_advantages=True divides every step's advantages by their standard deviation: "
                      "the fixed point is unchanged, but the step size now varies from step to step",
                      stacklevel=2)


def vbon_rloo_config(n: int, **kwargs):
    """A ``trl.RLOOConfig`` for vBoN-L targeting Best-of-N: beta = 1/(N-1), checked by :func:`check_vbon_config`.

    Defaults that differ from TRL's, to match minivbon's loop: dropout off (sampling and scoring see the same
    distribution), a constant learning rate, no report_to integrations, and without CUDA float32 on the CPU
    (TRL's default bf16 needs a GPU). Every other keyword goes to RLOOConfig and overrides these.
    """
    from trl import RLOOConfig

    n = check_int(n, "n", minimum=2)
    if "beta" in kwargs and not math.isclose(kwargs["beta"], 1 / (n - 1), rel_tol=1e-9):
        raise ValueError(f"beta is set by N: 1/(N-1) = {1 / (n - 1):.6g} for N = {n}; got beta={kwargs['beta']!r}")
    cpu = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False}  # TRL defaults to bf16 (GPU only)
    settings = {"disable_dropout": True, "lr_scheduler_type": "constant", "report_to": "none", **cpu, **kwargs,
                "beta": 1 / (n - 1)}
    config = RLOOConfig(**settings)
    check_vbon_config(config, n)
    return config

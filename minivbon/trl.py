"""vBoN-L with Hugging Face TRL: a reward function for ``RLOOTrainer``, the reference CDFs it reads, and a
config that keeps beta = 1/(N-1); also InfAlign's calibrated rewards and PKPO's max@k rewards. Needs the optional extra: ``pip install "minivbon[trl]"``.

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

import dataclasses
import math
import warnings
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import TrainerCallback

from .checks import check_int, check_positive, check_reward_batch
from .lm import LMPolicy
from .objectives import EmpiricalCDF
from .trl_rewards import CalibratedReward, MaxAtKReward, VBoNLReward, reward_tensor  # noqa: F401  re-exported
from .policy import reference_cdf


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
    max_new_tokens, batch_size = check_int(max_new_tokens, "max_new_tokens"), check_int(batch_size, "batch_size")
    seed = check_int(seed, "seed", minimum=0)
    if not isinstance(prompts, dict) or not prompts:
        raise TypeError(f"prompts must be a non-empty dict of prompt id -> text, got {type(prompts).__name__}"
                        + (" (empty)" if isinstance(prompts, dict) else ""))
    if not callable(reward):
        raise TypeError(f"reward must map a list of texts to rewards, got {type(reward).__name__}")
    if model is None or tokenizer is None:
        raise TypeError("model and tokenizer must be a transformers causal LM and its tokenizer, got None")
    policy = LMPolicy(model, tokenizer, prompts, max_new_tokens, temperature)
    return reference_cdf(policy, list(prompts), lambda s: reward(s.extra["texts"]), m,
                         torch.Generator().manual_seed(seed), batch_size)


class StepProgress(TrainerCallback):
    """One progress bar over a Trainer's optimiser steps, and nothing else printed.

    Pass ``disable_tqdm=True`` in the config and ``callbacks=[StepProgress()]`` to the trainer, then remove
    ``transformers.PrinterCallback``: transformers' own progress callbacks print every log
    (``ProgressCallback``) or a growing table of them in a notebook, a line per step at ``logging_steps=1``.
    """

    def __init__(self, desc: str = "TRL steps"):
        self.desc, self.bar, self.steps = desc, None, 0  # steps: where the bar ended

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.desc, disable=not state.is_world_process_zero)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.steps = self.bar.n
            self.bar.close()
            self.bar = None


# settings of TRL's sampler that change the distribution the completions are drawn from: vBoN-L's KL and the
# reference CDFs are both measured against the reference *at temperature T with no truncation*
SAMPLER_DEFAULTS = {"top_k": (0, None), "top_p": (1.0,), "min_p": (None, 0.0), "repetition_penalty": (1.0,)}


def check_vbon_config(config, n: int, temperature: float = 1.0) -> None:
    """Raise ValueError for TRL settings under which training is not vBoN-L at this N; warn for harmless ones.

    Refused: a GRPO config; beta other than 1/(N-1); a moving reference (sync_ref_model); clipped or re-weighted
    rewards; fewer than 2 generations per prompt; top-k, top-p, min-p or a repetition penalty (the samples would
    no longer come from the policy whose KL is measured), extra ``generation_kwargs``; a sampling temperature
    other than ``temperature``, the one the reference CDFs were drawn at (build_reference_cdf's); more than one
    optimisation pass per batch (num_iterations > 1: clipped, off-policy updates); mask_truncated_completions
    (drops the completions that run out of tokens: the expectation is then over another distribution).
    Warned: normalize_advantages (same fixed point, another step size).
    """
    n = check_int(n, "n", minimum=2)
    temperature = check_positive(temperature, "temperature")
    name = type(config).__name__
    if name.startswith("GRPO") or hasattr(config, "scale_rewards"):
        raise ValueError(f"{name}: GRPO adds its KL to the loss, per token, and scales rewards per group; vBoN-L "
                         "needs the KL inside the reward, as RLOOTrainer does. Use vbon_rloo_config(n, ...)")
    if not hasattr(config, "beta"):
        raise TypeError(f"config must be a trl.RLOOConfig (with a beta), got {name}")
    beta = config.beta
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isclose(beta, 1 / (n - 1), rel_tol=1e-9):
        raise ValueError(f"beta must be 1/(N-1) = {1 / (n - 1):.6g} for N = {n}, got {beta!r}: any other beta "
                         "(0 included) trains towards another distribution than Best-of-N")
    for setting, allowed in SAMPLER_DEFAULTS.items():
        if getattr(config, setting, allowed[0]) not in allowed:
            raise ValueError(f"{setting}={getattr(config, setting)!r} truncates or reshapes TRL's sampler: the samples "
                             f"no longer come from the policy whose KL to the reference is measured, and their "
                             f"rewards are not comparable with the reference CDFs; leave it at {allowed[0]!r}")
    if getattr(config, "generation_kwargs", None):
        raise ValueError(f"generation_kwargs {config.generation_kwargs} change TRL's sampler; leave them empty")
    sampling = getattr(config, "temperature", temperature)
    if not isinstance(sampling, (int, float)) or not math.isclose(sampling, temperature, rel_tol=1e-9):
        raise ValueError(f"temperature={sampling!r}, but the reference CDFs were drawn at temperature {temperature} "
                         "(pass check_vbon_config(..., temperature=T) / vbon_rloo_config(..., cdf_temperature=T) if "
                         "they were drawn at T): log F would compare rewards of two different samplers")
    if check_int(getattr(config, "num_iterations", 1), "num_iterations") != 1:
        raise ValueError(f"num_iterations={config.num_iterations}: more than one optimisation pass per batch makes "
                         "later passes off-policy and clipped, which is not vBoN-L's gradient; use 1")
    if getattr(config, "mask_truncated_completions", False):
        raise ValueError("mask_truncated_completions=True drops completions that reach max_completion_length from "
                         "the loss: the expectation is no longer over the policy's samples; leave it False")
    if getattr(config, "sync_ref_model", False):
        raise ValueError("sync_ref_model=True moves the reference during training, but the reward CDF and the KL "
                         "term must both describe the fixed reference")
    if getattr(config, "reward_clip_range", None) is not None:
        raise ValueError("reward_clip_range clips log F, which changes the objective; leave it None")
    if getattr(config, "reward_weights", None) not in (None, [1.0], (1.0,)):
        raise ValueError(f"reward_weights {config.reward_weights} rescales the vBoN-L reward against the KL term "
                         "(the N-beta link); use one reward function with weight 1")
    generations = getattr(config, "num_generations", 2)
    if check_int(generations, "num_generations", minimum=0) < 2:
        raise ValueError(f"num_generations must be at least 2, got {generations}: the leave-one-out baseline needs "
                         "another sample")
    if getattr(config, "normalize_advantages", False):
        warnings.warn("normalize_advantages=True divides every step's advantages by their standard deviation: "
                      "the fixed point is unchanged, but the step size now varies from step to step",
                      stacklevel=2)


def vbon_rloo_config(n: int, cdf_temperature: float = 1.0, **kwargs):
    """A ``trl.RLOOConfig`` for vBoN-L targeting Best-of-N: beta = 1/(N-1), checked by :func:`check_vbon_config`.

    Defaults that differ from TRL's, to match minivbon's loop: dropout off (sampling and scoring see the same
    distribution), a constant learning rate, no report_to integrations, and without CUDA float32 on the CPU
    (TRL's default bf16 needs a GPU). Every other keyword goes to RLOOConfig and overrides these.
    ``cdf_temperature``: the temperature the reference CDFs were drawn at; TRL must sample at it too.
    """
    from trl import RLOOConfig

    n = check_int(n, "n", minimum=2)
    cdf_temperature = check_positive(cdf_temperature, "cdf_temperature")
    if "num_generations" in kwargs and check_int(kwargs["num_generations"], "num_generations", minimum=0) < 2:
        raise ValueError(f"num_generations must be at least 2, got {kwargs['num_generations']}: the leave-one-out "
                         "baseline needs another sample")
    if "beta" in kwargs and (isinstance(kwargs["beta"], bool) or not isinstance(kwargs["beta"], (int, float))):
        raise TypeError(f"beta must be a number (and is set by N anyway), got {kwargs['beta']!r}")
    if "beta" in kwargs and not math.isclose(kwargs["beta"], 1 / (n - 1), rel_tol=1e-9):
        raise ValueError(f"beta is set by N: 1/(N-1) = {1 / (n - 1):.6g} for N = {n}; got beta={kwargs['beta']!r}")
    cpu = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False}  # TRL defaults to bf16 (GPU only)
    settings = {"disable_dropout": True, "lr_scheduler_type": "constant", "report_to": "none",
                "temperature": cdf_temperature, **cpu, **kwargs, "beta": 1 / (n - 1)}
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(RLOOConfig)})
    if unknown:
        raise TypeError(f"vbon_rloo_config got settings that RLOOConfig does not have: {unknown}")
    config = RLOOConfig(**settings)
    check_vbon_config(config, n, cdf_temperature)
    return config

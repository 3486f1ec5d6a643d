"""TRL reward functions: a callable per method, called by TRL's trainers with one entry per completion.

``VBoNLReward`` (vBoN-L's log F_mid), ``CalibratedReward`` (InfAlign's Phi(F_mid)) and ``MaxAtKReward`` (PKPO's
max@k per-sample rewards). They import nothing from TRL: :mod:`minivbon.trl` re-exports them beside the
trainer configs, and they can be tested without the extra.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .checks import check_int, check_reward_batch
from .inference_aware import transform_of
from .objectives import EmpiricalCDF
from .pass_at_k import max_at_k_rewards


def completion_batch(prompts, completions, columns: dict, key: str, who: str) -> list:
    """Check one TRL reward call (plain-text prompts and completions, one ``key`` entry each); return that column."""
    if key not in columns:
        raise KeyError(f"{who} needs the dataset column {key!r} (each prompt's id); TRL passed the columns "
                       f"{sorted(k for k in columns if not k.startswith('log_'))}")
    ids = columns[key]
    for value, name in ((prompts, "prompts"), (completions, "completions"), (ids, key)):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list with one entry per completion, got {type(value).__name__}"
                            + (" (a str would be scored character by character)" if isinstance(value, str) else ""))
    if not len(prompts) == len(completions) == len(ids) or not prompts:
        raise ValueError(f"prompts, completions and {key} must have one entry per completion (and at least "
                         f"one); got {len(prompts)}, {len(completions)} and {len(ids)}")
    if not all(isinstance(p, str) and isinstance(c, str) for p, c in zip(prompts, completions)):
        raise TypeError(f"{who} scores plain-text prompts and completions, not conversational messages")
    return list(ids)


class TextReward:
    """What every TRL reward function here shares: ``reward`` maps texts to rewards (B,), ``key`` names the
    dataset column with each prompt's id (the prompt text is no safe key: TRL re-tokenises it). TRL calls a
    reward function as ``f(prompts=[...], completions=[...], completion_ids=[...], **columns)``: one entry per
    completion, and every other dataset column as a list of the same length."""

    def __init__(self, reward: Callable[[list[str]], Tensor], key: str = "prompt_id"):
        if not callable(reward):
            raise TypeError(f"reward must map a list of texts to rewards, got {type(reward).__name__}")
        if not isinstance(key, str) or not key:
            raise TypeError(f"key must name a dataset column (a non-empty str), got {key!r}")
        self.reward, self.key = reward, key

    def scored(self, prompts, completions, columns: dict) -> tuple[list, Tensor]:
        """The checked call's prompt ids and the raw rewards of prompt + completion, float64 (B,)."""
        ids = completion_batch(prompts, completions, columns, self.key, type(self).__name__)
        return ids, reward_tensor(self.reward([p + c for p, c in zip(prompts, completions)]), len(prompts))


class CalibratedReward(TextReward):
    """TRL reward function: Phi(F_mid(r(prompt + completion))) per completion, F_mid looked up per prompt.

    The calibrated rewards of InfAlign (:mod:`minivbon.inference_aware`): ``transform`` is a name in
    ``TRANSFORMS`` ("log" is vBoN-L's reward) or a function of F_mid; F_mid counts reference rewards tied
    with r(y) as half.
    """

    def __init__(self, cdf: EmpiricalCDF, reward: Callable[[list[str]], Tensor], transform="identity",
                 key: str = "prompt_id"):
        if not isinstance(cdf, EmpiricalCDF):
            raise TypeError(f"cdf must be an EmpiricalCDF, got {type(cdf).__name__}")
        super().__init__(reward, key)
        self.cdf, self.phi = cdf, transform_of(transform)  # an unknown transform is refused now, not in training
        self.__name__ = "calibrated"  # TRL logs each reward function under its __name__

    def __call__(self, prompts: list, completions: list, **columns) -> list[float]:
        ids, raw = self.scored(prompts, completions, columns)
        return self.calibrated(ids, raw).tolist()

    def calibrated(self, ids: list, raw: Tensor) -> Tensor:
        return self.phi(self.cdf.log_cdf(ids, raw, ties="mid").exp())


class VBoNLReward(CalibratedReward):
    """TRL reward function: log F_mid(r(prompt + completion)), the tie-aware vBoN-L reward of
    :func:`minivbon.vbon_reward` (a :class:`CalibratedReward` with Phi = log)."""

    def __init__(self, cdf: EmpiricalCDF, reward: Callable[[list[str]], Tensor], key: str = "prompt_id"):
        super().__init__(cdf, reward, "log", key)
        self.__name__ = "vbon_l"

    def calibrated(self, ids: list, raw: Tensor) -> Tensor:
        return self.cdf.log_cdf(ids, raw, ties="mid")  # log F_mid directly: no exp-then-log rounding


class MaxAtKReward(TextReward):
    """TRL reward function for Best-of-k at inference: PKPO's per-sample max@k rewards (pass@k for 0/1 rewards).

    TRL's trainers put the ``num_generations`` completions of one prompt consecutively in a batch; each such
    group of ``group`` completions gets n * (s_i - b_i) from :func:`minivbon.pass_at_k.max_at_k_rewards`, whose
    mean of rewards times grad log q estimates grad E[max of k rewards] without bias. They sum to 0 per group,
    so ``RLOOTrainer``'s leave-one-out baseline only scales them by n/(n-1). The prompt-id column ``key`` must
    be constant within each group.
    """

    def __init__(self, reward: Callable[[list[str]], Tensor], k: int, group: int, key: str = "prompt_id"):
        super().__init__(reward, key)
        self.k = check_int(k, "k")
        self.group = check_int(group, "group", minimum=self.k + 1)
        self.__name__ = f"max_at_{self.k}"

    def __call__(self, prompts: list, completions: list, **columns) -> list[float]:
        ids, raw = self.scored(prompts, completions, columns)
        if len(ids) % self.group or any(len(set(map(str, ids[i:i + self.group]))) > 1
                                        for i in range(0, len(ids), self.group)):
            raise ValueError(f"MaxAtKReward needs each prompt's {self.group} completions consecutively (group = "
                             f"num_generations); got {len(ids)} completions with {self.key} {ids[:2 * self.group]}")
        return (self.group * max_at_k_rewards(raw.view(-1, self.group), self.k)).view(-1).tolist()


def reward_tensor(values, count: int) -> Tensor:
    """A reward function's output for ``count`` texts as float64 (count,), refused exactly as minivbon's loop
    refuses it (:func:`minivbon.checks.check_reward_batch`); a list of real numbers is accepted as a tensor."""
    if isinstance(values, (list, tuple)):
        wrong = [v for v in values if isinstance(v, (bool, complex)) or not isinstance(v, (int, float, Tensor))]
        if wrong:
            raise TypeError(f"the reward function must return real numbers, got {type(wrong[0]).__name__} "
                            f"{wrong[0]!r:.40}")
        values = torch.as_tensor(values, dtype=torch.float64)
    return check_reward_batch(values, count, "the TRL reward function").double()

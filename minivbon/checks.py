"""Input checks shared by every public function.

Each check returns a clean tensor or raises ``ValueError`` (a bad value) or ``TypeError`` (a value of
the wrong kind) naming the argument and what is wrong with it, so bad input never turns into a silent
NaN. Every tensor the checks return is float64: the maths runs in float64 whatever the input's dtype
(float32 and bfloat16 lose rare outcomes, merge distinct rewards into ties and overflow in exp).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

PROB_TOL = 1e-6  # how far a probability vector may sum from 1


def as_float(x, name: str) -> Tensor:
    """``x`` as a float64 tensor (on its device); array-likes of numbers are converted."""
    if isinstance(x, Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        t = x.to(torch.float64)
    else:
        try:
            t = torch.as_tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name} must be a tensor or array-like of numbers ({e})") from None
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if t.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (the outcomes), got a scalar")
    return t


def check_not_nan(t: Tensor, name: str, finite: bool = False) -> Tensor:
    """``t`` unchanged, or a ValueError if it holds NaN (or, with ``finite``, an infinity)."""
    if finite and bool(torch.isfinite(t).all()):  # one pass when all is well; the message is found after
        return t
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    if finite and torch.isinf(t).any():
        raise ValueError(f"{name} contains an infinite value")
    return t


def check_probs(x, name: str = "probs") -> Tensor:
    """A probability vector (or a batch of them) over the last dimension.

    Two reductions when all is well: the sums (NaN or an infinity makes a sum non-finite, and only then is
    the vector searched for which) and the minimum."""
    p = as_float(x, name)
    total = p.sum(-1)
    if not bool(torch.isfinite(total).all()):
        check_not_nan(p, name, finite=True)
    if p.min() < 0:
        raise ValueError(f"{name} has a negative probability (min {p.min().item():.3g})")
    err = (total - 1).abs().max().item()
    if err > PROB_TOL:
        raise ValueError(f"{name} must sum to 1 over its last dimension (off by {err:.3g})")
    return p


def check_rewards(x, like: Tensor, name: str = "rewards") -> Tensor:
    """Finite rewards for the outcomes of ``like``, broadcast to its shape (float64)."""
    return broadcast_to(check_not_nan(as_float(x, name), name, finite=True), like.shape, name)


def check_sorted_finite(sorted_rows: Tensor, name: str = "rewards") -> None:
    """Rewards sorted along the last dimension are all finite iff each row's ends are: sort puts -inf first,
    and +inf and NaN last. O(rows), for functions that sort anyway (:func:`minivbon.bon_probs`)."""
    ends = torch.stack([sorted_rows[..., 0], sorted_rows[..., -1]])
    if not bool(torch.isfinite(ends).all()):
        raise ValueError(f"{name} contains NaN" if torch.isnan(ends).any() else f"{name} contains an infinite value")


def broadcast_to(t: Tensor, shape: torch.Size, name: str) -> Tensor:
    try:
        return t if t.shape == shape else t.expand(shape)
    except RuntimeError:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, which does not match {tuple(shape)}") from None


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}")


def check_int(n, name: str = "n", minimum: int = 1, maximum: int | None = None, why: str = "") -> int:
    """An int in [minimum, maximum]. A whole float such as 4.0 is converted to 4; a fraction, a bool or a
    non-number is a TypeError. ``why`` explains the maximum in the message."""
    if isinstance(n, Tensor) and n.numel() == 1 and not n.is_floating_point() and n.dtype != torch.bool:
        n = n.item()
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, float)) or (isinstance(n, float) and not n.is_integer()):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n!r}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name} must be <= {maximum}{why}, got {n!r}")
    return int(n)


def check_positive(x, name: str) -> float:
    """A finite number > 0 (used for beta and temperatures)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)


def check_weight(x, name: str, low_open: bool = False) -> float:
    """A number in [0, 1] ((0, 1] with ``low_open``): a mixing weight such as alpha, eta or an EMA rate."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not (0 < x <= 1 if low_open else 0 <= x <= 1):
        raise ValueError(f"{name} must be a number in {'(0' if low_open else '[0'}, 1], got {x!r}")
    return float(x)


def check_reward_batch(rewards, batch: int, where: str) -> Tensor:
    """A reward function's output for ``batch`` samples: a finite tensor of shape (batch,)."""
    if not isinstance(rewards, Tensor) or rewards.is_complex() or rewards.dtype == torch.bool:
        kind = type(rewards).__name__ if not isinstance(rewards, Tensor) else f"a {rewards.dtype} tensor"
        raise TypeError(f"the reward function must return a real tensor, got {kind} ({where})")
    if rewards.shape != (batch,):
        raise ValueError(f"the reward function returned shape {tuple(rewards.shape)} for {batch} samples ({where})")
    bad = (~torch.isfinite(rewards)).sum().item()
    if bad:
        raise ValueError(f"the reward function returned {bad} non-finite (NaN or infinite) rewards out of {batch} "
                         f"({where})")
    return rewards

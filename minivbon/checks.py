"""Input checks shared by every public function.

Each check returns a clean tensor or raises ``ValueError`` naming the argument
and what is wrong with it, so bad input never turns into a silent NaN.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

PROB_TOL = 1e-6  # how far a probability vector may sum from 1


def as_float(x, name: str) -> Tensor:
    """``x`` as a floating tensor: float tensors keep their dtype, anything else becomes float64."""
    if isinstance(x, Tensor):
        t = x if x.is_floating_point() else x.to(torch.float64)
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
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    if finite and torch.isinf(t).any():
        raise ValueError(f"{name} contains an infinite value")
    return t


def check_probs(x, name: str = "probs") -> Tensor:
    """A probability vector (or a batch of them) over the last dimension."""
    p = check_not_nan(as_float(x, name), name, finite=True)
    if (p < 0).any():
        raise ValueError(f"{name} has a negative probability (min {p.min().item():.3g})")
    err = (p.sum(-1) - 1).abs().max().item()
    if err > PROB_TOL:
        raise ValueError(f"{name} must sum to 1 over its last dimension (off by {err:.3g})")
    return p


def check_rewards(x, like: Tensor, name: str = "rewards") -> Tensor:
    """Rewards for the outcomes of ``like``; broadcast to its shape, in its dtype."""
    r = check_not_nan(as_float(x, name), name, finite=True).to(like.dtype)
    return broadcast_to(r, like.shape, name)


def broadcast_to(t: Tensor, shape: torch.Size, name: str) -> Tensor:
    try:
        return t if t.shape == shape else t.expand(shape)
    except RuntimeError:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, which does not match {tuple(shape)}") from None


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}")


def check_int(n, name: str = "n", minimum: int = 1) -> int:
    """An integer >= ``minimum`` (an integral float such as 4.0 is accepted)."""
    if isinstance(n, Tensor) and n.numel() == 1:
        n = n.item()
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, float)) or (isinstance(n, float) and not n.is_integer()):
        raise ValueError(f"{name} must be an integer, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n!r}")
    return int(n)


def check_positive(x, name: str) -> float:
    """A finite number > 0 (used for beta and temperatures)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)

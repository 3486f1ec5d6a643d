"""The vBoN objective for sequences, where pi_bon can only be reached through samples.

For a prompt x and an output y with reward r(y), the reference CDF
F(y) = P_{y'~pi}[r(y') < r(y)] is estimated from M reference samples, and

    KL(q || pi_bon) = KL(q || pi) - E_q[log pi_bon(y)/pi(y)].

Dividing by n-1 turns minimising it into KL-regularised RL with beta = 1/(n-1)
and a per-sample reward from :func:`vbon_reward` (Amini et al., ICLR 2025, arXiv:2407.06057; chapter 3 of the book derives it).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import math

import torch
from torch import Tensor

from .checks import as_float, broadcast_to, check_int, check_not_nan, check_same_shape


class EmpiricalCDF:
    """Per-prompt reward CDF estimated from M reference samples per prompt.

    ``references`` is a mapping ``{prompt_id: rewards}`` (M may differ between
    prompts) or a (P, M) tensor whose rows are prompts 0..P-1. Stored as one
    (P, M_max) sorted tensor padded with +inf, so lookups are one searchsorted.
    """

    def __init__(self, references: Mapping[Hashable, Sequence[float] | Tensor] | Tensor):
        if isinstance(references, Mapping):
            ids = list(references)
            rows = [torch.as_tensor(references[i], dtype=torch.float64).flatten() for i in ids]
        else:
            t = as_float(references, "references").to(torch.float64)
            if t.dim() != 2:
                raise ValueError(f"references must be a (P, M) tensor, got shape {tuple(t.shape)}")
            ids, rows = list(range(t.shape[0])), list(t)
        if not ids:
            raise ValueError("references holds no prompts")
        for i, row in zip(ids, rows):
            if row.numel() == 0:
                raise ValueError(f"references for prompt {i!r} are empty")
            if torch.isnan(row).any():
                raise ValueError(f"references for prompt {i!r} contain NaN")
        self.index = {i: k for k, i in enumerate(ids)}  # prompt id -> row
        self.counts = torch.tensor([row.numel() for row in rows])  # (P,) M per prompt
        table = torch.full((len(rows), int(self.counts.max())), torch.inf, dtype=torch.float64)
        for k, row in enumerate(rows):
            table[k, : row.numel()] = row.sort().values
        self.sorted = table  # (P, M_max)

    def __len__(self) -> int:
        return len(self.index)

    def _rows(self, prompt_ids) -> Tensor:
        ids = prompt_ids.tolist() if isinstance(prompt_ids, Tensor) else list(prompt_ids)
        missing = [i for i in ids if i not in self.index]
        if missing:
            raise ValueError(f"prompt id {missing[0]!r} has no reference rewards ({len(missing)} unknown ids)")
        return torch.tensor([self.index[i] for i in ids], dtype=torch.long)

    def _ranks(self, prompt_ids, rewards) -> tuple[Tensor, Tensor, Tensor]:
        """#{refs < r}, #{refs <= r} and M, each shaped like rewards (B, ...)."""
        rows = self._rows(prompt_ids)
        r = check_not_nan(as_float(rewards, "rewards").to(torch.float64), "rewards")
        if r.shape[0] != rows.numel():
            raise ValueError(f"rewards has {r.shape[0]} rows but there are {rows.numel()} prompt ids")
        flat = r.reshape(r.shape[0], -1).contiguous()  # (B, k)
        table = self.sorted[rows]  # (B, M_max)
        below = torch.searchsorted(table, flat, right=False).view(r.shape)
        at_most = torch.searchsorted(table, flat, right=True).view(r.shape)
        m = self.counts[rows].view(-1, *[1] * (r.dim() - 1)).expand(r.shape)
        return below, at_most.minimum(m), m  # +inf padding never counts as a reference

    def tie_counts(self, prompt_ids, rewards) -> tuple[Tensor, Tensor, Tensor]:
        """#{j: r_j < r}, #{j: r_j = r} and M for each sample, each shaped like rewards (B, ...)."""
        below, at_most, m = self._ranks(prompt_ids, rewards)
        return below, at_most - below, m

    def log_cdf(self, prompt_ids, rewards, ties: str = "below") -> Tensor:
        """log of a smoothed reward CDF at r, shaped like rewards (B, ...).

        ``ties="below"`` (the paper's code): F_hat = (#{r_j < r} + 1) / (M + 1); a tie counts as a loss.
        ``ties="mid"``: the mid-rank F_mid = (#{r_j < r} + #{r_j = r}/2 + 1) / (M + 1), an estimate of
        F_lt + pi(G)/2. The two agree when no reference ties with r. ``prompt_ids`` has one id per row
        of ``rewards``. The +1 keeps the log finite: it never goes below -log(M + 1).
        """
        if ties not in ("below", "mid"):
            raise ValueError(f"ties must be 'below' or 'mid', got {ties!r}")
        below, equal, m = self.tie_counts(prompt_ids, rewards)
        count = below.double() + 1 + (equal.double() / 2 if ties == "mid" else 0)
        return torch.log(count / (m + 1))

    def log_tie_mass(self, prompt_ids, rewards) -> Tensor:
        """log pi_hat(G) = log(#{r_j = r} / (M + 1)), the reference mass of r's tie class; -inf where no
        reference ties with r (the class is then y alone, of mass pi(y), which only the model knows)."""
        _, equal, m = self.tie_counts(prompt_ids, rewards)
        return torch.log(equal.double() / (m + 1))

    def win_rate(self, prompt_ids, rewards) -> Tensor:
        """Per sample, the fraction of references it beats, ties counted half: (#< + #=/2) / M."""
        below, at_most, m = self._ranks(prompt_ids, rewards)
        return (below + at_most).double() / (2 * m)


def _log_prob(x, name: str) -> Tensor:
    """A tensor of log-probabilities: no NaN, nothing above 0."""
    t = check_not_nan(as_float(x, name), name)
    if (t > 0).any():
        raise ValueError(f"{name} must be <= 0 (it is the log of a probability)")
    return t


def log_bon_ratio(log_cdf, log_ref, n: int) -> Tensor:
    """Exact log(pi_bon(y) / pi(y)), shaped like the inputs.

    With a = F_lt(y) = exp(log_cdf), g = exp(log_ref) the reference mass of y's tie class
    (g = pi(y) when no other outcome ties with y) and b = F_le(y) = a + g, BoN picks the class with
    probability b^n - a^n and y inside it with probability pi(y)/g, so

        pi_bon(y) / pi(y) = (b^n - a^n) / g = sum_{i=1..n} C(n,i) a^(n-i) g^(i-1).

    Computed as n log b + log(1 - exp(-n d)) - log g with d = log(b/a) = softplus(log g - log a),
    so it neither cancels nor underflows, costs O(1) per outcome whatever n, and is finite for
    log_ref down to -1e4. It is >= log n + (n-1) log((a + b)/2) (the mid-rank bound: x^(n-1) is
    convex) >= log n + (n-1) log a (the paper's bound).
    """
    n = check_int(n, "n")
    la = _log_prob(log_cdf, "log_cdf")
    lg = broadcast_to(_log_prob(log_ref, "log_ref"), la.shape, "log_ref")
    lb = torch.logaddexp(la, lg)
    d = torch.nn.functional.softplus(lg - la)  # log(b/a) >= 0; +inf when a = 0
    tail = torch.where(d > 0, torch.log(-torch.expm1(-n * d)) - lg, math.log(n) - la)  # d = 0: g/a underflowed
    return torch.where(lb == -math.inf, -math.inf, n * lb + tail)  # a = g = 0: an outcome BoN never returns


def vbon_reward(log_cdf, n: int, log_ref=None, log_tie_mass=None) -> Tensor:
    """Per-sample reward for vBoN as KL-regularised RL with beta = 1/(n-1).

    vBoN (exact, needs ``log_ref`` = log pi(y)): minimising KL(q || pi_bon) is
    maximising E_q[log(pi_bon/pi)/(n-1)] - 1/(n-1) KL(q || pi); reward
    ``log_bon_ratio(log_cdf, log_ref, n) / (n-1)``, with ``log_cdf`` = log F_lt. With ties,
    pass ``log_tie_mass`` = log of the estimated mass of y's tie class: the class mass used is
    g = max(that, pi(y)) and the reward ``log_bon_ratio(log_cdf, log g, n) / (n-1)``.

    vBoN-L (lower bound, ``log_ref=None``): keep only the i = 1 term,
    log n + (n-1) log F; divided by n-1 and without the constant, reward
    ``log F``: maximise E_q[log F] - 1/(n-1) KL(q || pi). Needs n >= 2. With ties pass the
    mid-rank F_mid = F_lt + pi(G)/2 as ``log_cdf``: the bound still holds and is tighter.
    """
    n = check_int(n, "n", minimum=2)
    if log_ref is None:
        return _log_prob(log_cdf, "log_cdf")
    if log_tie_mass is not None:
        log_ref = torch.maximum(_log_prob(log_tie_mass, "log_tie_mass"), _log_prob(log_ref, "log_ref"))
    return log_bon_ratio(log_cdf, log_ref, n) / (n - 1)


def kl_k1(logp, logp_ref) -> Tensor:
    """Per-token k1 = log q - log pi: unbiased for KL(q || pi) under q, may be negative."""
    lp = check_not_nan(as_float(logp, "logp"), "logp")
    lr = check_not_nan(as_float(logp_ref, "logp_ref"), "logp_ref")
    check_same_shape(lp, lr, "logp", "logp_ref")
    if ((lp == -math.inf) & (lr == -math.inf)).any():
        raise ValueError("logp and logp_ref are both -inf at the same position: the token is impossible under both")
    return lp - lr


def kl_k3(logp, logp_ref) -> Tensor:
    """Per-token k3 = (pi/q - 1) - log(pi/q) = expm1(-l) + l, l = log q - log pi.

    Unbiased for KL(q || pi) under q and never negative (expm1 avoids the
    cancellation that makes the naive form dip below zero near l = 0).
    """
    l = kl_k1(logp, logp_ref)
    return torch.where(l == -math.inf, math.inf, torch.expm1(-l) + l).clamp_min(0.0)  # q(y) = 0: pi/q is infinite

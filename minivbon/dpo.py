"""DPO on Best-of-n's best-against-worst pairs: the preference baseline of the vBoN paper.

Draw n reference samples per prompt, call the best one y_w and the worst y_l, and minimise DPO's loss
(Rafailov et al., NeurIPS 2023, arXiv:2305.18290)

    L(q) = E[ -log sigmoid(beta * h) ],     h = log q/pi(y_w) - log q/pi(y_l).

With rewards that never tie, every pair (a, b) with r(a) > r(b) is drawn as (y_w, y_l) with positive
probability and never the other way round, so the loss keeps falling as q moves every a above every b:
its infimum over all distributions is P(y_w = y_l) log 2 = sum_y pi(y)^n log 2 (the pairs that are one
string drawn n times), approached, never reached, as q puts all its mass on each prompt's best string.
Unlike vBoN or BoNBoN, DPO on these pairs has no finite optimum to distil; ``beta`` only sets how fast
it runs away from pi. :func:`dpo_objective` computes L(q) exactly by enumeration, to check both facts.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .checks import as_float, check_not_nan, check_positive
from .policy import Samples, sequence_log_probs


def dpo_loss(policy: nn.Module, reference: nn.Module, best: Samples, worst: Samples,
             beta: float) -> tuple[Tensor, dict]:
    """mean over prompts of -log sigmoid(beta h), h = [log q - log pi](best) - [log q - log pi](worst), each (P,)."""
    beta = check_positive(beta, "beta")
    if list(best.prompt_ids) != list(worst.prompt_ids):
        raise ValueError("best and worst must hold one sample each of the same prompts, in the same order")
    lq_w, lp_w, _ = sequence_log_probs(policy, reference, best)  # (P,) each
    lq_l, lp_l, _ = sequence_log_probs(policy, reference, worst)
    h = (lq_w - lp_w) - (lq_l - lp_l)  # (P,)
    return -F.logsigmoid(beta * h).mean(), {"margin": h.detach().mean().item()}


def dpo_objective(log_q: Tensor, log_pi: Tensor, pairs: Tensor, beta: float) -> Tensor:
    """DPO's loss in expectation over the (best, worst) law, by enumeration: (P,).

    log_q, log_pi (P, S); pairs (P, S, S) = ``distill.best_worst_probs``, P(best = a, worst = b).
    sum_{a,b} pairs[a, b] * -log sigmoid(beta (u_a - u_b)), u = log q - log pi.
    """
    beta = check_positive(beta, "beta")
    for x, name in ((log_q, "log_q"), (log_pi, "log_pi")):
        t = check_not_nan(as_float(x, name), name, finite=True)
        if t.dim() != 2:
            raise ValueError(f"{name} must be (P, S) log-probabilities, got shape {tuple(t.shape)}")
    pr = check_not_nan(as_float(pairs, "pairs"), "pairs", finite=True)
    if pr.shape != (*log_q.shape, log_q.shape[-1]) or tuple(as_float(log_pi, "log_pi").shape) != tuple(log_q.shape):
        raise ValueError(f"pairs must be (P, S, S) and log_pi (P, S) for log_q {tuple(log_q.shape)}; got "
                         f"{tuple(pr.shape)} and {tuple(as_float(log_pi, 'log_pi').shape)}")
    u = log_q - as_float(log_pi, "log_pi").to(log_q)  # (P, S)
    h = u[:, :, None] - u[:, None, :]  # (P, S, S): u_a - u_b
    return -(pr.to(log_q) * F.logsigmoid(beta * h)).sum((1, 2))

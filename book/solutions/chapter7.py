"""Chapter 7: TRL's KL-penalised reward, the CDF looked up by prompt id, leave-one-out with unscorable rewards."""
import math

import torch


def my_kl_penalised_rewards(rewards, logp, ref_logp, mask, beta):
    """R - beta * sum over completion tokens of (log q - log pi): the k1 KL of each sequence, (B,)."""
    return rewards - beta * ((logp - ref_logp) * mask).sum(-1)


def my_log_f_mid_by_id(rewards, prompt_ids, references):
    """log((#below + #equal/2 + 1)/(M + 1)), each sample against its own prompt's references."""
    out = []
    for r, key in zip(rewards, prompt_ids):
        ref = references[key]
        below, equal = (ref < r).sum().item(), (ref == r).sum().item()
        out.append(math.log((below + equal / 2 + 1) / (len(ref) + 1)))
    return torch.tensor(out, dtype=torch.float64)


def my_rloo_advantages_nan(rewards, k):
    """Leave-one-out over the scorable rewards of each group; 0 where nothing else is scorable or r is NaN."""
    r = rewards.view(-1, k)
    ok = ~torch.isnan(r)
    total = torch.where(ok, r, 0.0).sum(1, keepdim=True)  # (P, 1) sum of scorable rewards
    others = ok.sum(1, keepdim=True) - 1  # (P, 1) scorable siblings of each scorable reward
    adv = r - (total - torch.where(ok, r, 0.0)) / others.clamp_min(1)
    return torch.where(ok & (others > 0), adv, 0.0).view(-1)


SOLUTIONS = {"kl_penalised_rewards": my_kl_penalised_rewards, "log_f_mid_by_id": my_log_f_mid_by_id,
             "rloo_advantages_nan": my_rloo_advantages_nan}

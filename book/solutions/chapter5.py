"""Chapter 5: standard errors over prompts, BoN's win rate from a pool of samples, and the Pareto front."""
import math


def my_mean_se(x, groups):
    """Mean and standard error of x over `groups` equal blocks (one per prompt): the block means are
    the independent units, so the error is their standard deviation / sqrt(groups)."""
    blocks = x.view(groups, -1).mean(-1)
    return blocks.mean(), blocks.std() / math.sqrt(groups)


def my_pareto_front(kl, value):
    """True where no other point has KL <= and value >= with one of the two strict."""
    no_worse = (kl[None, :] <= kl[:, None]) & (value[None, :] >= value[:, None])  # [i, j]: j at least as good
    better = (kl[None, :] < kl[:, None]) | (value[None, :] > value[:, None])
    return ~(no_worse & better).any(-1)


def my_bon_win_rate_from_pool(pool, references, n):
    """Split each prompt's pool into disjoint groups of n, keep each group's best, score it against the
    prompt's references (ties count half) and average per prompt: (P, S), (P, M) -> (P,)."""
    best = pool.view(pool.shape[0], -1, n).max(-1).values  # (P, S/n)
    below = (references[:, None, :] < best[:, :, None]).double().sum(-1)
    equal = (references[:, None, :] == best[:, :, None]).double().sum(-1)
    return ((below + equal / 2) / references.shape[-1]).mean(-1)


SOLUTIONS = {"mean_se": my_mean_se, "pareto_front": my_pareto_front, "bon_win_rate_from_pool": my_bon_win_rate_from_pool}

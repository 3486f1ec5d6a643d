"""minivbon.trl_rewards: the TRL reward callables (CalibratedReward, VBoNLReward, MaxAtKReward) under TRL's
calling convention (one list entry per completion, dataset columns as keyword lists), without TRL itself."""
import itertools
import math

import pytest
import torch

from minivbon import EmpiricalCDF
from minivbon.pass_at_k import max_at_k_rewards
from minivbon.trl_rewards import CalibratedReward, MaxAtKReward, VBoNLReward


def length_reward(texts):
    return torch.tensor([float(len(t)) for t in texts])


def cdf():
    return EmpiricalCDF({7: torch.tensor([1.0, 2.0, 3.0]), 9: torch.tensor([10.0, 20.0, 30.0])})


CALL = dict(prompts=["ab", "ab", "ab"], completions=["", "c", "cdefghij"], completion_ids=[[], [1], [1] * 8],
            prompt_id=[7, 7, 9])
# lengths 2, 3, 10 against references {1, 2, 3}, {1, 2, 3}, {10, 20, 30}:
# F_mid = (#below + #tied / 2 + 1) / (M + 1) = (1 + 1/2 + 1)/4, (2 + 1/2 + 1)/4, (0 + 1/2 + 1)/4
F_MID = [2.5 / 4, 3.5 / 4, 1.5 / 4]


# ------------------------------------------------------------------ calibrated rewards
def test_calibrated_identity_reward_is_the_mid_rank_of_each_prompt():
    reward = CalibratedReward(cdf(), length_reward)  # "identity" by default
    assert reward(**CALL) == pytest.approx(F_MID, abs=1e-15)
    assert reward.__name__ == "calibrated"


def test_calibrated_reward_applies_a_named_or_given_transform():
    assert CalibratedReward(cdf(), length_reward, "log")(**CALL) == pytest.approx([math.log(f) for f in F_MID])
    assert CalibratedReward(cdf(), length_reward, "exp(10)")(**CALL) == pytest.approx([math.exp(10 * f) for f in F_MID])
    square = CalibratedReward(cdf(), length_reward, lambda f: f**2)
    assert square(**CALL) == pytest.approx([f**2 for f in F_MID])


def test_vbon_l_reward_is_the_log_mid_rank_as_before():
    reward = VBoNLReward(cdf(), length_reward)
    assert reward.__name__ == "vbon_l"
    assert reward(**CALL) == pytest.approx([math.log(f) for f in F_MID])
    with pytest.raises(KeyError, match="prompt_id"):
        reward(prompts=["a"], completions=["b"], other=[1])
    with pytest.raises(TypeError, match="conversational"):
        reward(prompts=[[{"role": "user", "content": "a"}]], completions=["b"], prompt_id=[7])
    with pytest.raises(ValueError, match="shape"):
        VBoNLReward(cdf(), lambda texts: torch.zeros(len(texts) + 1))(prompts=["a"], completions=["b"], prompt_id=[7])
    with pytest.raises(TypeError, match="EmpiricalCDF"):
        VBoNLReward({7: [1.0]}, length_reward)


def test_a_bad_transform_is_refused_at_construction():
    with pytest.raises(ValueError, match="transform must be one of"):
        CalibratedReward(cdf(), length_reward, "cube")
    with pytest.raises(TypeError, match="transform"):
        CalibratedReward(cdf(), length_reward, 2.0)
    with pytest.raises(TypeError, match="reward"):
        CalibratedReward(cdf(), "length")
    with pytest.raises(TypeError, match="key"):
        CalibratedReward(cdf(), length_reward, key="")


# ------------------------------------------------------------------ max@k rewards
def group_batch(seed, groups, group, ids=None):
    """TRL's layout: each prompt's ``group`` completions consecutively; completion lengths random with ties."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 4, (groups * group,), generator=g).tolist()
    ids = ids if ids is not None else [10 + i for i in range(groups) for _ in range(group)]
    prompts = [f"p{i}" for i in ids]
    completions = ["x" * m for m in lengths]
    return dict(prompts=prompts, completions=completions, completion_ids=[[0] * m for m in lengths], prompt_id=ids)


def subset_rewards(row, k):
    """Brute force: sum over the C(n, k) subsets containing i of their max, over C(n, k), minus k/n times the
    mean subset max of the other n - 1 samples."""
    n = len(row)

    def mean_max(values):
        subsets = list(itertools.combinations(values, k))
        return sum(max(s) for s in subsets) / len(subsets)

    subsets = list(itertools.combinations(range(n), k))
    credit = [sum(max(row[j] for j in s) for s in subsets if i in s) / len(subsets) for i in range(n)]
    return [credit[i] - k / n * mean_max(row[:i] + row[i + 1:]) for i in range(n)]


@pytest.mark.parametrize("k,group", [(1, 2), (2, 4), (3, 5)])
def test_max_at_k_reward_is_group_times_the_pkpo_rewards_of_each_group(k, group):
    reward = MaxAtKReward(length_reward, k, group)
    assert reward.__name__ == f"max_at_{k}"
    batch = group_batch(k, 3, group)
    out = reward(**batch)
    raw = [len(p) + len(c) for p, c in zip(batch["prompts"], batch["completions"])]
    assert len(out) == 3 * group and any(abs(x) > 0.1 for x in out)
    assert out == pytest.approx((group * max_at_k_rewards(torch.tensor(raw, dtype=torch.float64).view(3, group), k))
                                .view(-1).tolist(), abs=1e-12)
    for i in range(3):
        rows = raw[i * group:(i + 1) * group]
        assert out[i * group:(i + 1) * group] == pytest.approx([group * s for s in subset_rewards(rows, k)], abs=1e-12)
        assert sum(out[i * group:(i + 1) * group]) == pytest.approx(0.0, abs=1e-12)


def test_max_at_k_reward_refuses_groups_that_are_not_one_prompt_each():
    reward = MaxAtKReward(length_reward, 2, 3)
    mixed = group_batch(0, 2, 3, ids=[1, 1, 2, 2, 2, 2])  # a group holds two prompts
    with pytest.raises(ValueError, match="consecutively"):
        reward(**mixed)
    interleaved = group_batch(0, 2, 3, ids=[1, 2, 1, 2, 1, 2])
    with pytest.raises(ValueError, match="consecutively"):
        reward(**interleaved)
    short = group_batch(0, 1, 4, ids=[1, 1, 1, 1])  # 4 completions, not a multiple of 3
    with pytest.raises(ValueError, match="consecutively"):
        reward(**short)
    with pytest.raises(KeyError, match="prompt_id"):
        reward(prompts=["a"] * 3, completions=["b"] * 3, other=[1] * 3)
    assert len(reward(**group_batch(0, 2, 3, ids=[1, 1, 1, 2, 2, 2]))) == 6  # the same ids, grouped: accepted


def test_max_at_k_reward_refuses_a_group_too_small_for_the_baseline():
    with pytest.raises(ValueError, match="group must be >= 3"):
        MaxAtKReward(length_reward, 2, 2)
    with pytest.raises(ValueError, match="group must be >= 5"):
        MaxAtKReward(length_reward, 4, 4)
    with pytest.raises(ValueError, match="k must be"):
        MaxAtKReward(length_reward, 0, 4)
    with pytest.raises(TypeError, match="reward"):
        MaxAtKReward(None, 2, 4)
    assert MaxAtKReward(length_reward, 2, 3).group == 3

"""Fixtures the fault tests share."""
import pytest
import torch

from minivbon.policy import reference_cdf
from minivbon.toy import make_world


@pytest.fixture(scope="module")
def toy():
    """A two-prompt string world (3 tokens, length 3): (world, reference, reward_fn, CDF from 50 samples)."""
    world = make_world(num_prompts=2, vocab=3, length=3, seed=0)
    ref = world.reference()

    def reward_fn(samples):
        return world.reward(samples.prompt_ids, samples.tokens)

    cdf = reference_cdf(ref, [0, 1], reward_fn, 50, torch.Generator().manual_seed(0))
    return world, ref, reward_fn, cdf

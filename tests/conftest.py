"""Fixtures the tests share: small string worlds with their reference CDFs."""
import pytest
import torch

from minivbon.policy import reference_cdf
from minivbon.toy import make_world


def _toy(num_prompts: int, vocab: int, length: int, m: int):
    """(world, reference, reward_fn, CDF from m reference samples per prompt) of a string world."""
    world = make_world(num_prompts=num_prompts, vocab=vocab, length=length, seed=0)
    ref = world.reference()

    def reward_fn(samples):
        return world.reward(samples.prompt_ids, samples.tokens)

    cdf = reference_cdf(ref, list(range(num_prompts)), reward_fn, m, torch.Generator().manual_seed(0))
    return world, ref, reward_fn, cdf


@pytest.fixture(scope="session")
def make_toy():
    """The world builder itself, for a module that wants a world of its own size."""
    return _toy


@pytest.fixture(scope="module")
def toy():
    """A two-prompt string world (3 tokens, length 3) with a CDF from 50 samples per prompt."""
    return _toy(2, 3, 3, 50)


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: on a busy 2-core machine a second torch thread makes them 10-30 times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

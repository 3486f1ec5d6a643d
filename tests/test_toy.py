"""minivbon.toy: the enumerable string world and tabular policies against brute force."""
import itertools

import pytest
import torch

import minivbon as mv
from minivbon.toy import TabularPolicy, all_strings, make_world
from minivbon.policy import Samples


@pytest.fixture(scope="module")
def world():
    return make_world(num_prompts=3, vocab=3, length=4, seed=1)


def test_all_strings_lists_every_string_once():
    s = all_strings(3, 4)
    assert s.shape == (81, 4)
    assert {tuple(x) for x in s.tolist()} == set(itertools.product(range(3), repeat=4))


def test_reference_probabilities_match_a_hand_computed_chain(world):
    logp = world.ref_log_probs()  # (P, S)
    for prompt in range(3):
        for idx in [0, 17, 80]:
            y = world.strings[idx].tolist()
            prev, total = 3, 0.0
            for t, v in enumerate(y):
                total += world.ref_logits[prompt, t, prev].log_softmax(-1)[v].item()
                prev = v
            assert logp[prompt, idx].item() == pytest.approx(total, abs=1e-12)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_prefix_and_previous_layouts_agree_at_the_reference(world):
    full = TabularPolicy.from_first_order(world.ref_logits, "prefix")
    first_order = TabularPolicy.from_first_order(world.ref_logits, "previous")
    assert torch.allclose(full.log_probs_all(world.strings), first_order.log_probs_all(world.strings), atol=1e-12)
    assert full.logits.shape[1] == 1 + 3 + 9 + 27 and first_order.logits.shape[1] == 4 * 4


def test_sampling_matches_exact_probabilities(world):
    ref = world.reference("prefix")
    s = ref.sample([1] * 100_000, torch.Generator().manual_seed(0))
    index = (s.tokens * 3 ** torch.arange(3, -1, -1)).sum(-1)
    hist = torch.bincount(index, minlength=81).double() / 100_000
    assert 0.5 * (hist - world.ref_log_probs()[1].exp()).abs().sum() < 0.02
    assert torch.allclose(ref.token_log_probs(s).sum(-1)[:50], world.ref_log_probs()[1, index[:50]], atol=1e-12)


def test_reward_matches_its_definition(world):
    y = torch.tensor([[0, 2, 1, 1]])
    want = sum(world.unigram[2, t, v] for t, v in enumerate(y[0].tolist()))
    want += world.bigram[0, 2] + world.bigram[2, 1] + world.bigram[1, 1]
    assert world.reward([2], y).item() == pytest.approx(want.item())
    assert world.rewards_all().unique().numel() == 3 * 81  # continuous: no ties


def test_exact_metrics_at_the_reference(world):
    m = world.exact_metrics(world.reference(), 4)
    assert m["kl_to_ref"] == pytest.approx(0, abs=1e-12)
    assert m["win_rate"] == pytest.approx(0.5, abs=1e-12)  # no ties: exactly one half against itself
    p, b = world.ref_log_probs().exp(), world.bon_probs(4)
    assert m["kl_to_bon"] == pytest.approx(mv.kl_divergence(p, b).mean().item())


def test_policy_gradient_flows_only_through_the_policy(world):
    pol = TabularPolicy.from_first_order(world.ref_logits, "previous")
    s = pol.sample([0, 1], torch.Generator().manual_seed(0))
    pol.token_log_probs(s).sum().backward()
    assert pol.logits.grad is not None and pol.logits.grad.abs().sum() > 0
    assert not world.reference().logits.requires_grad


@pytest.mark.parametrize("kwargs,match", [
    ({"vocab": 0}, "vocab must be >= 1"),
    ({"vocab": 64, "length": 6}, "too many to enumerate"),
])
def test_bad_worlds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_world(**kwargs)


def test_a_fractional_length_is_a_type_error():
    with pytest.raises(TypeError, match="length must be an integer"):
        make_world(length=2.5)


def test_bad_context():
    with pytest.raises(ValueError, match="context must be"):
        TabularPolicy(torch.zeros(1, 4, 2), 2, 2, context="bigram")


def test_samples_select_keeps_rows_together():
    s = Samples([5, 6, 7], torch.arange(6).view(3, 2), torch.ones(3, 2, dtype=torch.bool), {"texts": ["a", "b", "c"]})
    t = s.select(torch.tensor([2, 0]))
    assert t.prompt_ids == [7, 5] and t.tokens.tolist() == [[4, 5], [0, 1]] and t.extra["texts"] == ["c", "a"]

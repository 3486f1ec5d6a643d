"""minivbon.lm: loading, sampling and log-probabilities of causal LMs, on the shipped local model
and on tiny random models saved to a temporary folder (the hub cannot be reached here)."""
import re
import sys

import pytest
import torch

from minivbon.lm import HubUnavailableError, LMPolicy, from_pretrained, load_policy
from minivbon.sentiment import DATA, VaderReward
from minivbon.policy import Samples, best_of_n

LOCAL = DATA / "local-gpt2"


@pytest.fixture(scope="module")
def local():
    model, tok = load_policy(str(LOCAL))
    prompts = {i: t for i, t in enumerate(["The acting", "I watched The Silent River", "This drama follows a",
                                             "The soundtrack was"])}
    return LMPolicy(model, tok, prompts, max_new_tokens=24)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A randomly initialised 2-layer GPT-2 with the local tokenizer, saved like a hub checkpoint."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-gpt2")
    tok = AutoTokenizer.from_pretrained(LOCAL)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=0, eos_token_id=0, pad_token_id=1)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_local_model_is_small_and_loads_offline():
    size = sum(p.stat().st_size for p in LOCAL.iterdir()) / 2**20
    assert size < 10, f"checkpoint is {size:.1f} MB"
    model, tok = load_policy(str(LOCAL))
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 0, 1)
    assert model.config.pad_token_id == 1 and len(tok) == model.config.vocab_size == 2048
    assert tok("The plot").input_ids[0] == tok.bos_token_id  # bos in front, as in pretraining


def test_local_model_writes_fluent_mixed_sentiment_reviews(local):
    sys.path.insert(0, str(DATA))
    from make_corpus import make_corpus

    known = {w.lower() for r in make_corpus(3000, seed=0) for w in re.findall(r"[A-Za-z'-]+", r)}
    samples = local.sample([i % 4 for i in range(200)], torch.Generator().manual_seed(0))
    words = [w.lower() for t in samples.extra["texts"] for w in re.findall(r"[A-Za-z'-]+", t)]
    assert sum(w in known for w in words) / len(words) > 0.95  # real words, not byte soup
    scores = VaderReward()(samples.extra["texts"])
    print(f"VADER over 200 reference samples: mean {scores.mean():.2f}, sd {scores.std():.2f}, "
          f"positive {(scores > 0.05).double().mean():.2f}, negative {(scores < -0.05).double().mean():.2f}")
    assert scores.std() > 0.3
    assert (scores > 0.05).double().mean() > 0.2 and (scores < -0.05).double().mean() > 0.2


def test_token_log_probs_match_a_manual_computation(local):
    samples = local.sample([0, 1, 2, 3], torch.Generator().manual_seed(1))
    got = local.token_log_probs(samples)  # (B, T)
    for b in range(4):
        attn = samples.extra["attention_mask"][b].bool()
        seq = samples.tokens[b][attn]  # unpadded prompt + continuation
        logits = local.model(input_ids=seq[None]).logits[0]
        manual = logits[:-1].log_softmax(-1).gather(-1, seq[1:, None]).squeeze(-1)
        n_prompt = len(local.prompt_tokens[b])
        gen = samples.mask[b].sum().item()
        assert torch.allclose(got[b][samples.mask[b]], manual[n_prompt - 1: n_prompt - 1 + gen], atol=1e-4)
        assert (got[b][~samples.mask[b]] == 0).all()  # prompt and padding are excluded


def test_samples_come_from_the_distribution_token_log_probs_scores(local):
    """generate's own next-token distribution, with left-padded prompts of different lengths, is the one
    token_log_probs evaluates: otherwise the policy gradient would score samples from another policy."""
    ids = [0, 1, 2, 3]  # prompts of 2 to 6 tokens: three of the four rows are left-padded
    x, attn = local.prompt_batch(ids)  # the left padding sample() uses
    width, tok = x.shape[1], local.tokenizer
    torch.manual_seed(3)
    out = local.model.generate(input_ids=x, attention_mask=attn, do_sample=True, top_k=0, top_p=1.0,
                               max_new_tokens=12, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                               output_scores=True, return_dict_in_generate=True)
    new = out.sequences[:, width:]  # (B, 12)
    scored = torch.stack(out.scores, 1).log_softmax(-1).gather(-1, new[..., None]).squeeze(-1)  # (B, 12)
    is_eos = (new == tok.eos_token_id).long()
    keep = (is_eos.cumsum(1) - is_eos) == 0
    samples = Samples(ids, out.sequences, torch.cat([torch.zeros_like(attn, dtype=torch.bool), keep], 1),
                      {"attention_mask": torch.cat([attn, keep.long()], 1)})
    ours = local.token_log_probs(samples)[:, width:]
    assert ((scored - ours).abs() * keep).max() < 1e-4


def test_mask_stops_after_the_first_eos(local):
    samples = local.sample([0] * 64, torch.Generator().manual_seed(2))
    ended = 0
    for row, m in zip(samples.tokens, samples.mask):
        eos = (row[m] == 0).nonzero()
        assert len(eos) == 0 or eos[0].item() == m.sum().item() - 1  # eos, if any, is the last kept token
        ended += len(eos) > 0
    assert ended > 0  # some reviews do end within 24 tokens, so the rule was exercised


def test_sampling_is_seeded(local):
    a = local.sample([0, 1], torch.Generator().manual_seed(3))
    b = local.sample([0, 1], torch.Generator().manual_seed(3))
    assert a.extra["texts"] == b.extra["texts"]


def test_best_of_n_keeps_the_argmax(local):
    reward = VaderReward()
    gen = torch.Generator().manual_seed(4)
    best, r = best_of_n(local, [0, 1, 2], 6, lambda s: reward(s.extra["texts"]), gen)
    again = local.sample([p for p in [0, 1, 2] for _ in range(6)], torch.Generator().manual_seed(4))
    scores = reward(again.extra["texts"]).view(3, 6)
    assert torch.allclose(r, scores.max(1).values)
    assert torch.allclose(reward(best.extra["texts"]), scores.max(1).values)
    assert best.prompt_ids == [0, 1, 2]


def test_clones_are_independent(local):
    ref, twin = local.clone(), local.clone(trainable=True)
    assert all(not p.requires_grad for p in ref.model.parameters())
    assert all(p.requires_grad for p in twin.model.parameters())
    assert ref.model is not local.model and ref.prompt_tokens is local.prompt_tokens
    with torch.no_grad():
        next(twin.model.parameters()).add_(1.0)
    assert not torch.equal(next(twin.model.parameters()), next(ref.model.parameters()))


def test_tiny_hub_stand_in_loads_through_the_same_functions(tiny_gpt2):
    model, tok = load_policy(str(tiny_gpt2))
    pol = LMPolicy(model, tok, {"x": "The film"}, max_new_tokens=5)
    s = pol.sample(["x", "x"], torch.Generator().manual_seed(0))
    assert s.tokens.shape[1] <= len(pol.prompt_tokens["x"]) + 5
    assert pol.token_log_probs(s).shape == s.tokens.shape


def test_unreachable_hub_fails_fast_and_names_the_local_backend(monkeypatch):
    from transformers import AutoModelForCausalLM

    for env in ("1", "0"):  # offline by setting, and offline because the hub does not answer
        monkeypatch.setenv("HF_HUB_OFFLINE", env)
        monkeypatch.setattr("minivbon.lm.hub_reachable", lambda timeout=1.0: False)
        with pytest.raises(HubUnavailableError, match="local backend"):
            from_pretrained(AutoModelForCausalLM, "lvwerra/gpt2-imdb")


def test_unknown_prompt_and_bad_settings(local):
    with pytest.raises(ValueError, match="prompt id 'nope' is unknown"):
        local.sample(["nope"])
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        LMPolicy(local.model, local.tokenizer, {}, max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        LMPolicy(local.model, local.tokenizer, {}, temperature=0.0)


def test_bf16_autocast_moves_log_probs_a_little_and_the_vbon_reward_not_at_all():
    """The GPU preset's precision choice, checked on CPU: bfloat16 autocast for the model's matmuls,
    float32 log-softmax, sums over tokens and the vBoN reward in float32/float64. Stated tolerances:
    per token 0.1 nats at most (0.02 on average), per 24-token sequence 0.3 nats, vBoN reward 1e-6."""
    import minivbon as mv
    from minivbon import sentiment

    task = sentiment.load_task("local", n_train=16, n_test=1, max_new_tokens=24)
    fp32 = task.reference
    bf16 = LMPolicy(fp32.model, fp32.tokenizer, {}, 24, 1.0, precision="bf16")
    bf16.prompt_tokens = fp32.prompt_tokens
    samples = fp32.sample([p for p in task.train_prompts for _ in range(4)], torch.Generator().manual_seed(0))
    a, b = fp32.token_log_probs(samples), bf16.token_log_probs(samples)
    assert b.dtype == torch.float32
    gap = (a - b).abs()
    assert 0 < gap.max() < 0.1 and gap[samples.mask].mean() < 0.02  # bf16 really ran, and stayed close
    seq_a, seq_b = a.sum(-1).double(), b.sum(-1).double()
    assert (seq_a - seq_b).abs().max() < 0.3
    cdf = mv.reference_cdf(fp32, task.train_prompts, task.reward_fn, 32, torch.Generator().manual_seed(1))
    log_f = cdf.log_cdf(samples.prompt_ids, task.reward_fn(samples))
    reward_gap = mv.vbon_reward(log_f, 4, log_ref=seq_a) - mv.vbon_reward(log_f, 4, log_ref=seq_b)
    assert reward_gap.abs().max() < 1e-6
    assert fp32.clone().precision == "fp32" and bf16.clone().precision == "bf16"
    with pytest.raises(ValueError, match="precision must be"):
        LMPolicy(fp32.model, fp32.tokenizer, {}, precision="fp16")

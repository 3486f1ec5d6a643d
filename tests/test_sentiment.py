"""minivbon.sentiment: rewards, prompts, backends, the reference cache, and a short vBoN-L run."""
import pytest
import torch

import minivbon.sentiment as sent
from minivbon.lm import HubUnavailableError
from minivbon.loop import TrainConfig, train


@pytest.fixture(scope="module")
def task():
    return sent.load_task("local", n_train=48, n_test=64)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A random DistilBERT sentiment classifier saved like lvwerra/distilbert-imdb (labels NEGATIVE, POSITIVE)."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-distilbert")
    tok = AutoTokenizer.from_pretrained(sent.DATA / "local-gpt2")
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=len(tok), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64,
                           pad_token_id=tok.pad_token_id, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                           label2id={"NEGATIVE": 0, "POSITIVE": 1})
    DistilBertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_vader_reward_orders_sentiment():
    r = sent.VaderReward()(["A wonderful, moving film.", "It was fine.", "An awful, boring mess."])
    assert r[0] > r[1] > 0 > r[2] and r.dtype == torch.float64


def test_classifier_reward_is_the_logit_difference(tiny_classifier):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reward = sent.ClassifierReward(str(tiny_classifier), batch_size=2)
    texts = ["The acting was great.", "Terrible.", "An odd one, but fun."]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    with torch.no_grad():
        logits = torch.cat([model(**tok([t], return_tensors="pt")).logits.double() for t in texts])
    assert torch.allclose(reward(texts), logits[:, 1] - logits[:, 0], atol=1e-5)
    # padding in a batch does not change a text's reward
    assert torch.allclose(sent.ClassifierReward(str(tiny_classifier), batch_size=3)(texts), reward(texts), atol=1e-5)


def test_hub_backend_runs_with_tiny_stand_ins(tiny_classifier):
    gpt2 = str(sent.DATA / "local-gpt2")  # any causal LM folder works where the hub name would go
    task = sent.load_task("hub", policy=gpt2, reward=str(tiny_classifier), prompts="local", n_train=4, n_test=4,
                          max_new_tokens=6)
    assert isinstance(task.reward, sent.ClassifierReward) and task.settings["max_new_tokens"] == 6
    s = task.policy.sample(task.train_prompts[:2], torch.Generator().manual_seed(0))
    assert task.reward_fn(s).shape == (2,)


def test_imdb_prompts_fail_fast_offline():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sent.DATA / "local-gpt2")
    with pytest.raises(HubUnavailableError, match="local backend"):
        sent.load_prompts("imdb", "train", tok, n=10)


def test_prefix_prompts_are_two_to_eight_tokens():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sent.DATA / "local-gpt2")
    texts = ["I watched The Silent River last night and the acting was superb throughout the whole film."] * 50
    lengths = [len(tok(p, add_special_tokens=False).input_ids) for p in sent.prefix_prompts(texts, tok, seed=0)]
    assert min(lengths) >= 2 and max(lengths) <= 8 and len(set(lengths)) > 3


def test_local_prompts_load_with_datasets_and_do_not_overlap():
    train, test = sent.load_prompts("local", "train"), sent.load_prompts("local", "test")
    assert len(train) == 2000 and len(test) == 1000 and not set(train) & set(test)
    with pytest.raises(ValueError, match="split must be"):
        sent.load_prompts("local", "valid")
    with pytest.raises(ValueError, match="backend must be one of"):
        sent.load_task("cloud")


def test_reference_cache_is_reused_and_invalidated(task, tmp_path, monkeypatch):
    calls = []
    original = sent.reference_cdf

    def counting(*args, **kwargs):
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(sent, "reference_cdf", counting)
    prompts = task.train_prompts[:3]
    a = sent.cached_reference_cdf(task, prompts, 8, seed=0, cache_dir=tmp_path)
    b = sent.cached_reference_cdf(task, prompts, 8, seed=0, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(a.sorted, b.sorted)  # second call read the file
    sent.cached_reference_cdf(task, prompts, 9, seed=0, cache_dir=tmp_path)  # M changed
    sent.cached_reference_cdf(task, prompts, 8, seed=1, cache_dir=tmp_path)  # seed changed
    task.settings["temperature"] = 0.9  # a sampler setting changed
    try:
        sent.cached_reference_cdf(task, prompts, 8, seed=0, cache_dir=tmp_path)
    finally:
        task.settings["temperature"] = 1.0
    assert len(calls) == 4 and len(list(tmp_path.iterdir())) == 4


def test_short_vbon_l_run_raises_held_out_reward(task, tmp_path):
    cdf = sent.cached_reference_cdf(task, task.train_prompts, 32, seed=0, cache_dir=tmp_path)
    held_out = task.test_prompts * 4  # 256 samples

    def mean_reward(policy, seed):
        return task.reward_fn(policy.sample(held_out, torch.Generator().manual_seed(seed))).mean().item()

    before = mean_reward(task.policy, 0)
    cfg = TrainConfig(method="vbon-l", n=4, k=4, prompts_per_step=16, steps=40, lr=3e-4, seed=0)
    trainer = train(task.policy, task.reference, task.train_prompts, task.reward_fn, cfg, cdf=cdf, progress=False)
    after = mean_reward(task.policy, 0)
    print(f"held-out mean VADER reward: {before:.3f} -> {after:.3f}; KL k1 {trainer.history[-1]['kl_k1']:.2f}")
    assert after > before + 0.1


def test_evaluate_policy_on_the_reference_itself(task, tmp_path):
    cdf = sent.cached_reference_cdf(task, task.test_prompts[:32], 16, seed=1, cache_dir=tmp_path)
    e = sent.evaluate_policy(task, task.reference, task.test_prompts[:32], cdf, samples_per_prompt=8, seed=0)
    assert e["kl_k1"] == 0 and e["kl_k3"] == 0  # the same model scores its own samples
    assert abs(e["win_rate"] - 0.5) < 0.06 and len(e["texts"]) == 256

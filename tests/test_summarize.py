"""minivbon.summarize, .extractive and .rouge: the summarization task checked against brute force."""
import importlib.util
import itertools
import math
import random
from pathlib import Path

import pytest
import torch

import minivbon as mv
from minivbon.extractive import (ExtractivePolicy, bradley_terry_loss, pairwise_accuracy, pretrain_reference,
                                 target_samples)
from minivbon.policy import Samples
from minivbon.rouge import lcs_length, rouge_l, rouge_n, tokens
from minivbon.summarize import (ASPECTS, MAX_LEN, STOP, all_outputs, gold_reward, load_papers,
                                load_summarization_task)

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (tests/conftest.py)


@pytest.fixture(scope="module")
def task():
    return load_summarization_task()


@pytest.fixture(scope="module")
def papers():
    return load_papers()


def test_the_data_file_holds_the_cc_by_papers_of_acl_sum_as_described(papers):
    assert [sum(p["split"] == s for p in papers) for s in ("train", "val", "test")] == [50, 20, 42]
    assert len({p["id"] for p in papers}) == 112
    for p in papers:  # only text we may redistribute under the project's licence: CC BY 4.0, 2016 on
        assert p["licence"] == "CC-BY-4.0" and p["year"] >= 2016
        assert set(p["summaries"]) == set(ASPECTS) and all(p["summaries"].values())
        assert all(len(p["highlights"][a]) == len(p["abstract"]) for a in ASPECTS)
    spec = importlib.util.spec_from_file_location("build_aclsum", ROOT / "data" / "build_aclsum.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert [build.anthology_year(i) for i in ("P06-1112", "W99-0615", "2021.acl-long.57")] == [2006, 1999, 2021]


# ---------------------------------------------------------------- ROUGE


def test_rouge_by_hand():
    # candidate "the cat sat on the mat" vs reference "the cat is on the mat"
    c, r = "The cat sat on the mat.", "the cat, is on the MAT"
    assert tokens(c) == ["the", "cat", "sat", "on", "the", "mat"]
    assert rouge_n(c, r, 1) == pytest.approx(2 * 5 / 12, abs=1e-15)  # overlap the x2, cat, on, mat
    assert rouge_n(c, r, 2) == pytest.approx(2 * 3 / 10, abs=1e-15)  # (the cat), (on the), (the mat)
    assert lcs_length(tokens(c), tokens(r)) == 5 and rouge_l(c, r) == pytest.approx(10 / 12, abs=1e-15)
    assert rouge_n("", r, 1) == rouge_n("a", "b", 2) == rouge_l("...", r) == 0.0


def test_rouge_matches_the_rouge_score_package_on_real_sentences(papers):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    rng = random.Random(0)
    texts = [s for p in papers for s in p["abstract"]] + [s for p in papers for s in p["summaries"].values()]
    pairs = [(rng.choice(texts), rng.choice(texts)) for _ in range(400)]
    for p in papers[::10]:  # extracts against their paper's joined summaries, as in the gold reward
        pairs.append((" ".join(p["abstract"][:3]), " ".join(p["summaries"][a] for a in ASPECTS)))
    pairs += [("Naïve café—déjà vu 42", "naive cafe deja vu 42"), ("", "x"), ("x y", "x y")]
    for cand, ref in pairs:
        s = scorer.score(ref, cand)  # rouge-score takes (target, prediction)
        assert abs(rouge_n(cand, ref, 1) - s["rouge1"].fmeasure) <= 1e-12
        assert abs(rouge_n(cand, ref, 2) - s["rouge2"].fmeasure) <= 1e-12
        assert abs(rouge_l(cand, ref) - s["rougeL"].fmeasure) <= 1e-12


# ---------------------------------------------------------------- outputs and the policy


def brute_force_outputs(n: int, max_len: int) -> set:
    """Every emitted token sequence that follows the rules, written as padded (tokens, mask) rows."""
    out = set()
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(n + 1), repeat=length):
            sents = [x for x in seq if x < n]
            stop_at = [i for i, x in enumerate(seq) if x == n]
            if stop_at and (stop_at != [length - 1] or length == 1):
                continue  # STOP only as the last token and after at least one sentence
            if not stop_at and length < max_len:
                continue  # fewer than max_len sentences must end with STOP
            if sents != sorted(set(sents)):
                continue
            out.add((tuple(seq) + (n,) * (max_len - length), (True,) * length + (False,) * (max_len - length)))
    return out


@pytest.mark.parametrize("n,max_len", [(1, 1), (1, 3), (3, 2), (4, 4), (6, 3), (8, 3)])
def test_all_outputs_enumerates_exactly_the_valid_outputs(n, max_len):
    tokens_, mask = all_outputs(n, max_len)
    rows = [(tuple(t), tuple(m)) for t, m in zip(tokens_.tolist(), mask.tolist())]
    assert len(rows) == len(set(rows)) == sum(math.comb(n, k) for k in range(1, max_len + 1))
    assert set(rows) == brute_force_outputs(n, max_len)
    if (n, max_len) == (8, 3):
        assert len(rows) == 92


def test_task_sizes_and_tables(task):
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [50, 20, 42]
    assert task.outputs.shape == (92, MAX_LEN) and task.valid.shape == task.gold_all.shape == (112, 92)
    per_paper = task.valid.sum(1)
    expected = [sum(math.comb(int(n), k) for k in range(1, MAX_LEN + 1)) for n in task.num_sentences]
    assert per_paper.tolist() == expected and per_paper.max() == 92
    assert (task.gold_all[~task.valid] == 0).all() and (task.proxy_all[~task.valid] == 0).all()
    assert task.settings["build_seconds"] < 30  # about 3 s on one idle core


def test_the_gold_table_is_rouge_of_the_joined_extract(task):
    for i in task.splits["test"][:6] + task.splits["train"][:2]:
        paper = task.papers[i]
        summaries = " ".join(paper["summaries"][a] for a in ASPECTS)
        for k in task.valid[i].nonzero().squeeze(1).tolist():
            chosen = [j for j in task.outputs[k].tolist() if j != STOP]
            text = " ".join(paper["abstract"][j] for j in chosen)
            want = (rouge_n(text, summaries, 1) + rouge_n(text, summaries, 2)) / 2
            assert abs(task.gold_all[i, k].item() - want) <= 1e-12
            assert gold_reward(text, [paper["summaries"][a] for a in ASPECTS]) == want


@pytest.fixture(scope="module")
def fresh(task):
    """An untrained policy on the task's features (sharper logits than the reference's)."""
    return ExtractivePolicy(task.features, task.num_sentences, MAX_LEN, hidden=16, seed=3)


@pytest.mark.parametrize("temperature", [0.25, 0.5, 1.0])
def test_log_probs_all_is_a_distribution_and_matches_the_tokens(task, fresh, temperature):
    ids = task.splits["val"]
    for policy in (task.reference, fresh):
        with torch.no_grad():
            lp = policy.log_probs_all(ids, temperature)
        assert torch.equal(torch.isfinite(lp), task.valid[ids])  # -inf exactly on the invalid extracts
        assert (lp.exp().sum(1) - 1).abs().max() < 1e-12
        for row, i in enumerate(ids[:5]):  # each valid extract scored on its own
            cols = task.valid[i].nonzero().squeeze(1)
            s = Samples([i] * len(cols), task.outputs[cols], task.output_mask[cols])
            with torch.no_grad():
                direct = policy.token_log_probs(s, temperature)
            assert (direct[~s.mask] == 0).all()
            assert torch.allclose(direct.sum(-1), lp[row, cols], atol=1e-12, rtol=0)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_sampling_frequencies_match_log_probs_all(task, temperature):
    ref, ids, draws = task.reference, [task.splits["test"][0], task.splits["test"][7], task.splits["val"][3]], 6000
    samples = ref.sample([i for i in ids for _ in range(draws)], torch.Generator().manual_seed(1), temperature)
    with torch.no_grad():
        probs = ref.log_probs_all(ids, temperature).exp()
        scored = ref.token_log_probs(samples, temperature).sum(-1)
    cols = task.columns(samples).view(len(ids), draws)
    rows = torch.arange(len(ids))[:, None].expand_as(cols)
    assert torch.allclose(scored.view(len(ids), draws), probs[rows, cols].log(), atol=1e-12, rtol=0)
    for row in range(len(ids)):
        expected = probs[row] * draws
        counts = torch.bincount(cols[row], minlength=len(expected)).double()
        assert (counts[expected == 0] == 0).all()
        big = expected >= 5  # chi-square on the well-filled cells, the rest pooled into one
        stat = ((counts[big] - expected[big]) ** 2 / expected[big]).sum().item()
        rest_e, rest_c = expected[~big].sum().item(), counts[~big].sum().item()
        stat += (rest_c - rest_e) ** 2 / rest_e if rest_e >= 5 else 0.0
        df = int(big.sum()) + (rest_e >= 5) - 1
        assert stat < df + 5 * math.sqrt(2 * df), (row, stat, df)  # about 5 standard deviations


def test_reward_functions_read_the_tables(task):
    i = task.splits["test"][2]
    cols = task.valid[i].nonzero().squeeze(1)
    s = Samples([i] * len(cols), task.outputs[cols], task.output_mask[cols])
    assert torch.equal(task.columns(s), cols)
    assert torch.equal(task.reward_fn(s), task.proxy_all[i, cols])
    assert torch.equal(task.gold_fn(s), task.gold_all[i, cols])
    with pytest.raises(ValueError, match="out of range"):
        task.reward_fn(Samples([10**6], task.outputs[:1], task.output_mask[:1]))
    short = task.splits["train"][int(task.num_sentences[task.splits["train"]].argmin())]
    with pytest.raises(ValueError, match="not a valid extract"):
        task.gold_fn(Samples([short], torch.tensor([[7, STOP, STOP]]), torch.tensor([[True, True, False]])))


def test_policy_refuses_bad_input_and_clones_independently(task):
    with pytest.raises(ValueError, match="tokens must be"):
        task.reference.token_log_probs(Samples([0], torch.tensor([[9, 8, 8]]), torch.ones(1, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match="out of range"):
        task.reference.sample([-1])
    twin = task.reference.clone(trainable=True)
    assert twin.features is task.reference.features
    assert all(p.requires_grad for p in twin.parameters())
    assert not any(p.requires_grad for p in task.reference.parameters())
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(next(twin.parameters()), next(task.reference.parameters()))


def test_pretraining_fits_the_targets(task):
    ids = [i for i in task.splits["train"] if task.num_sentences[i] >= 4][:20]  # every target fits every paper
    targets = [[[0, 2], [1], [0, 1, 2], [3]][j % 4] for j in range(len(ids))]
    policy = ExtractivePolicy(task.features, task.num_sentences, MAX_LEN, hidden=8, seed=0)
    losses = pretrain_reference(policy, ids, targets, steps=40, lr=0.05)
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="increasing"):
        target_samples([0], [[2, 1]], MAX_LEN, STOP)


# ---------------------------------------------------------------- reward model


def test_bradley_terry_loss_is_its_formula():
    g = torch.Generator().manual_seed(0)
    ra, rb = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    y = torch.rand(50, generator=g, dtype=torch.float64).round()
    y[:5] = 0.3  # soft labels too
    sig = 1 / (1 + torch.exp(-(ra - rb)))
    want = -(y * torch.log(sig) + (1 - y) * torch.log(1 - sig)).mean()
    assert abs(bradley_terry_loss(ra, rb, y).item() - want.item()) < 1e-12


def test_pairwise_accuracy_by_brute_force():
    scores = torch.tensor([[0.1, 0.5, 0.5, 2.0], [1.0, 0.0, 3.0, 9.0]], dtype=torch.float64)
    gold = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 2.0, 0.0]], dtype=torch.float64)
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    per = []
    for s, g, v in zip(scores.tolist(), gold.tolist(), valid.tolist()):
        hits = [1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0
                for a, b in itertools.permutations(range(4), 2) if v[a] and v[b] and g[a] > g[b]]
        per.append(sum(hits) / len(hits))
    acc, se = pairwise_accuracy(scores, gold, valid)
    assert acc == pytest.approx(sum(per) / 2, abs=1e-15)
    assert se == pytest.approx(abs(per[0] - per[1]) / 2, abs=1e-15)  # std/sqrt(2) of two values


def test_the_reward_model_beats_chance_on_held_out_papers(task):
    ids = task.splits["test"]
    acc, se = pairwise_accuracy(task.proxy["test"], task.gold["test"], task.valid[ids])
    assert acc - 5 * se > 0.5 and acc < 0.95  # informative, and imperfect


def test_bon_under_the_gold_reward_beats_the_reference_on_held_out_papers(task):
    pi, gold = task.ref_probs("test"), task.gold["test"]
    gain = mv.expected_reward(mv.bon_probs(pi, gold, 4), gold) - mv.expected_reward(pi, gold)
    assert gain.mean() > 0.02 and (gain >= -1e-12).all()


def gold_under_proxy_bon(task, ns):
    """Gold reward of Best-of-N under the task's proxy on the test papers: (len(ns), P_test)."""
    pi, gold = task.ref_probs("test"), task.gold["test"]
    return torch.stack([mv.expected_reward(mv.bon_probs(pi, task.proxy["test"], n), gold) for n in ns])


def test_the_reference_leaves_room_for_best_of_n_under_the_proxy(task):
    g = gold_under_proxy_bon(task, (1, 4))
    gain = g[1] - g[0]
    assert gain.mean() - 4 * gain.std() / math.sqrt(len(gain)) > 0  # a clear gain on held-out papers


def test_the_weak_proxy_is_worse_and_best_of_n_under_it_peaks_then_falls(task):
    weak = load_summarization_task("weak")
    assert weak.reference is task.reference and weak.gold_all is task.gold_all  # shared, built once
    assert weak.settings["rm_pairs"] < task.settings["rm_pairs"] and weak.settings["tau"] > task.settings["tau"]
    ids = task.splits["test"]
    strong_acc, _ = pairwise_accuracy(task.proxy["test"], task.gold["test"], task.valid[ids])
    weak_acc, weak_se = pairwise_accuracy(weak.proxy["test"], weak.gold["test"], weak.valid[ids])
    assert 0.5 < weak_acc - 2 * weak_se and weak_acc < strong_acc - 0.03
    ns = (1, 4, 16, 256, 10000)
    g = gold_under_proxy_bon(weak, ns)
    peak = int(g.mean(1).argmax())
    fall = g[peak] - g[-1]
    assert 0 < peak < len(ns) - 1 and fall.mean() - 2 * fall.std() / math.sqrt(len(fall)) > 0
    assert gold_under_proxy_bon(task, ns).mean(1)[-1] > g.mean(1)[-1] + 0.02  # the default proxy keeps its gains
    with pytest.raises(ValueError, match="proxy must be one of"):
        load_summarization_task("tiny")
    with pytest.raises(TypeError, match="unknown reward-model setting 'pairs'"):
        load_summarization_task("weak", pairs=3)


# ---------------------------------------------------------------- vBoN on the task


def test_vbon_training_lowers_the_exact_kl_to_best_of_n(task):
    ids, n = task.splits["train"], 4
    ref = task.reference
    with torch.no_grad():
        target = mv.bon_probs(ref.log_probs_all(ids).exp(), task.proxy["train"], n)
    policy = ref.clone(trainable=True)

    def kl():
        with torch.no_grad():
            return mv.kl_divergence(policy.log_probs_all(ids).exp(), target).mean().item()

    cdf = mv.reference_cdf(ref, ids, task.reward_fn, 100, torch.Generator().manual_seed(0))
    before = kl()
    config = mv.TrainConfig(method="vbon", n=n, k=8, prompts_per_step=16, steps=30, lr=0.01)
    trainer = mv.train(policy, ref, ids, task.reward_fn, config, cdf=cdf, progress=False)
    assert len(trainer.history) == 30
    assert kl() < 0.6 * before, (before, kl())

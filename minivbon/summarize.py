"""The summarization task (the paper's second task), offline and small enough to enumerate: chapter 8.

Papers: ACLSum (data/aclsum_abstracts.jsonl; the 112 papers whose text is CC BY 4.0, train/val/test 50/20/42,
each with three one-sentence human summaries of its challenge, approach and outcome). An output for a paper is
an extract: 1 to L = 3 distinct sentences among the first S_MAX = 8 of its abstract, in document order,
generated token by token (a sentence index after the previous one, or STOP once one sentence is chosen; after
L sentences the output ends). There are at most 8 + 28 + 56 = 92 extracts, so every probability, reward and
Best-of-N law is exact. Column k of every (P, K) table is extract k of ``all_outputs(S_MAX, L)``; extracts
that use a sentence a paper lacks are invalid (``task.valid`` False, probability 0, reward 0).

Gold reward: mean of ROUGE-1 and ROUGE-2 F1 (:mod:`minivbon.rouge`) of the joined extract against the three
summaries joined. Proxy reward: a Bradley-Terry reward model trained on noisy gold preferences between
extracts of training papers only (:mod:`minivbon.extractive`); ``PROXIES`` names two (``"default"`` and a
``"weak"`` one trained on fewer, noisier preferences, whose Best-of-N gold reward peaks and falls). The
reference policy is pretrained by maximum likelihood on the human highlights of the training papers.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .bon import bon_probs, expected_reward, kl_divergence
from .checks import check_int
from .extractive import ExtractivePolicy, RewardModel, output_indicator, pretrain_reference, train_reward_model
from .policy import Samples
from .rouge import ngrams, f1_from_counts, tokens

S_MAX, MAX_LEN, STOP, HASH_DIM = 8, 3, 8, 512
ASPECTS = ("challenge", "approach", "outcome")
SPLITS = ("train", "val", "test")


def all_outputs(num_sentences: int, max_len: int, stop: int | None = None) -> tuple[Tensor, Tensor]:
    """Every extract of 1..max_len sentences out of ``num_sentences``: tokens (K, max_len) and mask (K, max_len).

    Ordered by length, then lexicographically. Row: the sentence indices, then ``stop`` (default
    ``num_sentences``) if fewer than max_len were chosen; later positions hold ``stop`` with mask False.
    K = sum_{l=1..max_len} C(num_sentences, l).
    """
    n, length = check_int(num_sentences, "num_sentences"), check_int(max_len, "max_len")
    stop = n if stop is None else stop
    rows, masks = [], []
    for size in range(1, min(length, n) + 1):
        for combo in itertools.combinations(range(n), size):
            rows.append(list(combo) + [stop] * (length - size))
            masks.append([True] * min(size + 1, length) + [False] * (length - size - 1))
    return torch.tensor(rows, dtype=torch.long), torch.tensor(masks, dtype=torch.bool)


def sentence_features(sentences: list[str], title: str, dim: int = HASH_DIM) -> Tensor:
    """Fixed features of each sentence, (S, dim + 7) float64, no learning and no download.

    Columns: a hashed bag of unigrams and bigrams (crc32 mod dim, log(1 + count), L2-normalised), then
    relative position i/(S-1), position i/S_MAX, log(1 + #tokens)/5, the share of the title's words (of 4+
    letters) it contains, its cosine to the rest of the abstract, is-first, is-last.
    """
    toks = [tokens(s) for s in sentences]
    counts = [[0] * dim for _ in toks]
    for row, t in zip(counts, toks):
        for g, c in (ngrams(t, 1) + ngrams(t, 2)).items():
            row[zlib.crc32(" ".join(g).encode()) % dim] += c
    bow = torch.tensor(counts, dtype=torch.float64).log1p()
    bow = bow / bow.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rest = bow.sum(0, keepdim=True) - bow
    central = (bow * rest).sum(1) / rest.norm(dim=1).clamp_min(1e-12)
    words = {w for w in tokens(title) if len(w) >= 4}
    n = len(sentences)
    pos = torch.arange(n, dtype=torch.float64)
    extra = torch.stack([pos / max(n - 1, 1), pos / S_MAX, torch.tensor([math.log1p(len(t)) / 5 for t in toks]),
                         torch.tensor([len(words & set(t)) / max(len(words), 1) for t in toks], dtype=torch.float64),
                         central, (pos == 0).double(), (pos == n - 1).double()], 1)
    return torch.cat([bow, extra], 1)


def gold_reward(extract: str, summaries: list[str]) -> float:
    """(ROUGE-1 F1 + ROUGE-2 F1) / 2 of ``extract`` against the summaries joined with spaces."""
    c, r = tokens(extract), tokens(" ".join(summaries))
    return (f1_from_counts(ngrams(c, 1), ngrams(r, 1)) + f1_from_counts(ngrams(c, 2), ngrams(r, 2))) / 2


def data_file() -> Path:
    """data/aclsum_abstracts.jsonl: in $MINIVBON_DATA, inside the installed package, or next to it."""
    here = Path(__file__).resolve().parent
    folders = [Path(os.environ["MINIVBON_DATA"])] if os.environ.get("MINIVBON_DATA") else []
    for folder in folders + [here / "data", here.parent / "data"]:
        if (folder / "aclsum_abstracts.jsonl").is_file():
            return folder / "aclsum_abstracts.jsonl"
    raise FileNotFoundError("data/aclsum_abstracts.jsonl was not found next to minivbon (python data/build_aclsum.py "
                            "writes it from the aclsum package)")


def load_papers(path: str | Path | None = None) -> list[dict]:
    """The papers of the data file, in its order (train, val, test)."""
    with open(path or data_file(), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def highlight_target(paper: dict, max_len: int = MAX_LEN) -> list[int]:
    """The first ``max_len`` abstract sentences (among the first S_MAX) highlighted for any aspect; else [0]."""
    n = min(len(paper["abstract"]), S_MAX)
    chosen = [i for i in range(n) if any(paper["highlights"][a][i] for a in ASPECTS)]
    return chosen[:max_len] or [0]


@dataclass
class SummarizationTask:
    """Everything chapter 8 needs. Prompt ids are paper indices 0..P-1 into ``papers`` (train, val, test);
    ``splits`` lists them per split, and ``gold[split]``, ``proxy[split]`` are (P_split, K) tables in that order.
    Shared between callers (cached): clone the reference before training it."""

    papers: list[dict]
    splits: dict[str, list[int]]
    features: Tensor  # (P, S_MAX, D)
    num_sentences: Tensor  # (P,)
    outputs: Tensor  # (K, MAX_LEN) tokens of every extract
    output_mask: Tensor  # (K, MAX_LEN)
    valid: Tensor  # (P, K) bool
    reference: ExtractivePolicy
    reward_model: RewardModel
    gold_all: Tensor  # (P, K) float64
    proxy_all: Tensor  # (P, K) float64
    settings: dict = field(default_factory=dict)

    @property
    def gold(self) -> dict[str, Tensor]:
        return {s: self.gold_all[ids] for s, ids in self.splits.items()}

    @property
    def proxy(self) -> dict[str, Tensor]:
        return {s: self.proxy_all[ids] for s, ids in self.splits.items()}

    def columns(self, samples: Samples) -> Tensor:
        """Column of each sample's extract in the (P, K) tables: (B,)."""
        code = (output_indicator(samples.tokens, samples.mask, S_MAX).long() * (1 << torch.arange(S_MAX))).sum(1)
        lookup = torch.full((1 << S_MAX,), -1, dtype=torch.long)
        ind = output_indicator(self.outputs, self.output_mask, S_MAX).long()
        lookup[(ind * (1 << torch.arange(S_MAX))).sum(1)] = torch.arange(len(self.outputs))
        return lookup[code]

    def _lookup(self, table: Tensor, samples: Samples) -> Tensor:
        rows = self.reference.papers(samples.prompt_ids)
        cols = self.columns(samples)
        if (cols < 0).any() or not self.valid[rows, cols].all():
            raise ValueError("a sample is not a valid extract of its paper")
        return table[rows, cols]

    def reward_fn(self, samples: Samples) -> Tensor:
        """Proxy (reward model) reward of each sample: (B,) float64. The loop's reward."""
        return self._lookup(self.proxy_all, samples)

    def gold_fn(self, samples: Samples) -> Tensor:
        """Gold (ROUGE) reward of each sample: (B,) float64."""
        return self._lookup(self.gold_all, samples)

    @torch.no_grad()
    def ref_probs(self, split: str, temperature: float | None = None) -> Tensor:
        """Exact reference probabilities of every extract, (P_split, K) float64."""
        if split not in self.splits:
            raise ValueError(f"split must be one of {tuple(self.splits)}, got {split!r}")
        return self.reference.log_probs_all(self.splits[split], temperature).exp()

    def bon_curve(self, split: str = "test", ns=(1, 2, 4, 16, 64, 256, 1024, 4096, 10000), reward: str = "proxy") -> dict:
        """Exact Best-of-N under ``reward`` ("proxy" or "gold") for each N, averaged over the split's papers:
        {"n", "kl" = KL(pi_bon || pi), "gold", "proxy"} (lists)."""
        if reward not in ("proxy", "gold"):
            raise ValueError(f"reward must be 'proxy' or 'gold', got {reward!r}")
        pi, g, r = self.ref_probs(split), self.gold[split], self.proxy[split]
        out = {"n": list(ns), "kl": [], "gold": [], "proxy": []}
        for n in ns:
            q = bon_probs(pi, r if reward == "proxy" else g, n)
            out["kl"].append(max(0.0, kl_divergence(q, pi).mean().item()))  # not -1e-17 at N = 1
            out["gold"].append(expected_reward(q, g).mean().item())
            out["proxy"].append(expected_reward(q, r).mean().item())
        return out


# Reward-model settings: width, preference pairs per training paper, annotator noise tau (a wins with probability
# sigmoid((gold_a - gold_b) / tau)), weight decay, steps. "weak" fits a sixth of the pairs from a five times
# noisier annotator (Gao et al. 2022's less-data reward models): held-out accuracy about 0.6 against 0.68, and
# Best-of-N under it gains gold reward up to N of about 4-8, then loses it, ending below the reference.
PROXIES = {"default": {"rm_hidden": 4, "rm_pairs": 60, "tau": 0.03, "rm_decay": 2.0, "rm_steps": 300},
           "weak": {"rm_hidden": 4, "rm_pairs": 10, "tau": 0.15, "rm_decay": 2.0, "rm_steps": 300}}


@functools.lru_cache(maxsize=8)
def load_summarization_task(proxy: str = "default", seed: int = 0, hidden: int = 16, ref_steps: int = 10,
                            **reward_model) -> SummarizationTask:
    """Build the task once per setting (then cached): features, gold table, reference, reward model, proxy table.

    ``proxy`` names the reward model's settings in ``PROXIES``; keyword arguments ``rm_hidden``, ``rm_pairs``,
    ``tau``, ``rm_decay``, ``rm_steps`` override them. ``hidden``, ``ref_steps``: the reference's width and its
    full-batch Adam steps on the highlights (more steps make it more peaked and leave Best-of-N less to gain).
    Tasks with the same ``seed``, ``hidden`` and ``ref_steps`` share the papers, gold table and reference.
    """
    if proxy not in PROXIES:
        raise ValueError(f"proxy must be one of {tuple(PROXIES)}, got {proxy!r}")
    unknown = set(reward_model) - set(PROXIES[proxy])
    if unknown:
        raise TypeError(f"unknown reward-model setting {sorted(unknown)[0]!r}; choose from {tuple(PROXIES[proxy])}")
    s = {**PROXIES[proxy], **reward_model}
    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(1)  # the tensors are tiny: a second thread only adds overhead on a busy machine
    try:
        papers, splits, features, n_sent, outputs, mask, valid, gold, reference = _base(seed, hidden, ref_steps)
        chosen = output_indicator(outputs, mask, S_MAX)
        rm = RewardModel(features.shape[-1], MAX_LEN, hidden=s["rm_hidden"], seed=seed)
        train_reward_model(rm, features, chosen, valid, gold, splits["train"], pairs_per_paper=s["rm_pairs"],
                           tau=s["tau"], steps=s["rm_steps"], weight_decay=s["rm_decay"], seed=seed)
        with torch.no_grad():
            proxy_all = rm.requires_grad_(False)(features, chosen).masked_fill(~valid, 0.0)
    finally:
        torch.set_num_threads(threads)
    task = SummarizationTask(papers, splits, features, n_sent, outputs, mask, valid, reference, rm, gold, proxy_all)
    task.settings.update(proxy=proxy, seed=seed, hidden=hidden, ref_steps=ref_steps, **s,
                         build_seconds=time.perf_counter() - start)
    return task


@functools.lru_cache(maxsize=2)
def _base(seed: int, hidden: int, ref_steps: int) -> tuple:
    """Papers, splits, features, sentence counts, outputs, mask, valid, gold table and the frozen reference."""
    papers = load_papers()
    splits = {s: [i for i, p in enumerate(papers) if p["split"] == s] for s in SPLITS}
    n_sent = torch.tensor([min(len(p["abstract"]), S_MAX) for p in papers])
    feats = [sentence_features(p["abstract"][:S_MAX], p["title"]) for p in papers]
    features = torch.zeros(len(papers), S_MAX, feats[0].shape[1], dtype=torch.float64)
    for i, f in enumerate(feats):
        features[i, : len(f)] = f
    outputs, mask = all_outputs(S_MAX, MAX_LEN, stop=STOP)
    chosen = output_indicator(outputs, mask, S_MAX)  # (K, S_MAX)
    valid = ~(chosen[None] & (torch.arange(S_MAX)[None, None] >= n_sent[:, None, None])).any(-1)  # (P, K)
    gold = torch.zeros(len(papers), len(outputs), dtype=torch.float64)
    picks = [c.nonzero().squeeze(1).tolist() for c in chosen]
    for i, p in enumerate(papers):  # gold_reward of the joined extract; joining never merges two tokens
        toks = [tokens(s) for s in p["abstract"][:S_MAX]]
        ref = tokens(" ".join(p["summaries"][a] for a in ASPECTS))
        ref1, ref2 = ngrams(ref, 1), ngrams(ref, 2)
        for k in valid[i].nonzero().squeeze(1).tolist():
            c = [w for j in picks[k] for w in toks[j]]
            gold[i, k] = (f1_from_counts(ngrams(c, 1), ref1) + f1_from_counts(ngrams(c, 2), ref2)) / 2
    reference = ExtractivePolicy(features, n_sent, MAX_LEN, hidden=hidden, seed=seed)
    targets = [highlight_target(papers[i]) for i in splits["train"]]
    pretrain_reference(reference, splits["train"], targets, steps=ref_steps, seed=seed)
    reference.requires_grad_(False)
    return papers, splits, features, n_sent, outputs, mask, valid, gold, reference

"""The sentiment task (the paper's controlled generation): continue a movie-review prefix positively.

Two backends through the same code (book chapter 5 uses both):

- ``local`` (default, offline): the project's small GPT-2 in data/local-gpt2, VADER compound score as
  the reward, prompts from data/prompts_{train,test}.jsonl;
- ``hub``: lvwerra/gpt2-imdb, reward logit(POS) - logit(NEG) of lvwerra/distilbert-imdb, prompts cut
  from IMDB reviews to 2-8 tokens, 40 new tokens, temperature 1.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .checks import check_int
from .lm import LMPolicy, from_pretrained, hub_guard, load_policy
from .distance import BoNPool, draw_pool
from .objectives import EmpiricalCDF
from .storage import load_safe, save_atomic
from .policy import Samples, reference_cdf, sequence_log_probs

def _find_data() -> Path | None:
    """The local backend's folder: $MINIVBON_DATA, else data/ inside the installed package (a wheel), else
    data/ next to the package (a clone or an editable install)."""
    here = Path(__file__).resolve().parent
    for folder in ([Path(os.environ["MINIVBON_DATA"])] if os.environ.get("MINIVBON_DATA") else
                   [here / "data", here.parent / "data"]):
        if (folder / "local-gpt2").is_dir() and (folder / "prompts_train.jsonl").is_file():
            return folder
    return None


DATA = _find_data()
BACKENDS = {
    "local": {"policy": str(DATA / "local-gpt2") if DATA else "", "reward": "vader", "prompts": "local",
              "max_new_tokens": 24},
    "hub": {"policy": "lvwerra/gpt2-imdb", "reward": "lvwerra/distilbert-imdb", "prompts": "imdb",
            "max_new_tokens": 40},
}


class VaderReward:
    """VADER compound sentiment in [-1, 1] of each text (a lexicon and rules; no network)."""

    name = "vader"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings (a single string would be scored letter by letter)")
        return torch.tensor([self.analyzer.polarity_scores(t)["compound"] for t in texts], dtype=torch.float64)


class ClassifierReward:
    """logit(POSITIVE) - logit(NEGATIVE) of a sequence classifier: monotone in P(positive), unsaturated."""

    def __init__(self, name_or_path: str, device=None, batch_size: int = 64):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name, self.batch_size = name_or_path, batch_size
        self.tokenizer = from_pretrained(AutoTokenizer, name_or_path)
        self.tokenizer.padding_side = "right"  # the classifier reads its first position: padding must not move it
        self.model = from_pretrained(AutoModelForSequenceClassification, name_or_path).to(device or "cpu").eval()
        labels = {v.upper()[:3]: int(k) for k, v in self.model.config.id2label.items()}
        self.pos, self.neg = labels.get("POS", 1), labels.get("NEG", 0)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> Tensor:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True, return_tensors="pt")
            logits = self.model(**enc.to(self.model.device)).logits.double().cpu()
            out.append(logits[:, self.pos] - logits[:, self.neg])
        return torch.cat(out)


def prefix_prompts(texts: list[str], tokenizer, min_tokens: int = 2, max_tokens: int = 8, seed: int = 0) -> list[str]:
    """Cut each text to its first k tokens, k uniform in [min_tokens, max_tokens] (seeded)."""
    rng = random.Random(seed)
    return [tokenizer.decode(tokenizer(t, add_special_tokens=False).input_ids[: rng.randint(min_tokens, max_tokens)])
            for t in texts]


def load_prompts(source: str, split: str, tokenizer=None, n: int | None = None, seed: int = 0) -> dict:
    """Prompt id -> text. "local": data/prompts_{split}.jsonl; "imdb": n IMDB reviews cut to 2-8 tokens."""
    import datasets

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source == "local":
        rows = datasets.load_dataset("json", data_files=str(require_data() / f"prompts_{split}.jsonl"), split="train")
        return dict(list(zip(rows["id"], rows["text"]))[:n])
    if source != "imdb":
        raise ValueError(f"source must be 'local' or 'imdb', got {source!r}")

    def load(offline: bool):  # datasets has no per-call offline switch: once offline, it stays so in this process
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE or offline
        return datasets.load_dataset("stanfordnlp/imdb", split=split)

    rows = hub_guard("stanfordnlp/imdb", load)
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n or 1000, len(rows))))
    texts = prefix_prompts(rows.select(picked)["text"], tokenizer, seed=seed)
    return {f"imdb-{split}-{i}": t for i, t in zip(picked, texts)}


@dataclass
class SentimentTask:
    """Everything a sentiment run needs; ``settings`` names what changes reference samples (for caching)."""

    policy: LMPolicy
    reference: LMPolicy
    reward: Callable[[list[str]], Tensor]
    train_prompts: list
    test_prompts: list
    settings: dict = field(default_factory=dict)

    def reward_fn(self, samples: Samples) -> Tensor:
        """Reward of each sampled text, prompt included: (B,)."""
        return self.reward(samples.extra["texts"])


def require_data() -> Path:
    """The local backend's folder, or an error that says how to get it."""
    chosen = os.environ.get("MINIVBON_DATA")
    if DATA is None and chosen:
        folder = Path(chosen)
        lacks = [name for name, ok in (("local-gpt2/", (folder / "local-gpt2").is_dir()),
                                       ("prompts_train.jsonl", (folder / "prompts_train.jsonl").is_file())) if not ok]
        raise FileNotFoundError(
            f"MINIVBON_DATA={chosen} is not the local backend's data folder: "
            + (f"{folder} does not exist" if not folder.is_dir() else f"it has no {' and no '.join(lacks)}")
            + ". Point MINIVBON_DATA at the repository's data/ folder, or unset it to use the data/ next to minivbon.")
    if DATA is None:
        raise FileNotFoundError(
            "the local backend's files (data/local-gpt2, data/prompts_*.jsonl) were not found next to minivbon "
            f"({Path(__file__).resolve().parent}). Install minivbon from a clone of its repository "
            "(pip install . or pip install -e .), or set MINIVBON_DATA to the repository's data/ folder.")
    return DATA


def load_task(backend: str = "local", device=None, n_train: int | None = None, n_test: int | None = None,
              **overrides) -> SentimentTask:
    """Policy (trainable), frozen reference, reward and prompts for a backend; ``overrides`` change its settings
    (policy, reward, prompts, max_new_tokens, temperature, precision: "fp32" or "bf16" autocast, see LMPolicy).
    ``n_train``/``n_test``: how many prompts (all if None)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    valid = sorted([*BACKENDS[backend], "temperature", "precision"])
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"load_task got unknown settings {unknown}; valid settings are {valid}")
    n_train, n_test = [None if x is None else check_int(x, name) for x, name in [(n_train, "n_train"), (n_test, "n_test")]]
    if backend == "local" and "policy" not in overrides:
        require_data()
    settings = {"backend": backend, **BACKENDS[backend], "temperature": 1.0, "precision": "fp32", **overrides}
    model, tokenizer = load_policy(settings["policy"], device)
    train = load_prompts(settings["prompts"], "train", tokenizer, n_train)
    test = load_prompts(settings["prompts"], "test", tokenizer, n_test, seed=1)
    policy = LMPolicy(model, tokenizer, {**train, **test}, settings["max_new_tokens"], settings["temperature"],
                      settings["precision"])
    reward = VaderReward() if settings["reward"] == "vader" else ClassifierReward(settings["reward"], device)
    settings["model_fingerprint"] = _fingerprint(settings["policy"], model)
    return SentimentTask(policy, policy.clone(), reward, list(train), list(test), settings)


def _fingerprint(name: str, model) -> str:
    """Identifies the weights: a hash of a local checkpoint file, or the hub commit."""
    weights = Path(name) / "model.safetensors"
    if weights.exists():
        return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return str(getattr(model.config, "_commit_hash", None))


def cached_reference_cdf(task: SentimentTask, prompt_ids: list, m: int, seed: int = 0,
                         cache_dir: str | Path | None = None) -> EmpiricalCDF:
    """M reference samples per prompt, scored, as an EmpiricalCDF; stored on disk and reused.

    The file name hashes everything that changes the samples: the task settings (backend, model and
    its weights, reward, sampler), M, the seed and the prompts themselves.
    """
    m = check_int(m, "m")
    path = _cache_path(task, prompt_ids, "refs", m, seed, cache_dir)
    if path.exists():
        try:  # the safe loader: plain data only; a cut-short, corrupt or planted file is a miss
            return EmpiricalCDF(load_safe(path))
        except Exception as e:
            warnings.warn(f"ignoring the unreadable reference cache {path} ({type(e).__name__}: {e}); "
                          "sampling the references again", stacklevel=2)
    cdf = reference_cdf(task.reference, list(prompt_ids), task.reward_fn, m, torch.Generator().manual_seed(seed))
    _save_cache({p: cdf.sorted[cdf.index[p], : int(cdf.counts[cdf.index[p]])] for p in prompt_ids}, path, "reference")
    return cdf


def _cache_path(task: SentimentTask, prompt_ids: list, kind: str, m: int, seed: int, cache_dir) -> Path:
    """A file name that hashes everything that changes the samples: the task settings (backend, model and its
    weights, reward, sampler), M, the seed and the prompts themselves."""
    texts = {p: task.policy.tokenizer.decode(task.policy.prompt_tokens[p]) for p in prompt_ids}
    key = json.dumps({"settings": task.settings, "m": m, "seed": seed, "prompts": sorted(map(str, texts.items())),
                      **({"kind": kind} if kind != "refs" else {})}, sort_keys=True, default=str)
    return Path(cache_dir or Path.home() / ".cache" / "minivbon") / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def _save_cache(obj, path: Path, what: str) -> None:
    try:  # the cache only saves time: a folder that cannot be written (read-only, full disk) is not fatal
        save_atomic(obj, path)
    except OSError as e:
        warnings.warn(f"could not write the {what} cache {path} ({type(e).__name__}: {e}); continuing without "
                      "it (the samples will be drawn again next time)", stacklevel=3)


def cached_bon_pool(task: SentimentTask, prompt_ids: list, size: int, seed: int = 2,
                    cache_dir: str | Path | None = None) -> BoNPool:
    """``size`` reference samples per prompt with their rewards and log pi (:class:`minivbon.distance.BoNPool`),
    cached on disk like :func:`cached_reference_cdf`; BoN(n)'s samples are the best of its disjoint groups of n."""
    size = check_int(size, "size")
    path = _cache_path(task, prompt_ids, "pool", size, seed, cache_dir)
    if path.exists():
        try:
            d = load_safe(path)
            return BoNPool(Samples(d["prompt_ids"], d["tokens"], d["mask"], {"attention_mask": d["attention_mask"]}),
                           d["rewards"], d["log_ref"])
        except Exception as e:
            warnings.warn(f"ignoring the unreadable pool cache {path} ({type(e).__name__}: {e}); sampling again",
                          stacklevel=2)
    pool = draw_pool(task.reference, list(prompt_ids), size, task.reward_fn, torch.Generator().manual_seed(seed))
    s = pool.samples
    _save_cache({"prompt_ids": list(s.prompt_ids), "tokens": s.tokens.cpu(), "mask": s.mask.cpu(),
                 "attention_mask": s.extra["attention_mask"].cpu(), "rewards": pool.rewards, "log_ref": pool.log_ref},
                path, "pool")
    return pool


@torch.no_grad()
def evaluate_policy(task: SentimentTask, policy: LMPolicy, prompts: list, cdf: EmpiricalCDF,
                    samples_per_prompt: int = 4, seed: int = 0) -> dict:
    """Held-out metrics from ``samples_per_prompt`` samples per prompt: mean reward, win rate against the
    cached reference rewards of each prompt (ties count half), KL(policy || reference) estimated with k1 and
    k3 summed over generated tokens, and the texts. ``per_sample`` holds each sample's reward, win, k1 and k3
    (B,), in prompt order, for standard errors."""
    samples = policy.sample([p for p in prompts for _ in range(samples_per_prompt)], torch.Generator().manual_seed(seed))
    reward = task.reward_fn(samples)
    logp, ref, k3 = sequence_log_probs(policy, task.reference, samples)
    win, k1 = cdf.win_rate(samples.prompt_ids, reward), (logp - ref).double().cpu()
    return {"reward": reward.mean().item(), "win_rate": win.mean().item(), "kl_k1": k1.mean().item(),
            "kl_k3": k3.mean().item(), "texts": samples.extra["texts"], "rewards": reward,
            "per_sample": {"reward": reward.double().cpu(), "win_rate": win, "kl_k1": k1, "kl_k3": k3.double().cpu()}}

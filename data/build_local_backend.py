"""Build the local backend: tokenizer, a small pretrained GPT-2 and prompt sets, all from the generated corpus.

    python data/build_local_backend.py            # writes data/local-gpt2/ and data/prompts_{train,test}.jsonl

Deterministic from its seeds (CPU). Steps: generate 20,000 training reviews
(make_corpus.py, seed 0), train a byte-level BPE tokenizer (2,048 tokens,
"<|endoftext|>" as bos/eos, "<|pad|>" for padding, bos added in front of every
encoded text), pretrain GPT-2 (4 layers, width 128) on "<bos> review <eos>"
with AdamW and a cosine schedule, and cut held-out reviews (seed 1) into
prefixes of 2-8 tokens for the train and test prompt sets.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer, processors
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

sys.path.insert(0, str(Path(__file__).parent))
from make_corpus import make_corpus  # noqa: E402

BOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int) -> GPT2TokenizerFast:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS, PAD],
                            show_progress=False)
    bos = bpe.token_to_id(BOS)
    bpe.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos)])
    return GPT2TokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=BOS, unk_token=BOS, pad_token=PAD,
                             padding_side="left", model_max_length=128)


def batches(ids: list[list[int]], batch_size: int, pad: int, rng: random.Random):
    """Shuffled batches of reviews of similar length (less padding): (input_ids, attention_mask, labels)."""
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), rng.random()))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(chunks)
    for chunk in chunks:
        width = max(len(ids[i]) for i in chunk)
        x = torch.full((len(chunk), width), pad)
        for row, i in enumerate(chunk):
            x[row, : len(ids[i])] = torch.tensor(ids[i])
        mask = x != pad
        yield x, mask.long(), x.masked_fill(~mask, -100)


def pretrain(tok: GPT2TokenizerFast, texts: list[str], valid: list[str], steps: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=128, n_layer=4, n_head=4,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                        attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    encode = lambda ts: [tok(t).input_ids + [tok.eos_token_id] for t in ts]  # noqa: E731  bos ... eos
    train_ids, valid_ids = encode(texts), encode(valid)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    rng, step, t0 = random.Random(seed), 0, time.time()
    model.train()
    while step < steps:
        for x, mask, labels in batches(train_ids, 32, tok.pad_token_id, rng):
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 200 == 0 or step == steps:
                print(f"step {step}/{steps}  train loss {loss.item():.3f}  {time.time() - t0:.0f} s", flush=True)
            if step == steps:
                break
    model.eval()
    with torch.no_grad():
        losses = [model(input_ids=x, attention_mask=m, labels=y).loss.item()
                  for x, m, y in batches(valid_ids, 64, tok.pad_token_id, random.Random(0))]
    print(f"validation loss {sum(losses) / len(losses):.3f} nats/token", flush=True)
    return model


def prompt_sets(tok: GPT2TokenizerFast, reviews: list[str], n_train: int, n_test: int, seed: int):
    """Prefixes of 2-8 tokens (bos not counted) of held-out reviews, with ids unique across both splits."""
    rng = random.Random(seed)
    rows = []
    for i, text in enumerate(reviews[: n_train + n_test]):
        ids = tok(text, add_special_tokens=False).input_ids
        rows.append({"id": i, "text": tok.decode(ids[: rng.randint(2, 8)]).strip()})
    return rows[:n_train], rows[n_train:]


def main():
    parser = argparse.ArgumentParser(description="Build data/local-gpt2 and the prompt sets.")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--reviews", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--vocab", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out, t0 = Path(args.out), time.time()
    corpus = make_corpus(args.reviews, seed=0)
    held_out = make_corpus(4000, seed=1)
    tok = train_tokenizer(corpus, args.vocab)
    print(f"tokenizer: {len(tok)} tokens, {time.time() - t0:.0f} s", flush=True)
    model = pretrain(tok, corpus, held_out[3000:], args.steps, seed=0)
    model.generation_config.pad_token_id = tok.pad_token_id
    # written next to their targets, then swapped in: a kill or a full disk never leaves half a backend
    staging = out / ".local-gpt2.new"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tok.save_pretrained(staging)
    train, test = prompt_sets(tok, held_out, 2000, 1000, seed=2)
    for name, rows in [("train", train), ("test", test)]:
        with open(out / f".prompts_{name}.jsonl.new", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    old = out / ".local-gpt2.old"
    shutil.rmtree(old, ignore_errors=True)
    if (out / "local-gpt2").exists():
        os.replace(out / "local-gpt2", old)
    os.replace(staging, out / "local-gpt2")
    shutil.rmtree(old, ignore_errors=True)
    for name in ("train", "test"):
        os.replace(out / f".prompts_{name}.jsonl.new", out / f"prompts_{name}.jsonl")
    size = sum(p.stat().st_size for p in (out / "local-gpt2").iterdir()) / 2**20
    print(f"saved to {out / 'local-gpt2'} ({size:.1f} MB) in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

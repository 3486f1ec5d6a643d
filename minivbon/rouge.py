"""ROUGE-N and ROUGE-L F1, written out so the summarization task (chapter 8) needs no scoring package.

Tokens: the text is lower-cased and split into maximal runs of ``[a-z0-9]``; everything else separates tokens
(so "state-of-the-art" is four tokens and "é" is a separator). No stemming and no stop-word removal. These are
the settings of the ``rouge-score`` package with ``use_stemmer=False``, which the tests compare against.

ROUGE-N. With c(g) and r(g) the counts of the n-gram g in the candidate and the reference,

    overlap = sum_g min(c(g), r(g)),   P = overlap / #candidate n-grams,   R = overlap / #reference n-grams,
    F1 = 2 P R / (P + R) = 2 overlap / (#candidate n-grams + #reference n-grams),

and F1 = 0 when either text has no n-gram (or nothing overlaps).

ROUGE-L. The same F1 with overlap = the length of a longest common subsequence of the two token lists and
the counts replaced by the numbers of tokens.
"""
from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-case ``text`` and return its maximal runs of [a-z0-9]."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


def ngrams(toks: list[str], n: int) -> Counter:
    """Counts of the n-grams (tuples) of a token list."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def f1_from_counts(candidate: Counter, reference: Counter) -> float:
    """2 overlap / (size of candidate + size of reference) for two n-gram multisets (sizes counted with
    multiplicity); 0 if either is empty."""
    size = sum(candidate.values()) + sum(reference.values())
    if not candidate or not reference:
        return 0.0
    small, large = (candidate, reference) if len(candidate) <= len(reference) else (reference, candidate)
    overlap = sum(min(k, large[g]) for g, k in small.items())
    return 2.0 * overlap / size


def rouge_n(candidate: str, reference: str, n: int) -> float:
    """ROUGE-N F1 of ``candidate`` against ``reference`` (see the module docstring for the formula)."""
    return f1_from_counts(ngrams(tokens(candidate), n), ngrams(tokens(reference), n))


def lcs_length(a: list, b: list) -> int:
    """Length of a longest common subsequence, O(len(a) len(b)) time and O(len(b)) memory."""
    if len(b) > len(a):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], (diag + 1 if x == y else max(row[j], row[j - 1]))
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1: 2 LCS / (#candidate tokens + #reference tokens); 0 if either text has no token."""
    c, r = tokens(candidate), tokens(reference)
    if not c or not r:
        return 0.0
    return 2.0 * lcs_length(c, r) / (len(c) + len(r))

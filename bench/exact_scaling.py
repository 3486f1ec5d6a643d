"""How bon_probs and bon_sample scale with the number of outcomes K.

Prints, for K = 10^3 ... 10^7, the time of one exact bon_probs call (n = 16,
the best of 3 runs), the draws per second of bon_sample (n = 16), and the
fitted growth exponent of time in K (1.0 = linear). Run on one core:

    python bench/exact_scaling.py

At K = 10^7 each temporary is 80 MB, above glibc's largest mmap threshold, so
every allocation faults in fresh pages and about half the time is the kernel
zeroing them (large `sys` time). To see the algorithm alone:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python bench/exact_scaling.py
"""
import math
import time

import torch

from minivbon import bon_probs, bon_sample

torch.set_num_threads(1)
N, SAMPLES = 16, 20_000


def best_time(fn, repeats=3):
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


rows = []
for e in range(3, 8):
    k = 10**e
    g = torch.Generator().manual_seed(e)
    p = torch.rand(k, generator=g, dtype=torch.float64)
    p /= p.sum()
    r = torch.randn(k, generator=g, dtype=torch.float64)
    t_exact = best_time(lambda: bon_probs(p, r, N))
    t_sample = best_time(lambda: bon_sample(p, r, N, SAMPLES, generator=g))
    rows.append((k, t_exact, SAMPLES * N / t_sample))
    print(f"K = 10^{e}: bon_probs {t_exact * 1e3:9.2f} ms   bon_sample {SAMPLES * N / t_sample / 1e6:6.2f} M draws/s "
          f"({SAMPLES / t_sample / 1e3:7.1f} k BoN({N}) samples/s)", flush=True)

logk = [math.log(k) for k, _, _ in rows]
logt = [math.log(t) for _, t, _ in rows]
mk, mt = sum(logk) / len(logk), sum(logt) / len(logt)
slope = sum((a - mk) * (b - mt) for a, b in zip(logk, logt)) / sum((a - mk) ** 2 for a in logk)
slope_big = (logt[-1] - logt[-3]) / (logk[-1] - logk[-3])
print(f"growth exponent of bon_probs time in K: {slope:.2f} over 10^3..10^7, {slope_big:.2f} over 10^5..10^7")
print(f"time at K = 10^6 relative to one second: {rows[3][1]:.3f}")

"""How bon_probs and bon_sample scale with the number of outcomes K.

Prints, for K = 10^3 ... 10^(max exponent), the time of one exact bon_probs call (n = 16, the best
of 3 runs), the time of the sort it needs (torch.sort of the same float64 rewards, best of 3) and
their ratio, the draws per second of bon_sample (n = 16), the fitted growth exponent of time in K
(1.0 = linear), and at the end the ratio bon_probs / sort at K = 10^6. Each bon_probs run is timed
right after a sort run, so both see the same machine load. Run on one core:

    OMP_NUM_THREADS=1 python bench/exact_scaling.py

At K = 10^7 each temporary is 80 MB, above glibc's largest mmap threshold, so
every allocation faults in fresh pages and about half the time is the kernel
zeroing them (large `sys` time). To see the algorithm alone:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python bench/exact_scaling.py
"""
import argparse
import math
import time

import torch

from minivbon import bon_probs, bon_sample

SAMPLES = 20_000


def best_times(fns, repeats=3):
    """Best wall-clock time of each function over ``repeats`` rounds, the functions interleaved."""
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-exponent", type=int, default=7, help="largest K is 10^this (4..7, default 7)")
    parser.add_argument("--n", type=int, default=16, help="Best-of-n's n (>= 1, default 16)")
    args = parser.parse_args(argv)
    if not 4 <= args.max_exponent <= 7:
        parser.error(f"--max-exponent must be between 4 and 7, got {args.max_exponent}")
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    n = args.n
    torch.set_num_threads(1)

    rows = []
    for e in range(3, args.max_exponent + 1):
        k = 10**e
        g = torch.Generator().manual_seed(e)
        p = torch.rand(k, generator=g, dtype=torch.float64)
        p /= p.sum()
        r = torch.randn(k, generator=g, dtype=torch.float64)
        t_sort, t_exact = best_times([lambda: torch.sort(r), lambda: bon_probs(p, r, n)])
        (t_sample,) = best_times([lambda: bon_sample(p, r, n, SAMPLES, generator=g)])
        rows.append((e, t_exact, t_sort))
        print(f"K = 10^{e}: bon_probs {t_exact * 1e3:9.2f} ms   sort {t_sort * 1e3:9.2f} ms   "
              f"ratio {t_exact / t_sort:5.2f}x   bon_sample {SAMPLES * n / t_sample / 1e6:6.2f} M draws/s "
              f"({SAMPLES / t_sample / 1e3:7.1f} k BoN({n}) samples/s)", flush=True)

    logk = [e * math.log(10) for e, _, _ in rows]
    logt = [math.log(t) for _, t, _ in rows]
    mk, mt = sum(logk) / len(logk), sum(logt) / len(logt)
    slope = sum((a - mk) * (b - mt) for a, b in zip(logk, logt)) / sum((a - mk) ** 2 for a in logk)
    slope_big = (logt[-1] - logt[-3]) / (logk[-1] - logk[-3])
    last = args.max_exponent
    print(f"growth exponent of bon_probs time in K: {slope:.2f} over 10^3..10^{last}, "
          f"{slope_big:.2f} over 10^{last - 2}..10^{last}")
    if last >= 6:
        _, t_exact, t_sort = rows[3]
        print(f"time at K = 10^6 relative to one second: {t_exact:.3f}")
        print(f"bon_probs / sort at K = 10^6: {t_exact / t_sort:.2f}x "
              f"({t_exact * 1e3:.1f} ms against {t_sort * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()

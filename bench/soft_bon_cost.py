"""What the exact law of soft Best-of-n costs, against bon_probs, and how accurate it stays.

Prints, for K = 10^2 ... 10^(max exponent) outcomes (random pi, rewards N(0, 1), temperature 1) and
n = 4, 10^2, 10^4, 10^6, the time of one soft_bon_probs call (best of 3), the time of bon_probs on the same
problem, their ratio, and |sum of the law - 1| (the integral's own error shows there). Then, at K = 10^3 and
n = 16, how the cost grows as the temperature falls: the trapezoid grid spans (max r - min r) / temperature
in log t, so time grows like 1 / temperature. Run on one core:

    OMP_NUM_THREADS=1 python bench/soft_bon_cost.py
"""
import argparse

import torch

from minivbon.bon import bon_probs, soft_bon_probs
from minivbon.soft_bon import integral_grid

try:
    from exact_scaling import best_times
except ImportError:  # imported as bench.soft_bon_cost
    from bench.exact_scaling import best_times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-exponent", type=int, default=4, help="largest K is 10^this (2..5, default 4)")
    args = parser.parse_args(argv)
    if not 2 <= args.max_exponent <= 5:
        parser.error(f"--max-exponent must be between 2 and 5, got {args.max_exponent}")
    torch.set_num_threads(1)
    print("     K         n   soft_bon_probs   bon_probs    ratio   |sum - 1|")
    for e in range(2, args.max_exponent + 1):
        g = torch.Generator().manual_seed(e)
        p = torch.rand(10**e, generator=g, dtype=torch.float64)
        p /= p.sum()
        r = torch.randn(10**e, generator=g, dtype=torch.float64)
        for n in (4, 10**2, 10**4, 10**6):
            t_soft, t_hard = best_times([lambda: soft_bon_probs(p, r, n, 1.0), lambda: bon_probs(p, r, n)])
            err = abs(soft_bon_probs(p, r, n, 1.0).sum().item() - 1)
            print(f"{10**e:6d}  {n:8d}   {t_soft * 1e3:11.2f} ms  {t_hard * 1e3:7.2f} ms  {t_soft / t_hard:7.1f}   "
                  f"{err:9.1e}")
    g = torch.Generator().manual_seed(0)
    p = torch.rand(1000, generator=g, dtype=torch.float64)
    p /= p.sum()
    r = torch.randn(1000, generator=g, dtype=torch.float64)
    print("\nK = 1000, n = 16: the cost as the temperature falls")
    print("temperature   grid points   time")
    for t in (1.0, 0.1, 0.01, 0.001):
        (seconds,) = best_times([lambda: soft_bon_probs(p, r, 16, t)])
        points = len(integral_grid(-(r.max() - r.min()).item() / t, 16))  # the grid soft_bon_probs builds
        print(f"{t:11g}   {points:11d}   {seconds * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

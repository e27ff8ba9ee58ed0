"""Builds the offline Digits benchmark into a TFDS data dir and reports the time taken.

Usage::

  python -m ecos_jax.data.build --data_dir DIR [--domains mnist fontdigits ...]
      [--num_train N --num_test M] [--seed S]

Without ``--domains`` every domain is built and those whose source is not installed are
skipped with a warning; a domain named explicitly must build or the command fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from ecos_jax.data.builder import prepare_domain
from ecos_jax.data.domains import ALL_DOMAINS
from ecos_jax.data.paths import resolve_data_dir
from ecos_jax.data.sources import SourceUnavailableError

__all__ = [
    "build_benchmark",
    "main",
]


def build_benchmark(
    domains: tuple[str, ...] | None = None,
    *,
    data_dir: str | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Builds (or verifies the cache of) each domain; returns seconds per domain.

    Args:
      domains: domains to build; None builds all and skips unavailable ones with a warning.
      data_dir: TFDS data dir (None: ``$ECOS_DATA_DIR``, else ``~/.cache/ecos_jax/tfds``).
      num_train: train examples per domain (None: full size).
      num_test: test examples per domain (None: full size).
      seed: generation seed.

    Returns:
      Wall-clock seconds spent on each domain that was built or verified.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575), Digits benchmark.
    """
    explicit = domains is not None
    seconds = {}
    for domain in domains if explicit else ALL_DOMAINS:
        start = time.perf_counter()
        try:
            prepare_domain(
                domain, data_dir=data_dir, num_train=num_train, num_test=num_test, seed=seed
            )
        except SourceUnavailableError as err:
            if explicit:
                raise
            warnings.warn(f"domain {domain} skipped: {err}", stacklevel=2)
            continue
        seconds[domain] = time.perf_counter() - start
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: see paths)")
    parser.add_argument("--domains", nargs="+", choices=ALL_DOMAINS, default=None)
    parser.add_argument("--num_train", type=int, default=None)
    parser.add_argument("--num_test", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        seconds = build_benchmark(
            None if args.domains is None else tuple(args.domains),
            data_dir=args.data_dir,
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seed,
        )
    except SourceUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for domain, s in seconds.items():
        print(f"{domain:>14s}: {s:7.1f} s")
    total = time.perf_counter() - start
    print(f"built {len(seconds)} domains in {resolve_data_dir(args.data_dir)}: {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

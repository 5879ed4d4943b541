"""``make bench``: every benchmark of the project, printing measured figures and ratios (no pass/fail)."""

from __future__ import annotations

from benchmarks.core_bench import core_benchmark, print_core


def main() -> None:
    print_core(core_benchmark())


if __name__ == "__main__":
    main()

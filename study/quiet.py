"""The library log lines a study keeps from its user: Ray's and Tune's warnings and errors that say nothing the
study's own output and files do not say better (``study.runner`` wraps its Ray start and its Tuners in
:func:`quiet`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"
RESTORE_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
# Tune's own resume hint after an interrupt ("Resume experiment with: Tuner.restore(...)"): the study's is
# `diffctl study resume`, which also restores the PBT Tuners and the searcher's state around it.
TUNE_LOGGER = "ray.tune.tune"
# Tune's ERROR at the end of a fit whose trials did not all terminate (an interrupt; or a trial that failed past
# its retries): the study gives every such trial its status and reason itself (``study.tuners.finish``), and the report lists
# them. And the WARNING of Tune's results reader (RESTORE_ANALYSIS_LOGGER) after an interrupt, "Failed to fetch
# metrics for N trial(s)": trials interrupted before their first result have none; their own files hold theirs.
UNFINISHED_ERROR = "Trials did not complete"


class HideErrors(logging.Filter):
    """Drop a logger's records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextmanager
def quiet(logger_name: str, errors: tuple[str, ...] = ()) -> Iterator[None]:
    """Hide a library logger's warnings for the duration of the block, and those of its errors whose message
    starts with one of ``errors`` (not its other errors)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    hidden = HideErrors(errors)
    logger.addFilter(hidden)
    try:
        yield
    finally:
        logger.removeFilter(hidden)
        logger.setLevel(level)

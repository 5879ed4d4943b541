"""The reading layer: a study directory -> pandas tables, comparisons against fixed lambda, the open
questions, plots, report.md and the best-config export. Reads the files a study wrote; needs no running Ray.

report.md is the ordered list of sections of ``analysis.sections`` (one module each: the tables it computes and
the text that shows them), computed, rendered and written by ``analysis.report``; the modules beside it compute.

Example::

    from analysis import load
    trials, epochs = load("results/quick")
"""

from .load import StudyTables, load
from .results import StudyResults, open_study

__all__ = ["StudyResults", "StudyTables", "load", "open_study"]

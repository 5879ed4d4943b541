"""The report's last section: the Parquet tables every other section was computed from."""

from __future__ import annotations

from ..load import EPOCHS_FILE, TRIALS_FILE, StudyTables
from .base import Computed, Section


class Data(Section):
    def render(self, study: StudyTables, computed: Computed) -> str:
        return (f"[{TRIALS_FILE}]({TRIALS_FILE}) (one row per trial) · [{EPOCHS_FILE}]({EPOCHS_FILE}) (one row per "
                "trial-epoch)\n")


SECTION = Data("data", "Data")

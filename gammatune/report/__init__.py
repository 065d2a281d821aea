"""The report: trials -> one tidy DataFrame -> the summary and verdict, CSV, figures, HTML.

Reads only the study storage; never imports torch.
"""

from __future__ import annotations

from gammatune.report._arms import setting_mask
from gammatune.report._page import Written, study_summary, write_report
from gammatune.report._perclass import ClassChange, ClassFigures, class_changes, compare_classes
from gammatune.report._summary import Summary, SummaryRow, TestCheck, render_summary, summarize
from gammatune.report._table import (
    curve_flags,
    experiment_facts,
    trials_frame,
    undertrained,
    write_csv,
)

__all__ = [
    "ClassChange",
    "ClassFigures",
    "Summary",
    "SummaryRow",
    "TestCheck",
    "Written",
    "class_changes",
    "compare_classes",
    "curve_flags",
    "experiment_facts",
    "render_summary",
    "setting_mask",
    "study_summary",
    "summarize",
    "trials_frame",
    "undertrained",
    "write_csv",
    "write_report",
]

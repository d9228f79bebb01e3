"""The paper's printed evaluation numbers, shipped for side-by-side comparison only.

Scenarios compute every value from inputs; these printed values only fill the "paper" and "diff"
columns of their output (``twin/data/seed_tables.json``, a copy of ``shared/reference``).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from twin.paper_eval import PaperReference, load_paper_reference


@cache
def paper_reference() -> PaperReference:
    """Table 3-13 rows and Table 3-15 KPIs as printed in the paper."""
    return load_paper_reference(str(files("twin") / "data" / "seed_tables.json"))

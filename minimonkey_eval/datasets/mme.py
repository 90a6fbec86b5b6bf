"""MME's 14 categories, in vlmeval's order: the perception and the reasoning half of the headline.

Shared by the synthetic fixtures (``datasets/fixtures.py``, which draws one image pair per category) and the
statistics (``eval/stats/units.py``, which sums acc + acc+ per category into perception and reasoning), so that
neither imports the other.
"""
from __future__ import annotations

MME_PERCEPTION: tuple[str, ...] = ("OCR", "artwork", "celebrity", "color", "count", "existence", "landmark",
                                   "position", "posters", "scene")
MME_REASONING: tuple[str, ...] = ("code_reasoning", "commonsense_reasoning", "numerical_calculation",
                                  "text_translation")
MME_CATEGORIES: tuple[str, ...] = MME_PERCEPTION + MME_REASONING

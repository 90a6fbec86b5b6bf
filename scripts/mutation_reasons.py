"""Why a surviving mutant may live: one line per class of survivor, matched on the mutated function and the changed
source line (``scripts/mutation.py --survivors`` writes each survivor with the first reason that matches).

Each reason says either why the change cannot alter behaviour (equivalent) or why it is accepted; a survivor no rule
matches is listed as UNEXPLAINED: write the test that kills it, or add a rule here with its reason.
A rule: (module or "*", regex on the function name or "", regex the removed line must match, regex the added line
must match, reason).
"""
from __future__ import annotations

import re

SAME_DEFAULT = "equivalent: the argument's default is the value written out"
UTF8_LOCALE = "equivalent here: the default text encoding is UTF-8 (UTF-8 locale on this box and in CI)"
LOG_TEXT = "accepted: the wording of a log warning (tests assert the warning, the file and the numbers it names)"

RULES: list[tuple[str, str, str, str, str]] = [
    # ---- any module
    ("*", "", r"""["'](utf-8|ascii|stable)["']""", r"""["'](UTF-8|ASCII|STABLE)["']""",
     "equivalent: codec / option names are case-insensitive"),
    ("*", "", r"encoding=\"utf-8\"", r"encoding=None|read_text\(\)|\(\s*\)", UTF8_LOCALE),
    ("*", "", r"ensure_ascii=False", r"ensure_ascii=None", "equivalent: None is falsy, as False"),
    ("*", "", r"dtype=np\.float64|astype\(np\.float64\)", r"dtype=None|astype\(None\)|\(\s*[^=]*\)",
     "equivalent: the values are float64 already (numpy's default) or promoted by the next float operation"),
    ("*", "", r"logger\.(warning|info)\(", r"XX|[A-Z]{6,}", LOG_TEXT),
]


def reason_for(module: str, function: str, removed: str, added: str) -> str | None:
    """The first matching rule's reason, or None."""
    for where, func, before, after, reason in RULES:
        if where not in ("*", module) or (func and not re.search(func, function)):
            continue
        if re.search(before, removed) and re.search(after, added):
            return reason
    return None

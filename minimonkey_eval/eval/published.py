"""Published scores from the two model cards shipped as package data, mapped onto the report's columns.

Data, not code: each card is one `Card` record (file, row-name column, column mapping); each harness model
maps to the card rows that publish it (the model registry's ``ModelSpec.published``). Values keep the paper's units
(MME sum 0-2800, OCRBench 0-1000, everything else percent 0-100); missing cells stay NaN.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.models.registry import get_model


@dataclass(frozen=True)
class Card:
    key: str                     # short id used in ``ModelSpec.published``
    title: str                   # shown in the report's "source" column
    filename: str                # package data file under minimonkey_eval/data/
    columns: tuple[tuple[str, str], ...]  # (card column, report column); card columns not listed are dropped


MINIMONKEY_CARD = Card(
    key="minimonkey",
    title="Mini-Monkey card",
    filename="baselines_minimonkey_card.csv",
    # The Mini-Monkey table uses the report's own column names.
    columns=tuple((c, c) for c in PAPER_COLUMNS if c not in ("MMMU", "MMBench_EN", "MMBench_CN")),
)

MINI_INTERNVL_CARD = Card(
    key="mini_internvl",
    title="Mini-InternVL card",
    filename="baselines_mini_internvl_card.csv",
    columns=(
        ("MMMU_val", "MMMU"),
        ("MathVista_testmini", "MathVista"),
        ("AI2D_test", "AI2D"),
        ("ChartQA_test", "ChartQA"),
        ("DocVQA_test", "DocVQA"),
        ("InfoVQA_test", "InfoVQA"),
        ("OCRBench", "OCRBench"),
        ("MMBench_EN_test", "MMBench_EN"),
        ("MMBench_CN_test", "MMBench_CN"),
        # OpenCompass_avg has no report column.
    ),
)

CARDS: tuple[Card, ...] = (MINIMONKEY_CARD, MINI_INTERNVL_CARD)
_CARD_BY_KEY = {c.key: c for c in CARDS}
# Card columns that are metadata, not scores.
_META_COLUMNS = {"model", "params"}
# Card columns deliberately not reported.
_DROPPED_COLUMNS = {"mini_internvl": {"OpenCompass_avg"}}

# Published rows shown in the paper table: (card key, row name on that card, row label in the report).
PUBLISHED_ROWS: tuple[tuple[str, str, str], ...] = (
    ("minimonkey", "InternVL2-2B", "InternVL2-2B"),
    ("minimonkey", "Mini-Monkey", "Mini-Monkey"),
    ("mini_internvl", "Mini-InternVL2-1B", "Mini-InternVL2-1B"),
    ("mini_internvl", "Mini-InternVL2-2B", "Mini-InternVL2-2B (= InternVL2-2B)"),
    ("mini_internvl", "Mini-InternVL2-4B", "Mini-InternVL2-4B"),
)

def published_config(model: str) -> tuple[bool, bool] | None:
    """The setting (msac, scm) a model's published numbers were obtained with (None: unknown model): a gap for any
    other setting is an ablation effect, not a reproduction gap. From the model registry."""
    try:
        spec = get_model(model)
    except ValueError:
        return None
    return spec.published_msac, spec.published_scm


# Report columns where the published number comes from a different split than the one the harness scores.
SPLIT_NOTES: dict[str, str] = {
    "DocVQA": "published = DocVQA test (server); harness scores DocVQA_VAL",
    "InfoVQA": "published = InfoVQA test (server); harness scores InfoVQA_VAL",
    "MMBench_EN": "published = MMBench-EN test; harness scores MMBench_DEV_EN",
    "MMBench_CN": "published = MMBench-CN test; harness scores MMBench_DEV_CN",
}


def read_card(card: Card | str) -> pd.DataFrame:
    """One card as published: index = row name, columns = report columns (PAPER_COLUMNS order), NaN = not published.

    Raises ValueError when the card has a column that is neither mapped nor deliberately dropped, so a card
    edit cannot silently lose a benchmark.
    """
    card = _CARD_BY_KEY[card] if isinstance(card, str) else card
    text = resources.files("minimonkey_eval").joinpath("data", card.filename).read_text(encoding="utf-8")
    raw = pd.read_csv(io.StringIO(text))
    mapping = dict(card.columns)
    unknown = set(raw.columns) - set(mapping) - _META_COLUMNS - _DROPPED_COLUMNS.get(card.key, set())
    if unknown:
        raise ValueError(f"{card.filename}: unmapped column(s) {sorted(unknown)}")
    bad = set(mapping.values()) - set(PAPER_COLUMNS)
    if bad:
        raise ValueError(f"{card.filename}: mapped to unknown report column(s) {sorted(bad)}")
    out = pd.DataFrame(index=pd.Index(raw["model"].astype(str).str.strip(), name="model"),
                       columns=list(PAPER_COLUMNS), dtype=float)
    for src, dst in mapping.items():
        if src in raw.columns:
            out[dst] = pd.to_numeric(raw[src], errors="coerce").to_numpy(dtype=float)
    return out


def published_rows() -> pd.DataFrame:
    """The published rows of the paper table: columns label, source, then PAPER_COLUMNS."""
    cards = {c.key: read_card(c) for c in CARDS}
    rows = []
    for key, name, label in PUBLISHED_ROWS:
        card = cards[key]
        if name not in card.index:
            continue
        row = {"label": label, "source": f"published ({_CARD_BY_KEY[key].title})"}
        row.update(card.loc[name].to_dict())
        rows.append(row)
    return pd.DataFrame(rows, columns=["label", "source", *PAPER_COLUMNS])


def published_reference(model: str) -> tuple[pd.Series, pd.Series] | None:
    """Published numbers for a harness model: (values, source per column), or None when nothing is published.

    Cards are merged in the registry's ``ModelSpec.published`` priority order; a later card only fills columns the
    earlier left empty.
    """
    try:
        entries = get_model(model).published
    except ValueError:
        return None
    if not entries:
        return None
    values = pd.Series(math.nan, index=list(PAPER_COLUMNS), dtype=float)
    sources = pd.Series("", index=list(PAPER_COLUMNS), dtype=object)
    for key, name in entries:
        card = read_card(key)
        if name not in card.index:
            continue
        row = card.loc[name]
        for col in PAPER_COLUMNS:
            if math.isnan(values[col]) and not math.isnan(row[col]):
                values[col] = row[col]
                sources[col] = f"{_CARD_BY_KEY[key].title}: {name}"
    if values.isna().all():
        return None
    return values, sources

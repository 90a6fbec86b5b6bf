"""Published scores from the two model cards shipped as package data, mapped onto the report's columns.

Data, not code: each card is one `Card` record (file, row-name column, column mapping); each harness model
maps to the card rows that publish it (`MODEL_PUBLISHED`). Values keep the paper's units
(MME sum 0-2800, OCRBench 0-1000, everything else percent 0-100); missing cells stay NaN.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from minimonkey_eval.datasets.registry import PAPER_COLUMNS


@dataclass(frozen=True)
class Card:
    key: str                     # short id used in `MODEL_PUBLISHED`
    title: str                   # shown in the report's "source" column
    filename: str                # package data file under minimonkey_eval/data/
    columns: tuple[tuple[str, str], ...]  # (card column, report column); card columns not listed are dropped
    origin: str = ""             # where the card's numbers were copied from


MINIMONKEY_CARD = Card(
    key="minimonkey",
    title="Mini-Monkey card",
    filename="baselines_minimonkey_card.csv",
    # The Mini-Monkey table uses the report's own column names.
    columns=tuple((c, c) for c in PAPER_COLUMNS if c not in ("MMMU", "MMBench_EN", "MMBench_CN")),
    origin="Mini-Monkey README table (Yuliang-Liu/Monkey project/mini_monkey, = arXiv 2408.02034 v1); "
           "params = the card's own 'params' column",
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
    origin="Mini-InternVL2 / InternVL2 model-card comparison table (OpenGVLab); its columns are test splits "
           "(MMMU val, MathVista testmini) and OpenCompass averages; no params column",
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

# Harness model (run.json "model") -> card rows publishing it, in priority order (first non-empty value wins).
MODEL_PUBLISHED: dict[str, tuple[tuple[str, str], ...]] = {
    "MiniMonkey": (("minimonkey", "Mini-Monkey"),),
    "InternVL2-2B": (("minimonkey", "InternVL2-2B"), ("mini_internvl", "Mini-InternVL2-2B")),
    "Mini-InternVL2-1B": (("mini_internvl", "Mini-InternVL2-1B"),),
    "Mini-InternVL2-4B": (("mini_internvl", "Mini-InternVL2-4B"),),
}

# The configuration the published numbers were obtained with (msac, scm): a gap for any other
# configuration is an ablation effect, not a reproduction gap.
PUBLISHED_CONFIG: dict[str, tuple[bool, bool]] = {
    "MiniMonkey": (True, False),
    "InternVL2-2B": (False, False),
    "Mini-InternVL2-1B": (False, False),
    "Mini-InternVL2-4B": (False, False),
}

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

    Cards are merged in `MODEL_PUBLISHED` priority order; a later card only fills columns the earlier left empty.
    """
    entries = MODEL_PUBLISHED.get(model)
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


# ----------------------------------------------------------------------------------------------- the whole landscape
# Parameter counts (billions) of rows the card gives none for: (card key, row name) -> (params, where it comes from).
# Mini-Monkey card rows read theirs from the card's 'params' column; None = not known (such rows are not plotted).
PARAMS: dict[tuple[str, str], tuple[float | None, str]] = {
    ("mini_internvl", "GPT-4V (20240409)"): (None, "not disclosed (proprietary)"),
    ("mini_internvl", "Gemini Pro 1.5"): (None, "not disclosed (proprietary)"),
    ("mini_internvl", "Claude3.5-Sonnet"): (None, "not disclosed (proprietary)"),
    ("mini_internvl", "GPT-4o (20240513)"): (None, "not disclosed (proprietary)"),
    ("mini_internvl", "Cambrian-1"): (None, "size not stated on the card"),
    ("mini_internvl", "LLaVA-NeXT Qwen1.5"): (None, "size not stated on the card"),
    ("mini_internvl", "DeepSeek-VL-1.3B"): (1.7, "= the Mini-Monkey card's DeepSeek-VL (params column 1.7B; the name's "
                                                "1.3B is its language model)"),
    ("mini_internvl", "MiniCPM-V 2.0"): (2.8, "= the Mini-Monkey card's MiniCPM-V-2 (params column)"),
    ("mini_internvl", "Qwen2-VL-2B"): (2.0, "model name"),
    ("mini_internvl", "InternVL2-Llama3-76B"): (76.0, "model name"),
    # Nominal sizes, as the Mini-Monkey card gives them (its InternVL2-2B is '2B'); the OpenGVLab model cards
    # give 0.9B / 2.2B / 4.15B exactly (design/real-configs.md S8).
    ("mini_internvl", "Mini-InternVL2-1B"): (1.0, "model name (OpenGVLab/InternVL2-1B card: 0.9B)"),
    ("mini_internvl", "Mini-InternVL2-2B"): (2.0, "model name (OpenGVLab/InternVL2-2B card: 2.2B)"),
    ("mini_internvl", "Mini-InternVL2-4B"): (4.0, "model name (OpenGVLab/InternVL2-4B card: 4.15B)"),
}
# Rows of the second card that are the same model as a row of the first: counted once when ranking.
SAME_MODEL: dict[tuple[str, str], tuple[str, str]] = {
    ("mini_internvl", "Mini-InternVL2-2B"): ("minimonkey", "InternVL2-2B"),
    ("mini_internvl", "MiniCPM-V 2.0"): ("minimonkey", "MiniCPM-V-2"),
    ("mini_internvl", "DeepSeek-VL-1.3B"): ("minimonkey", "DeepSeek-VL"),
}
# VLMEvalKit model names (``vlmeval:NAME`` runs) -> the card rows publishing that model.
VLMEVAL_PUBLISHED: dict[str, tuple[tuple[str, str], ...]] = {
    "InternVL2-1B": (("mini_internvl", "Mini-InternVL2-1B"),),
    "InternVL2-2B": (("minimonkey", "InternVL2-2B"), ("mini_internvl", "Mini-InternVL2-2B")),
    "InternVL2-4B": (("mini_internvl", "Mini-InternVL2-4B"),),
    "MiniMonkey": (("minimonkey", "Mini-Monkey"),),
    "MiniCPM-V-2": (("minimonkey", "MiniCPM-V-2"), ("mini_internvl", "MiniCPM-V 2.0")),
    "Qwen2-VL-2B-Instruct": (("mini_internvl", "Qwen2-VL-2B"),),
    "deepseek_vl_1.3b": (("minimonkey", "DeepSeek-VL"), ("mini_internvl", "DeepSeek-VL-1.3B")),
}
LANDSCAPE_COLUMNS = ("key", "card", "name", "label", "source", "params_b", "params_source", "same_as")


def _parse_params(text) -> float | None:
    """'2.2B' -> 2.2 (billions); anything else -> None."""
    t = str(text).strip().upper()
    try:
        return float(t[:-1]) if t.endswith("B") else float(t)
    except ValueError:
        return None


def all_published() -> pd.DataFrame:
    """Every row of both cards, in card order: LANDSCAPE_COLUMNS, then PAPER_COLUMNS.

    ``key`` = 'card:row name' (unique); ``label`` = the row name, with its size when a card repeats a name
    (Mini-Gemini 35B / 2.2B); ``same_as`` = the key of the same model on the other card ('' if none).
    """
    rows = []
    for card in CARDS:
        text = resources.files("minimonkey_eval").joinpath("data", card.filename).read_text(encoding="utf-8")
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        scores = read_card(card)
        names = raw["model"].str.strip().tolist()
        for pos, name in enumerate(names):
            repeated = names.count(name) > 1
            params, params_source = None, ""
            if "params" in raw.columns and raw["params"].iloc[pos].strip():
                params, params_source = _parse_params(raw["params"].iloc[pos]), f"{card.title}: params column"
            elif (card.key, name) in PARAMS:
                params, params_source = PARAMS[(card.key, name)]
            label = f"{name} {raw['params'].iloc[pos].strip()}" if repeated and "params" in raw.columns else name
            key = f"{card.key}:{label}"
            same = SAME_MODEL.get((card.key, name))
            rows.append({"key": key, "card": card.key, "name": name, "label": label,
                         "source": f"published ({card.title})",
                         "params_b": math.nan if params is None else params, "params_source": params_source,
                         "same_as": f"{same[0]}:{same[1]}" if same else "",
                         **scores.iloc[pos].to_dict()})
    df = pd.DataFrame(rows, columns=[*LANDSCAPE_COLUMNS, *PAPER_COLUMNS])
    df[["params_b", *PAPER_COLUMNS]] = df[["params_b", *PAPER_COLUMNS]].astype(float)
    return df


def published_keys(model: str) -> list[str]:
    """Landscape keys of the card rows publishing a harness model or a ``vlmeval:NAME`` model ([] if none)."""
    if model.startswith("vlmeval:"):
        entries = VLMEVAL_PUBLISHED.get(model[len("vlmeval:"):], ())
    else:
        entries = MODEL_PUBLISHED.get(model, ())
    return [f"{card}:{name}" for card, name in entries]

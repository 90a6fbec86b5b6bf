"""Published scores from the two model cards shipped as package data, mapped onto the report's columns.

Data, not code: each card is one `Card` record (file, row-name column, column mapping); each harness model
maps to the card rows that publish it (the model registry's ``ModelSpec.published``). Values keep the paper's units
(MME sum 0-2800, OCRBench 0-1000, everything else percent 0-100); missing cells stay NaN.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from minimonkey_eval.datasets.registry import BENCHMARKS, PAPER_COLUMNS
from minimonkey_eval.models.registry import MODELS as MODEL_SPECS
from minimonkey_eval.models.registry import PAIR_NEW, get_model


@dataclass(frozen=True)
class Card:
    key: str                     # short id used in ``ModelSpec.published``
    filename: str                # package data file under minimonkey_eval/data/
    columns: tuple[tuple[str, str], ...]  # (card column, report column); card columns not listed are dropped
    name: str = ""               # the card's name, when it is not a registered model's card
    model: str | None = None     # the registered model whose card this is (its label names the card)
    about: str = ""              # where the card's numbers were copied from ('{label}': the model's label)

    @property
    def title(self) -> str:
        """Shown in the report's "source" column: '<model label> card' (read from the model registry now)."""
        return f"{get_model(self.model).label} card" if self.model else self.name

    @property
    def origin(self) -> str:
        return self.about.format(label=get_model(self.model).label if self.model else self.name)


MINIMONKEY_CARD = Card(
    key="minimonkey",
    filename="baselines_minimonkey_card.csv",
    # The Mini-Monkey table uses the report's own column names.
    columns=tuple((c, c) for c in PAPER_COLUMNS if c not in ("MMMU", "MMBench_EN", "MMBench_CN")),
    model=PAIR_NEW,
    about="{label} README table (Yuliang-Liu/Monkey project/mini_monkey, = arXiv 2408.02034 v1); "
          "params = the card's own 'params' column",
)

MINI_INTERNVL_CARD = Card(
    key="mini_internvl",
    name="Mini-InternVL card",
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
    about="Mini-InternVL2 / InternVL2 model-card comparison table (OpenGVLab); its columns are test splits "
          "(MMMU val, MathVista testmini) and OpenCompass averages; no params column",
)

CARDS: tuple[Card, ...] = (MINIMONKEY_CARD, MINI_INTERNVL_CARD)
_CARD_BY_KEY = {c.key: c for c in CARDS}
# Card columns that are metadata, not scores.
_META_COLUMNS = {"model", "params"}
# Card columns deliberately not reported.
_DROPPED_COLUMNS = {"mini_internvl": {"OpenCompass_avg"}}


def paper_table_rows() -> list[tuple[str, str, str]]:
    """Published rows shown in the paper table: (card key, row name on that card, row label in the report) for every
    card row that publishes a registered model (``ModelSpec.published``), cards in ``CARDS`` order, rows in card
    order. A row named otherwise than the model's label says which model it is (``'X (= InternVL2-2B)'``)."""
    owner: dict[tuple[str, str], str] = {}
    for spec in MODEL_SPECS.values():
        for entry in spec.published:
            owner.setdefault(entry, spec.label)
    rows = []
    for card in CARDS:
        for name in read_card(card).index:
            label = owner.get((card.key, name))
            if label is not None:
                rows.append((card.key, name, name if name == label else f"{name} (= {label})"))
    return rows


def published_config(model: str) -> tuple[bool, bool] | None:
    """The setting (msac, scm) a model's published numbers were obtained with (None: unknown model): a gap for any
    other setting is an ablation effect, not a reproduction gap. From the model registry."""
    try:
        spec = get_model(model)
    except ValueError:
        return None
    return spec.published_msac, spec.published_scm


# Report columns where the published number comes from a different split than the one the harness scores
# (the registry's ``Benchmark.split_note``).
SPLIT_NOTES: dict[str, str] = {b.column: b.split_note for b in BENCHMARKS if b.split_note}


def read_card(card: Card | str) -> pd.DataFrame:
    """One card as published: index = row name, columns = report columns (PAPER_COLUMNS order), NaN = not published.

    Raises ValueError when the card has a column that is neither mapped nor deliberately dropped, so a card
    edit cannot silently lose a benchmark. Parsed once per process; every call gets its own copy.
    """
    return _read_card(_CARD_BY_KEY[card] if isinstance(card, str) else card).copy()


@functools.lru_cache(maxsize=None)
def _read_card(card: Card) -> pd.DataFrame:
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
    for key, name, label in paper_table_rows():
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


# ----------------------------------------------------------------------------------------------- the whole landscape
# Data files (package data, beside the cards): parameter counts of the rows a card gives none for, with where each
# count comes from, and which rows are the same model on both cards (counted once when ranking); the VLMEvalKit model
# names (``vlmeval:NAME`` runs) whose card rows are known.
EXTRA_FILE = "published_rows_extra.csv"
VLMEVAL_FILE = "vlmeval_published.csv"
LANDSCAPE_COLUMNS = ("key", "card", "name", "label", "source", "params_b", "params_source", "same_as")


def _parse_params(text) -> float | None:
    """'2.2B' -> 2.2 (billions); anything else -> None."""
    t = str(text).strip().upper()
    try:
        return float(t[:-1]) if t.endswith("B") else float(t)
    except ValueError:
        return None


def _data_csv(filename: str) -> pd.DataFrame:
    text = resources.files("minimonkey_eval").joinpath("data", filename).read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def row_extras() -> dict[tuple[str, str], tuple[float | None, str, str]]:
    """(card key, row name) -> (params in billions or None, where the count comes from, same-model key or '')."""
    out = {}
    for r in _data_csv(EXTRA_FILE).itertuples(index=False):
        same = f"{r.same_as_card}:{r.same_as_model}" if r.same_as_card else ""
        out[(r.card, r.model)] = (_parse_params(r.params_b) if r.params_b else None, r.params_source, same)
    return out


def all_published() -> pd.DataFrame:
    """Every row of both cards, in card order: LANDSCAPE_COLUMNS, then PAPER_COLUMNS.

    ``key`` = 'card:row name' (unique); ``label`` = the row name, with its size when a card repeats a name
    (Mini-Gemini 35B / 2.2B); ``same_as`` = the key of the same model on the other card ('' if none).
    The packaged CSVs are parsed once per process; every call gets its own copy.
    """
    return _all_published().copy()


@functools.lru_cache(maxsize=1)
def _all_published() -> pd.DataFrame:
    rows = []
    extras = row_extras()
    for card in CARDS:
        text = resources.files("minimonkey_eval").joinpath("data", card.filename).read_text(encoding="utf-8")
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        scores = read_card(card)
        names = raw["model"].str.strip().tolist()
        for pos, name in enumerate(names):
            repeated = names.count(name) > 1
            params, params_source, same = extras.get((card.key, name), (None, "", ""))
            if "params" in raw.columns and raw["params"].iloc[pos].strip():
                params, params_source = _parse_params(raw["params"].iloc[pos]), f"{card.title}: params column"
            label = f"{name} {raw['params'].iloc[pos].strip()}" if repeated and "params" in raw.columns else name
            key = f"{card.key}:{label}"
            rows.append({"key": key, "card": card.key, "name": name, "label": label,
                         "source": f"published ({card.title})",
                         "params_b": math.nan if params is None else params, "params_source": params_source,
                         "same_as": same,
                         **scores.iloc[pos].to_dict()})
    df = pd.DataFrame(rows, columns=[*LANDSCAPE_COLUMNS, *PAPER_COLUMNS])
    df[["params_b", *PAPER_COLUMNS]] = df[["params_b", *PAPER_COLUMNS]].astype(float)
    return df


def published_keys(model: str) -> list[str]:
    """Landscape keys of the card rows publishing a harness model or a ``vlmeval:NAME`` model ([] if none)."""
    if model.startswith("vlmeval:"):
        name, table = model[len("vlmeval:"):], _data_csv(VLMEVAL_FILE)
        entries = [(c, m) for n, c, m in zip(table["vlmeval_name"], table["card"], table["model"]) if n == name]
    else:
        try:
            entries = get_model(model).published
        except ValueError:
            entries = ()
    return [f"{card}:{name}" for card, name in entries]

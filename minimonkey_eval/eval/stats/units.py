"""Resampling units: each benchmark's per-sample scores grouped so that its headline is recomputed exactly.

What a unit is, which per-sample file of the run folder holds its scores and which statistic turns summed unit
components into the headline is the benchmark's ``Resampling`` rule (``datasets.registry.resampling``, from the
``Benchmark`` record); this module builds the units and implements the statistics:

* ``mean`` / ``sum``: one unit per question (per circular group for MMBench/CCBench: vlmeval's ``_result``
  file has one ``hit`` per group); components (score, 1) or (score,).
* ``mme``: one unit per (category, image_path) pair, stratified by category; components (right answers,
  questions, both right, 1); headline = Σ_category acc + acc+ (vlmeval's MME_rating).
* ``hallusion``: one unit per question set (l2-category, set id), holding its figure groups (fAcc) and question
  groups (qAcc); headline = mean(aAcc, fAcc, qAcc) (vlmeval's Hallusion_rating groups by these keys).
* ``pope_f1``: one unit per question, counted once per POPE split it is listed in (vlmeval explodes the
  comma-separated category); components (TP, FP, FN); headline = F1 of the summed counts.

Scores are never recomputed here: they are vlmeval's own per-sample outputs (``<model>_<DATASET>_auxmatch``
for Y/N, ``..._result`` for MCQ) or the runner's ``<DATASET>_samples.csv`` (VQA, OCRBench, MathVista), which
holds the scores scoring.py took from vlmeval's metric functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from minimonkey_eval.datasets.indexes import index_key
from minimonkey_eval.datasets.mme import MME_CATEGORIES, MME_PERCEPTION
from minimonkey_eval.datasets.registry import CIRCULAR_OFFSET, Resampling, Statistic, UnitSource, resampling
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import RunRecordError, read_run_record
from minimonkey_eval.eval.samples_sheet import read_samples_csv


class UnitsError(UserFacingError):
    """A run folder lacks what a benchmark's units need (names the file)."""


def rule_for(dataset: str) -> Resampling:
    """The benchmark's resampling rule (``registry.resampling``); a submission-only benchmark is a ``UnitsError``."""
    try:
        return resampling(dataset)
    except ValueError as exc:
        raise UnitsError(str(exc)) from None


# ----------------------------------------------------------------------------------------------- units
@dataclass
class Units:
    dataset: str
    ids: np.ndarray                  # (n,) unit ids (str), in a fixed order
    comp: np.ndarray                 # (n, k) float64 components summed by the statistic
    strata: np.ndarray               # (n,) int stratum of each unit (resampled within)
    strata_names: tuple[str, ...]
    rule: Resampling
    notes: list[str] = field(default_factory=list)

    @property
    def n_strata(self) -> int:
        return len(self.strata_names)

    def min_stratum(self) -> int:
        """Units in the smallest stratum (0 when there are none)."""
        return int(np.bincount(self.strata, minlength=self.n_strata).min()) if len(self.ids) else 0

    def sums(self) -> np.ndarray:
        """(n_strata, k) component sums over all units (1-D pairwise sums, like vlmeval's np.mean)."""
        out = np.zeros((self.n_strata, self.comp.shape[1]))
        for s in range(self.n_strata):
            rows = self.comp[self.strata == s]
            for j in range(rows.shape[1]):
                out[s, j] = np.sum(np.ascontiguousarray(rows[:, j]))
        return out

    def statistic(self, sums: np.ndarray) -> np.ndarray:
        """Headline (paper units) from component sums of shape (..., n_strata, k)."""
        return STATISTICS[self.rule.statistic](np.asarray(sums, dtype=np.float64), self)

    def headline(self) -> float:
        return float(self.statistic(self.sums()))

    def scores(self) -> np.ndarray:
        """Per-unit score for 'mean' / 'sum' units (NaN for the grouped statistics)."""
        if self.rule.statistic is Statistic.MEAN:
            return self.comp[:, 0] / self.comp[:, 1]
        if self.rule.statistic is Statistic.SUM:
            return self.comp[:, 0]
        return np.full(len(self.ids), np.nan)

    @property
    def binary(self) -> bool:
        """Every unit scores 0 or 1 and the headline is their mean or sum (McNemar applies)."""
        s = self.scores()
        return self.rule.statistic in (Statistic.MEAN, Statistic.SUM) and bool(np.all((s == 0) | (s == 1)))

    def per_unit(self) -> float:
        """Paper units per unit of mean score: 100 for percent, n for a points sum (OCRBench)."""
        return float(len(self.ids)) if self.rule.statistic is Statistic.SUM else self.rule.scale

    def take(self, ids) -> Units:
        pos = {u: i for i, u in enumerate(self.ids)}
        idx = np.array([pos[u] for u in ids], dtype=np.int64)
        return replace(self, ids=self.ids[idx], comp=self.comp[idx], strata=self.strata[idx], notes=list(self.notes))


def _mean(s: np.ndarray, u: Units) -> np.ndarray:
    return s[..., 0, 0] / s[..., 0, 1] * u.rule.scale


def _sum(s: np.ndarray, u: Units) -> np.ndarray:
    return s[..., 0, 0] * u.rule.scale


def _mme(s: np.ndarray, u: Units) -> np.ndarray:
    cat = s[..., 0] / s[..., 1] * 100 + s[..., 2] / s[..., 3] * 100       # (..., n_strata): acc + acc+
    perception = reasoning = 0
    for k, name in enumerate(u.strata_names):                        # vlmeval's order: perception, reasoning
        if name in MME_PERCEPTION:
            perception = perception + cat[..., k]
        else:
            reasoning = reasoning + cat[..., k]
    return perception + reasoning


def _hallusion(s: np.ndarray, u: Units) -> np.ndarray:
    a = s[..., 0, 0] / s[..., 0, 1] * 100
    f = s[..., 0, 2] / s[..., 0, 3] * 100
    q = s[..., 0, 4] / s[..., 0, 5] * 100
    return (a + f + q) / 3


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), 0.0)


def _pope_f1(s: np.ndarray, u: Units) -> np.ndarray:
    tp, fp, fn = s[..., 0, 0], s[..., 0, 1], s[..., 0, 2]
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    return _safe_div(2 * (precision * recall), precision + recall) * 100


STATISTICS = {Statistic.MEAN: _mean, Statistic.SUM: _sum, Statistic.MME: _mme, Statistic.HALLUSION: _hallusion,
              Statistic.POPE_F1: _pope_f1}


# ----------------------------------------------------------------------------------------------- builders
def _plain(rule: Resampling, rows: pd.DataFrame) -> Units:
    ids = rows["index"].to_numpy(dtype=object)
    score = rows["score"].to_numpy(dtype=np.float64)
    comp = np.stack([score, np.ones_like(score)], axis=1) if rule.statistic is Statistic.MEAN else score[:, None]
    return Units(rule.dataset, ids, comp, np.zeros(len(ids), dtype=np.int64), ("all",), rule)


def _mme_units(rule: Resampling, rows: pd.DataFrame) -> Units:
    order = list(MME_CATEGORIES)
    rows = rows[rows["category"].isin(order)]
    groups: dict[tuple[str, str], list[float]] = {}
    for cat, path, score in zip(rows["category"], rows["image_path"], rows["score"]):
        groups.setdefault((cat, str(path)), []).append(float(score))
    present = [c for c in order if any(k[0] == c for k in groups)]
    notes = []
    if any(len(v) != 2 for v in groups.values()):
        notes.append("some MME images do not have exactly two questions (acc+ uses the first two / the only one)")
    keys = sorted(groups, key=lambda k: (present.index(k[0]), k[1]))
    comp = np.array([[sum(groups[k]), len(groups[k]), groups[k][0] * (groups[k][1] if len(groups[k]) > 1 else 1), 1]
                     for k in keys], dtype=np.float64).reshape(-1, 4)
    ids = np.array([f"{c}|{p}" for c, p in keys], dtype=object)
    strata = np.array([present.index(c) for c, _ in keys], dtype=np.int64)
    return Units(rule.dataset, ids, comp, strata, tuple(present), rule, notes)


def _hallusion_units(rule: Resampling, rows: pd.DataFrame) -> Units:
    parts = [str(i).split("_") for i in rows["index"]]
    if any(len(p) < 6 for p in parts):
        bad = next(str(i) for i, p in zip(rows["index"], parts) if len(p) < 6)
        raise UnitsError(f"HallusionBench: index {bad!r} is not <category>_<l2>_<input>_<set>_<figure>_<question>")
    frame = pd.DataFrame({"l2": rows["l2-category"].astype(str).to_numpy(), "set": [p[3] for p in parts],
                          "figure": [p[4] for p in parts], "question": [p[5] for p in parts],
                          "score": rows["score"].astype(float).to_numpy()})
    frame["unit"] = frame["l2"] + "|" + frame["set"]
    fig = frame.groupby(["unit", "figure"], sort=False)["score"].agg(lambda x: float(np.all(x)))
    que = frame.groupby(["unit", "question"], sort=False)["score"].agg(lambda x: float(np.all(x)))
    per = frame.groupby("unit", sort=True)["score"].agg(["sum", "count"])
    f_right, f_n = fig.groupby(level=0).sum(), fig.groupby(level=0).count()
    q_right, q_n = que.groupby(level=0).sum(), que.groupby(level=0).count()
    ids = per.index.to_numpy(dtype=object)
    comp = np.stack([per["sum"].to_numpy(float), per["count"].to_numpy(float), f_right[ids].to_numpy(float),
                     f_n[ids].to_numpy(float), q_right[ids].to_numpy(float), q_n[ids].to_numpy(float)], axis=1)
    return Units(rule.dataset, ids, comp, np.zeros(len(ids), dtype=np.int64), ("all",), rule)


def _pope_units(rule: Resampling, rows: pd.DataFrame) -> Units:
    cats = rows["category"]
    mult = np.array([1.0 if (isinstance(c, float) and math.isnan(c)) else float(len(str(c).split(",")))
                     for c in cats])
    truth = (rows["answer"].astype(str) == "Yes").to_numpy()
    pred = (rows["extracted"].astype(str) == "Yes").to_numpy()
    comp = np.stack([mult * (truth & pred), mult * (~truth & pred), mult * (truth & ~pred)], axis=1)
    ids = rows["index"].to_numpy(dtype=object)
    return Units(rule.dataset, ids, comp.astype(np.float64), np.zeros(len(ids), dtype=np.int64), ("all",), rule)


BUILDERS = {Statistic.MEAN: _plain, Statistic.SUM: _plain, Statistic.MME: _mme_units,
            Statistic.HALLUSION: _hallusion_units, Statistic.POPE_F1: _pope_units}


def units_from_rows(dataset: str, rows: pd.DataFrame) -> Units:
    """Units from per-row data (column 'index' + 'score' + what the statistic reads: category / image_path
    for MME, l2-category for HallusionBench, category / answer / extracted for POPE). Pure: no files."""
    rule = rule_for(dataset)
    rows = rows.reset_index(drop=True)
    if rows["score"].isna().any():
        i = rows.loc[rows["score"].isna(), "index"].iloc[0]
        raise UnitsError(f"{rule.dataset}: sample {i!r} has no score; rescore the run")
    return BUILDERS[rule.statistic](rule, rows)


# ----------------------------------------------------------------------------------------------- run folders
def _read_table(path: Path) -> pd.DataFrame:
    """A vlmeval per-sample file (cached on path + mtime: the report reads each one for several pairs)."""
    st = path.stat()
    return _read_table_cached(str(path), st.st_mtime_ns, st.st_size).copy()


@lru_cache(maxsize=64)
def _read_table_cached(name: str, mtime_ns: int, size: int) -> pd.DataFrame:
    path = Path(name)
    if path.suffix == ".xlsx":
        return pd.read_excel(path)
    if path.suffix == ".tsv":
        return pd.read_csv(path, sep="\t")
    if path.suffix == ".json":
        return pd.read_json(path)
    return pd.read_csv(path)


def prediction_prefix(run_dir: Path, model: str) -> str:
    """The stem vlmeval's files carry: the run record's ``prefix`` (runs of ``vlmeval:NAME`` wrappers use the run
    name, a colon being no file name) or else the model name."""
    try:
        record = read_run_record(run_dir, missing_ok=True)
    except RunRecordError:
        return model
    return record.prefix if record is not None and record.prediction_prefix else model


def vlmeval_file(run_dir: Path, model: str, dataset: str, suffix: str) -> Path:
    """The newest ``<model>_<dataset><suffix>.{xlsx,tsv,json}`` vlmeval wrote into the run folder (suffix may
    hold a ``*``: MCQ results are ``_<judge>_result``)."""
    pattern = f"{prediction_prefix(run_dir, model)}_{dataset}{suffix}"
    hits = [p for ext in ("xlsx", "tsv", "json") for p in Path(run_dir).glob(f"{pattern}.{ext}")]
    if not hits:
        raise UnitsError(f"{dataset}: {Path(run_dir) / pattern}.xlsx not found (vlmeval's per-sample output); "
                         "rerun the same `minimonkey-eval run` command to rescore")
    return max(hits, key=lambda p: p.stat().st_mtime_ns)


def read_samples(run_dir: Path, dataset: str) -> pd.DataFrame:
    """``<DATASET>_samples.csv`` as written by the runner, through its one typed reader
    (``samples_sheet.read_samples_csv``: text columns as str, score float, failed bool)."""
    path = RunLayout(Path(run_dir)).samples_csv(dataset)
    if not path.exists():
        raise UnitsError(f"{dataset}: {path} not found; run the dataset first")
    return read_samples_csv(path)


def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["index"] = [index_key(i) for i in df["index"]]
    return df


def unit_rows(run_dir: Path, dataset: str, model: str) -> pd.DataFrame:
    """The per-row frame `units_from_rows` needs, read from the run folder (see the module docstring)."""
    rule = rule_for(dataset)
    if rule.source is UnitSource.SAMPLES:
        return _keyed(read_samples(run_dir, dataset)[["index", "score"]])
    if rule.source is UnitSource.AUXMATCH:
        df = _keyed(_read_table(vlmeval_file(run_dir, model, dataset, "_auxmatch")))
        df["score"] = df["score"].map(lambda v: float(str(v).strip().lower() in ("true", "1", "1.0")))
        return df
    path = vlmeval_file(run_dir, model, dataset, "_*_result")
    df = _keyed(_read_table(path)).rename(columns={"hit": "score"})
    splits = df["split"].astype(str) if "split" in df.columns else pd.Series("none", index=df.index)
    if rule.split is not None:
        df = df[splits == rule.split]
        if df.empty:
            raise UnitsError(f"{path}: no row of the {rule.split} split the headline reads (--limit took only "
                             f"{', '.join(sorted(set(splits))) or 'no'} rows?)")
    elif splits.nunique() > 1:
        raise UnitsError(f"{path}: several splits ({', '.join(sorted(set(splits)))}); the headline reads one")
    return df


def circular_main(index: str) -> bool:
    """False for a circular rotation row (index >= 1e6): its score is its group's."""
    try:
        return int(float(index)) < CIRCULAR_OFFSET
    except ValueError:
        return True


def load_units(run_dir: Path, dataset: str, model: str) -> Units:
    return units_from_rows(dataset, unit_rows(Path(run_dir), rule_for(dataset).dataset, model))

"""Report on synthetic run folders: every table cell, delta and flag is what the inputs imply; outputs open."""
from __future__ import annotations

import csv
import json
import math
import os
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.build import (
    DEMO_TAG,
    SHEET_NAMES,
    ReportPaths,
    build_report,
    collect_report,
    resolve_tolerance,
)

NaN = math.nan

# --------------------------------------------------------------------------------------------- published cards
# Published numbers, written out by hand from the two shipped cards (family card columns mapped by hand).
PUB_INTERNVL2_2B = dict(MME=1876.8, RealWorldQA=57.3, AI2D=74.1, CCBench=74.7, SEEDBench_IMG=70.9, HallusionBench=37.9,
                        POPE=85.2, MathVista=46.3, DocVQA=86.9, ChartQA=76.2, InfoVQA=58.9, TextVQA=73.4, OCRBench=784)
PUB_MINIMONKEY = dict(MME=1881.9, RealWorldQA=57.5, AI2D=74.7, CCBench=75.5, SEEDBench_IMG=71.3, HallusionBench=38.7,
                      POPE=86.7, MathVista=47.3, DocVQA=87.4, ChartQA=76.5, InfoVQA=60.1, TextVQA=75.7, OCRBench=802)
PUB_FAMILY = {  # MMMU_val, MathVista_testmini, AI2D_test, ChartQA_test, DocVQA_test, InfoVQA_test, OCRBench, MMB EN/CN
    "Mini-InternVL2-1B": dict(MMMU=36.7, MathVista=37.7, AI2D=64.1, ChartQA=72.9, DocVQA=81.7, InfoVQA=50.9,
                              OCRBench=754, MMBench_EN=65.4, MMBench_CN=60.7),
    "Mini-InternVL2-2B (= InternVL2-2B)": dict(MMMU=36.3, MathVista=46.3, AI2D=74.1, ChartQA=76.2, DocVQA=86.9,
                                               InfoVQA=58.9, OCRBench=784, MMBench_EN=73.2, MMBench_CN=70.9),
    "Mini-InternVL2-4B": dict(MMMU=48.3, MathVista=58.6, AI2D=78.9, ChartQA=81.5, DocVQA=89.2, InfoVQA=67.0,
                              OCRBench=788, MMBench_EN=78.6, MMBench_CN=73.9),
}

# --------------------------------------------------------------------------------------------- synthetic runs
# summary.csv values; missing key = empty cell (not run).
IVL = dict(MME=1873.0, RealWorldQA=57.9, AI2D=74.6, SEEDBench_IMG=70.9, HallusionBench=37.0, POPE=85.0,
           DocVQA=88.0, ChartQA=76.0, InfoVQA=59.0, TextVQA=73.0, OCRBench=790, MMMU=35.0, MMBench_EN=74.0)
MK = dict(MME=1886.0, RealWorldQA=57.5, AI2D=75.0, CCBench=76.5, HallusionBench=39.0, POPE=86.0,
          DocVQA=87.5, ChartQA=77.0, InfoVQA=60.0, OCRBench=809, MMMU=37.0, MMBench_EN=75.0)
MK_TEXTVQA_FROM_SCORE_CSV = 76.0  # summary.csv leaves TextVQA empty; TextVQA_VAL_score.csv has the headline
MK_OLD = dict(MME=1500.0, RealWorldQA=10.0, OCRBench=100)  # older Mini-Monkey run: must not be picked
IVL_MSAC_DEMO = dict(MME=1000.0, RealWorldQA=30.0, AI2D=20.0, OCRBench=123)

# Expected measured Mini-Monkey - InternVL2-2B (NaN where either side is missing).
EXP_DELTA = dict(MME=13.0, RealWorldQA=-0.4, AI2D=0.4, CCBench=NaN, SEEDBench_IMG=NaN, HallusionBench=2.0, POPE=1.0,
                 MathVista=NaN, DocVQA=-0.5, ChartQA=1.0, InfoVQA=1.0, TextVQA=3.0, OCRBench=19.0, MMMU=2.0,
                 MMBench_EN=1.0, MMBench_CN=NaN)
EXP_PUB_DELTA = dict(MME=5.1, RealWorldQA=0.2, AI2D=0.6, CCBench=0.8, SEEDBench_IMG=0.4, HallusionBench=0.8, POPE=1.5,
                     MathVista=1.0, DocVQA=0.5, ChartQA=0.3, InfoVQA=1.2, TextVQA=2.3, OCRBench=18.0, MMMU=NaN,
                     MMBench_EN=NaN, MMBench_CN=NaN)
EXP_MSAC_DELTA = dict(MME=-873.0, RealWorldQA=-27.9, AI2D=-54.6, OCRBench=-667.0)  # demo(+MSAC) - ivl; rest NaN
# Expected reproduction gaps (measured - published) and flags (|gap| > 0.5; MME, OCRBench > 5).
EXP_GAP_IVL = dict(MME=-3.8, RealWorldQA=0.6, AI2D=0.5, CCBench=NaN, SEEDBench_IMG=0.0, HallusionBench=-0.9,
                   POPE=-0.2, MathVista=NaN, DocVQA=1.1, ChartQA=-0.2, InfoVQA=0.1, TextVQA=-0.4, OCRBench=6.0,
                   MMMU=-1.3, MMBench_EN=0.8, MMBench_CN=NaN)
EXP_FLAG_IVL = {"RealWorldQA", "HallusionBench", "DocVQA", "OCRBench", "MMMU", "MMBench_EN"}
EXP_GAP_MK = dict(MME=4.1, RealWorldQA=0.0, AI2D=0.3, CCBench=1.0, SEEDBench_IMG=NaN, HallusionBench=0.3, POPE=-0.7,
                  MathVista=NaN, DocVQA=0.1, ChartQA=0.5, InfoVQA=-0.1, TextVQA=0.3, OCRBench=7.0, MMMU=NaN,
                  MMBench_EN=NaN, MMBench_CN=NaN)
EXP_FLAG_MK = {"CCBench", "POPE", "OCRBench"}

# Per-sample MME: index -> (score, failed) per run.
MK_MME_SAMPLES = {"1": (1.0, False), "2": (0.0, False), "3": (1.0, False), "4": (NaN, True), "5": (NaN, False),
                  "10": (1.0, False)}
IVL_MME_SAMPLES = {"1": (1.0, False), "2": (1.0, False), "3": (0.0, False), "4": (1.0, False), "5": (0.0, False),
                   "10": (0.4, False)}
# -> 2: only IVL right; 3: only MK right; 4: MK failed (wrong), IVL right; 5: MK unknown -> excluded; 10: only MK.
EXP_DIFF = [("MME", "2", "InternVL2-2B"), ("MME", "3", "Mini-Monkey"), ("MME", "4", "InternVL2-2B"),
            ("MME", "10", "Mini-Monkey")]


def _write_run(root: Path, run_name: str, model: str, label: str, msac: bool, scm: bool, demo: bool,
               summary: dict, finished: str | None, scores: dict | None = None, samples: dict | None = None) -> Path:
    d = root / run_name
    d.mkdir()
    datasets = ["MME", "OCRBench", "POPE"]
    meta = {"run_name": run_name, "model": model, "label": label, "msac": msac, "scm": scm,
            "tile_profile": "minimonkey" if msac else "internvl", "tiles": {}, "model_path": f"/ckpt/{model}",
            "checkpoint_sha256": "ab" * 32, "demo": demo, "dtype": "bfloat16", "git_commit": "0123456789abcdef",
            "versions": {}, "datasets": datasets, "timings": {"finished": finished} if finished else {}}
    (d / "run.json").write_text(json.dumps(meta))
    with open(d / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run_name", "model", "label", "demo", *PAPER_COLUMNS])
        w.writerow([run_name, model, label, demo, *["" if c not in summary else summary[c] for c in PAPER_COLUMNS]])
    for dataset, metrics in (scores or {}).items():
        with open(d / f"{dataset}_score.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dataset", "metric", "value"])
            w.writerows([dataset, m, v] for m, v in metrics.items())
    for dataset, rows in (samples or {}).items():
        with open(d / f"{dataset}_samples.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "question", "answer", "prediction", "score", "image_path", "failed", "reason"])
            for i, (score, failed) in rows.items():
                w.writerow([i, f"Is there a cat in image {i}? | pipe", "Yes", "" if failed else f"pred-{model}-{i}",
                            "" if math.isnan(score) else score, f"images/MME/{i}.jpg", failed,
                            "timeout" if failed else ""])
    return d


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("work")
    _write_run(root, "ivl2b", "InternVL2-2B", "InternVL2-2B", False, False, False, IVL, "2024-08-10T10:00:00",
               scores={"MME": {"headline": 1873.0, "perception": 1500.0, "reasoning": 373.0},
                       "OCRBench": {"headline": 790, "Text Recognition": 240, "Scene Text-centric VQA": 180},
                       "POPE": {"headline": 85.0}},
               samples={"MME": IVL_MME_SAMPLES})
    _write_run(root, "mk_old", "MiniMonkey", "Mini-Monkey", True, False, False, MK_OLD, "2024-08-09T10:00:00",
               samples={"MME": {k: (0.0, False) for k in MK_MME_SAMPLES}})
    _write_run(root, "mk", "MiniMonkey", "Mini-Monkey", True, False, False, MK, "2024-08-11T10:00:00",
               scores={"MME": {"headline": 1886.0, "perception": 1510.0, "reasoning": 376.0, "OCR": 140.0},
                       "TextVQA_VAL": {"headline": MK_TEXTVQA_FROM_SCORE_CSV}},
               samples={"MME": MK_MME_SAMPLES})
    _write_run(root, "ivl2b_msac_demo", "InternVL2-2B", "InternVL2-2B + MSAC", True, False, True, IVL_MSAC_DEMO,
               None, scores={"MME": {"headline": 1000.0, "perception": 900.0, "reasoning": 100.0}})
    (root / "scratch").mkdir()  # no run.json: ignored
    return root


@pytest.fixture(scope="module")
def built(work_dir) -> ReportPaths:
    return build_report(work_dir)


@pytest.fixture(scope="module")
def data(work_dir):
    return collect_report(work_dir)


def _eq(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# --------------------------------------------------------------------------------------------- published.py
def test_published_cards_map_onto_report_columns():
    rows = pub.published_rows().set_index("label")
    assert list(rows.index) == ["InternVL2-2B", "Mini-Monkey", *PUB_FAMILY]
    for label, exp in [("InternVL2-2B", PUB_INTERNVL2_2B), ("Mini-Monkey", PUB_MINIMONKEY), *PUB_FAMILY.items()]:
        for c in PAPER_COLUMNS:
            assert _eq(rows.loc[label, c], exp.get(c, NaN)), (label, c)
    values, sources = pub.published_reference("InternVL2-2B")
    assert values["MME"] == 1876.8 and values["MMMU"] == 36.3 and math.isnan(values["MMBench_CN"]) is False
    assert sources["MME"].startswith("Mini-Monkey card") and sources["MMMU"].startswith("Mini-InternVL card")
    assert pub.published_reference("unknown-model") is None
    # Card files are package data.
    assert resources.files("minimonkey_eval").joinpath("data", "baselines_minimonkey_card.csv").is_file()


# --------------------------------------------------------------------------------------------- numbers
def test_table_every_cell(data):
    t = data.table
    pub_rows = t[t["run_name"] == ""].set_index("label")
    for label, exp in [("InternVL2-2B", PUB_INTERNVL2_2B), ("Mini-Monkey", PUB_MINIMONKEY), *PUB_FAMILY.items()]:
        for c in PAPER_COLUMNS:
            assert _eq(pub_rows.loc[label, c], exp.get(c, NaN)), (label, c)
    measured = t[t["run_name"] != ""].set_index("run_name")
    assert list(measured.index) == ["ivl2b", "ivl2b_msac_demo", "mk_old", "mk"]
    exp_mk = dict(MK, TextVQA=MK_TEXTVQA_FROM_SCORE_CSV)
    for run, exp in [("ivl2b", IVL), ("mk", exp_mk), ("mk_old", MK_OLD), ("ivl2b_msac_demo", IVL_MSAC_DEMO)]:
        for c in PAPER_COLUMNS:
            assert _eq(measured.loc[run, c], exp.get(c, NaN)), (run, c)
    assert measured.loc["ivl2b_msac_demo", "label"] == f"InternVL2-2B + MSAC ({DEMO_TAG})"
    assert measured.loc["ivl2b_msac_demo", "demo"] and not measured.loc["mk", "demo"]


def test_pair_and_deltas(data):
    new, base = data.pair
    assert new.run_name == "mk" and base.run_name == "ivl2b"  # most recent MSAC-on Mini-Monkey, not mk_old
    d = data.deltas.set_index("comparison")
    assert list(d.index) == ["Mini-Monkey − InternVL2-2B (measured)", "Mini-Monkey − InternVL2-2B (published)",
                             "InternVL2-2B: MSAC on − off"]
    for comp, exp in [("Mini-Monkey − InternVL2-2B (measured)", EXP_DELTA),
                      ("Mini-Monkey − InternVL2-2B (published)", EXP_PUB_DELTA),
                      ("InternVL2-2B: MSAC on − off", EXP_MSAC_DELTA)]:
        for c in PAPER_COLUMNS:
            assert _eq(d.loc[comp, c], exp.get(c, NaN)), (comp, c, d.loc[comp, c])
    assert d.loc["InternVL2-2B: MSAC on − off", "demo"]
    assert DEMO_TAG in d.loc["InternVL2-2B: MSAC on − off", "minuend"]


def test_gaps_and_flags(data):
    g = data.gaps
    assert set(g["run_name"]) == {"ivl2b", "ivl2b_msac_demo", "mk", "mk_old"}
    for run, exp, flags in [("ivl2b", EXP_GAP_IVL, EXP_FLAG_IVL), ("mk", EXP_GAP_MK, EXP_FLAG_MK)]:
        sub = g[g["run_name"] == run].set_index("benchmark")
        assert sub["published_config"].all()
        for c in PAPER_COLUMNS:
            assert _eq(sub.loc[c, "gap"], exp[c]), (run, c, sub.loc[c, "gap"])
        assert set(sub.index[sub["flagged"]]) == flags, run
        assert not sub.loc[sub["gap"].isna(), "flagged"].any()  # missing is never flagged
    assert not g[g["run_name"] == "ivl2b_msac_demo"]["published_config"].any()


def test_tolerance_override(work_dir):
    tol = resolve_tolerance({"OCRBench": 10, "DocVQA_VAL": 2.0, "default": 0.05})
    assert tol["OCRBench"] == 10 and tol["DocVQA"] == 2.0 and tol["MME"] == 5.0 and tol["AI2D"] == 0.05
    g = collect_report(work_dir, tolerance={"OCRBench": 10, "DocVQA_VAL": 2.0, "default": 0.05}).gaps
    sub = g[g["run_name"] == "ivl2b"].set_index("benchmark")
    assert set(sub.index[sub["flagged"]]) == {"RealWorldQA", "AI2D", "HallusionBench", "POPE", "ChartQA", "InfoVQA",
                                              "TextVQA", "MMMU", "MMBench_EN"}


def test_breakdowns(data):
    assert list(data.breakdowns) == ["MME", "OCRBench"]  # POPE / TextVQA have no sub-scores
    mme = data.breakdowns["MME"]
    assert list(mme.index) == ["headline", "perception", "reasoning", "OCR"]
    cols = {c.split(" [")[1].split("]")[0]: c for c in mme.columns}
    assert set(cols) == {"ivl2b", "mk", "ivl2b_msac_demo"}
    assert mme.loc["perception", cols["mk"]] == 1510.0 and mme.loc["reasoning", cols["ivl2b"]] == 373.0
    assert math.isnan(mme.loc["OCR", cols["ivl2b"]])
    assert DEMO_TAG in cols["ivl2b_msac_demo"]
    assert data.breakdowns["OCRBench"].loc["Text Recognition"].tolist() == [240.0]


def test_sample_diff(data):
    sd = data.sample_diff
    assert list(zip(sd["dataset"], sd["index"], sd["right"])) == EXP_DIFF
    row = sd.set_index("index").loc["4"]
    assert (row["Mini-Monkey prediction"] == "[failed: timeout]"
            and row["InternVL2-2B prediction"] == "pred-InternVL2-2B-4")
    assert row["answer"] == "Yes" and row["image_path"] == "images/MME/4.jpg" and row["InternVL2-2B score"] == 1.0


def test_most_recent_by_mtime_when_no_finish_time(tmp_path):
    for name, mtime, mme in (("b_new", 2_000_000_000, 1900.0), ("a_old", 1_000_000_000, 1800.0)):
        d = _write_run(tmp_path, name, "MiniMonkey", "Mini-Monkey", True, False, False, {"MME": mme}, None)
        os.utime(d / "run.json", (mtime, mtime))
    assert collect_report(tmp_path).pair[0].run_name == "b_new"


# --------------------------------------------------------------------------------------------- outputs
def test_markdown(built):
    md = built.markdown.read_text()
    assert "> **DEMO:" in md  # banner
    header = "| Model | Source | " + " | ".join(
        {"MMBench_EN": "MMB-EN", "MMBench_CN": "MMB-CN"}.get(c, c) for c in PAPER_COLUMNS) + " |"
    assert header in md
    mk_row = next(line for line in md.splitlines() if line.startswith("| Mini-Monkey | measured: mk |"))
    cells = [c.strip() for c in mk_row.strip("|").split("|")][2:]
    exp = dict(MK, TextVQA=MK_TEXTVQA_FROM_SCORE_CSV)
    for c, cell in zip(PAPER_COLUMNS, cells):
        if c not in exp:
            assert cell == "", (c, cell)  # missing -> empty, never 0
        else:
            assert float(cell) == pytest.approx(exp[c], abs=0.051), c
    assert f"InternVL2-2B + MSAC ({DEMO_TAG})" in md
    assert "**+6.0**" in md  # flagged OCRBench gap of ivl2b in bold
    assert "Is there a cat in image 2? \\| pipe" in md  # pipes escaped inside tables
    assert "(scores.png)" in md and "(delta.png)" in md


def _sheet_table(ws, first_header: str):
    rows = list(ws.iter_rows(values_only=True))
    h = next(i for i, r in enumerate(rows) if r[0] == first_header)
    body = []
    for r in rows[h + 1:]:
        if r[0] is None:
            break
        body.append(r)
    return list(rows[h]), body


def test_xlsx(built):
    from openpyxl import load_workbook

    wb = load_workbook(built.xlsx)
    assert wb.sheetnames[:len(SHEET_NAMES)] == list(SHEET_NAMES)  # then the landscape and significance sheets
    assert "DEMO" in wb["table"]["A1"].value
    headers, body = _sheet_table(wb["table"], "Model")
    assert headers[2:] == [{"MMBench_EN": "MMB-EN", "MMBench_CN": "MMB-CN"}.get(c, c) for c in PAPER_COLUMNS]
    by_source = {r[1]: r for r in body}
    exp_mk = dict(MK, TextVQA=MK_TEXTVQA_FROM_SCORE_CSV)
    for source, exp in [("measured: mk", exp_mk), ("measured: ivl2b", IVL),
                        ("published (Mini-Monkey card)", None)]:
        if exp is None:
            continue
        for c, v in zip(PAPER_COLUMNS, by_source[source][2:]):
            assert v == exp.get(c), (source, c, v)  # missing -> empty cell (None), never 0
    demo_row = by_source["measured: ivl2b_msac_demo"]
    assert demo_row[0] == f"InternVL2-2B + MSAC ({DEMO_TAG})"
    # Deltas: values, number formats and fills.
    ws = wb["deltas"]
    headers, body = _sheet_table(ws, "Comparison")
    meas = next(r for r in body if r[0].endswith("(measured)"))
    assert meas[1] == "mk − ivl2b"
    for c, v in zip(PAPER_COLUMNS, meas[2:]):
        assert (v is None) if math.isnan(EXP_DELTA[c]) else v == EXP_DELTA[c], c
    cells = {ws.cell(r, 1).value: r for r in range(1, ws.max_row + 1)}
    r = cells["Mini-Monkey − InternVL2-2B (measured)"]
    mme_col = 3 + PAPER_COLUMNS.index("MME")
    rwqa_col = 3 + PAPER_COLUMNS.index("RealWorldQA")
    assert ws.cell(r, mme_col).fill.fgColor.rgb.endswith("C6EFCE")  # positive: green
    assert ws.cell(r, rwqa_col).fill.fgColor.rgb.endswith("FFC7CE")  # negative: red
    assert ws.cell(r, mme_col).number_format.startswith("+")
    assert f"InternVL2-2B: MSAC on − off ({DEMO_TAG})" in cells
    # Gaps: flagged cells bold.
    ws = wb["gaps"]
    cells = {ws.cell(r, 1).value: r for r in range(1, ws.max_row + 1)}
    r = cells["InternVL2-2B [ivl2b]"]
    for c in PAPER_COLUMNS:
        cell = ws.cell(r, 4 + PAPER_COLUMNS.index(c))
        assert bool(cell.font.bold) == (c in EXP_FLAG_IVL), c
        assert (cell.value is None) if math.isnan(EXP_GAP_IVL[c]) else cell.value == EXP_GAP_IVL[c], c
    assert f"InternVL2-2B + MSAC [ivl2b_msac_demo] ({DEMO_TAG})" in cells
    # Per-sample diff sheet has all four rows.
    headers, body = _sheet_table(wb["per-sample diff"], "dataset")
    assert [(r[0], r[1], r[2]) for r in body] == EXP_DIFF
    assert any(DEMO_TAG in (c or "") for row in wb["breakdowns"].iter_rows(values_only=True) for c in row
               if isinstance(c, str))


def test_charts_are_real_images(built):
    from PIL import Image

    for p in built.charts:
        assert p.exists() and p.stat().st_size > 20_000, p
        with Image.open(p) as im:
            assert im.width > 800 and im.height > 400
            colours = im.convert("RGB").getcolors(maxcolors=1_000_000)
            assert len(colours) > 50, p


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.urls, self.text, self.tables = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table":
            self.tables += 1
        for k in ("src", "href"):
            if a.get(k):
                self.urls.append(a[k])

    def handle_data(self, data):
        self.text.append(data)


def test_html(built):
    p = _Collect()
    p.feed(built.html.read_text())
    p.close()
    assert (len(p.imgs) == 2 + len(built.landscape_charts)
            and all(s.startswith("data:image/png;base64,") for s in p.imgs))
    assert not [u for u in p.urls if re.match(r"(https?:)?//", u)]  # self-contained: no external requests
    text = "".join(p.text)
    assert "DEMO:" in text and f"InternVL2-2B + MSAC ({DEMO_TAG})" in text
    assert p.tables >= 6
    assert "1886.0" in text and "802" in text


def test_no_runs_still_reports_published(tmp_path):
    paths = build_report(tmp_path, tmp_path / "out")
    md = paths.markdown.read_text()
    assert "| Mini-Monkey | published (Mini-Monkey card) | 1881.9 |" in md and "DEMO" not in md
    assert all(p.exists() for p in paths.charts)

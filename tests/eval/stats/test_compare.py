"""Two runs with injected answers through the runner's own scoring path: each benchmark's units recompute
vlmeval's headline exactly; `compare` gives the Δ, discordant counts, McNemar p, Holm p, bootstrap SE and flips
the injected answers imply; the CLI refuses runs over different samples; the report gains the section."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers.injected_runs import injected_run
from helpers.known_answers import expected_headline
from scipy.stats import binomtest

from minimonkey_eval.datasets.fixtures import CIRCULAR_OFFSET, write_sample_tsvs
from minimonkey_eval.datasets.mme import MME_PERCEPTION, MME_REASONING
from minimonkey_eval.datasets.registry import DEFAULT_DATASETS
from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.compare import compare_runs
from minimonkey_eval.eval.stats.units import load_units, read_samples

ROWS = 10
PAIRED = ("MME", "AI2D_TEST", "POPE", "HallusionBench", "TextVQA_VAL", "MMBench_DEV_EN")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root, datasets=list(DEFAULT_DATASETS), n=ROWS)
    ckpt = tmp_path_factory.mktemp("checkpoint")     # the runner only fingerprints it: no model is loaded
    (ckpt / "config.json").write_text(json.dumps({"note": "injected answers, no model"}))
    work = tmp_path_factory.mktemp("work")
    mk = injected_run(work, root, ckpt, "MiniMonkey", "mk", 0.75, 1, list(DEFAULT_DATASETS), msac=True)
    ivl = injected_run(work, root, ckpt, "InternVL2-2B", "ivl", 0.45, 2, list(PAIRED))
    other = tmp_path_factory.mktemp("other")        # a separate work dir: the report must not pick it
    short = injected_run(other, root, ckpt, "InternVL2-2B", "ivl_limit", 0.45, 2, ["AI2D_TEST"], limit=5)
    return {"mk": mk, "ivl": ivl, "short": short, "work": work}


# ------------------------------------------------------------------------------------- exact recomputation
@pytest.mark.parametrize("name", DEFAULT_DATASETS)
def test_units_recompute_vlmeval_headline(runs, name):
    """From all units, the statistic gives back the number in vlmeval's own score file, for both runs."""
    checked = 0
    for key, model in (("mk", "MiniMonkey"), ("ivl", "InternVL2-2B")):
        run_dir, drawn = runs[key]
        if name not in drawn:
            continue
        units = load_units(run_dir, name, model)
        want = expected_headline(name, run_dir, model)
        assert units.headline() == want, (key, name)       # bit-exact: same sums in the same order
        kinds = set(drawn[name].values())
        assert "right" in kinds and kinds - {"right"}, "the draw must mix right and wrong answers"
        assert 0 < want < (2800 if name == "MME" else 1000 if name == "OCRBench" else 100)
        checked += 1
    assert checked


def test_unit_counts_follow_the_grouping(runs):
    run_dir, drawn = runs["mk"]
    samples = {d: read_samples(run_dir, d) for d in ("MME", "HallusionBench", "MMBench_DEV_EN", "MMMU_DEV_VAL")}
    assert len(load_units(run_dir, "MME", "MiniMonkey").ids) == len(samples["MME"]) // 2   # one per image pair
    hallusion = load_units(run_dir, "HallusionBench", "MiniMonkey")
    assert len(hallusion.ids) == ROWS and hallusion.comp[:, 1].tolist() == [4.0] * ROWS  # sets of 4 questions
    mains = [i for i in samples["MMBench_DEV_EN"]["index"] if int(i) < CIRCULAR_OFFSET]
    assert sorted(load_units(run_dir, "MMBench_DEV_EN", "MiniMonkey").ids, key=int) == sorted(mains, key=int)
    mmmu = load_units(run_dir, "MMMU_DEV_VAL", "MiniMonkey")
    assert 0 < len(mmmu.ids) < len(samples["MMMU_DEV_VAL"])                          # validation split only


# ------------------------------------------------------------------------------------- paired numbers
def _right(drawn: dict, name: str) -> dict[str, int]:
    return {k: int(v == "right") for k, v in drawn[name].items()}


def _mme_by_hand(run_dir, drawn) -> float:
    rows = pd.read_excel(next(run_dir.glob("*_MME.xlsx")))
    right = _right(drawn, "MME")
    total = 0.0
    for cat in (*MME_PERCEPTION, *MME_REASONING):
        sub = rows[rows["category"] == cat]
        if not len(sub):
            continue
        scores = [right[str(i)] for i in sub["index"]]
        pairs = sub.assign(s=scores).groupby("image_path")["s"].min()
        total += 100 * np.mean(scores) + 100 * pairs.mean()
    return total


def _pope_f1_by_hand(run_dir, drawn) -> float:
    rows = pd.read_excel(next(run_dir.glob("*_POPE.xlsx")))
    tp = fp = fn = 0
    for idx, ans, cat in zip(rows["index"], rows["answer"], rows["category"]):
        kind, m = drawn["POPE"][str(idx)], len(str(cat).split(","))
        said_yes = (ans == "Yes") if kind == "right" else (ans == "No") if kind == "wrong" else False
        tp += m * (said_yes and ans == "Yes")
        fp += m * (said_yes and ans != "Yes")
        fn += m * (not said_yes and ans == "Yes")
    p, r = tp / (tp + fp), tp / (tp + fn)
    return 100 * 2 * p * r / (p + r)


def test_compare_numbers_follow_the_injected_answers(runs):
    (mk, dmk), (ivl, divl) = runs["mk"], runs["ivl"]
    c = compare_runs(mk, ivl)
    res = {r.dataset: r for r in c.results}
    assert set(res) == set(PAIRED) and not c.notes
    assert c.skipped == {d: "only run A has it" for d in DEFAULT_DATASETS if d not in PAIRED}

    ai2d = res["AI2D_TEST"]
    a, b = _right(dmk, "AI2D_TEST"), _right(divl, "AI2D_TEST")
    only_a = sum(a[k] and not b[k] for k in a)
    only_b = sum(b[k] and not a[k] for k in a)
    n = len(a)
    assert ai2d.n == n and ai2d.discordant == (only_a, only_b) and ai2d.test == sig.MCNEMAR
    assert ai2d.delta == pytest.approx(100 * (only_a - only_b) / n)
    assert ai2d.p == binomtest(only_a, only_a + only_b, 0.5).pvalue
    d = np.array([a[k] - b[k] for k in a], dtype=float)
    assert ai2d.se == pytest.approx(100 * d.std(ddof=0) / math.sqrt(n), rel=0.03)   # bootstrap SE of a mean
    assert ai2d.lo <= ai2d.delta <= ai2d.hi
    assert ai2d.published_delta == pytest.approx(74.7 - 74.1)                       # the Mini-Monkey card

    assert res["MME"].delta == pytest.approx(_mme_by_hand(mk, dmk) - _mme_by_hand(ivl, divl), abs=1e-9)
    assert res["POPE"].delta == pytest.approx(_pope_f1_by_hand(mk, dmk) - _pope_f1_by_hand(ivl, divl), abs=1e-9)
    for name in ("POPE", "HallusionBench", "TextVQA_VAL"):
        assert res[name].test.startswith(sig.RANDOMIZATION) and 0 < res[name].p <= 1, name  # grouped / fractional
    mme = res["MME"]                                  # 10 images over 10 categories: one unit per stratum
    assert mme.test.startswith(sig.RANDOMIZATION) and 0 < mme.p <= 1 and math.isnan(mme.lo)   # exact at any size
    assert mme.ci_note.startswith(sig.TOO_FEW)
    assert mme.verdict == sig.SAME and mme.published_status == "no CI"
    assert res["MMBench_DEV_EN"].test == sig.MCNEMAR            # circular groups score 0/1

    tested = sorted((r for r in c.results if not math.isnan(r.p)), key=lambda r: r.p)
    running, holm = 0.0, {"MME": math.nan}
    for rank, r in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * r.p))
        holm[r.dataset] = running
    for r in c.results:
        assert r.p_holm == pytest.approx(holm[r.dataset], nan_ok=True)
        assert r.verdict == (sig.SAME if not r.p_holm < 0.05 else sig.BETTER if r.delta > 0 else sig.WORSE)

    flips = c.flips[c.flips["dataset"] == "AI2D_TEST"]
    assert sorted(flips["index"], key=int) == sorted((k for k in a if a[k] != b[k]), key=int)
    assert all(flips["right"] == ["A" if a[k] else "B" for k in flips["index"]])
    assert all(p.split(";")[0].endswith(".jpg") or p.split(";")[0].endswith(".png") for p in flips["image_path"])


# ------------------------------------------------------------------------------------- CLI
def test_cli_refuses_different_samples_and_intersects(runs, capsys):
    from minimonkey_eval.cli import main

    mk, short = runs["mk"][0], runs["short"][0]
    assert main(["compare", str(mk), str(short)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: AI2D_TEST: the runs were made over different samples")
    assert "--intersect" in err[0]
    assert main(["compare", str(mk), str(short), "--intersect"]) == 0
    out = capsys.readouterr().out
    assert "AI2D_TEST: compared the 5 samples both runs have (A has 10, B has 5)" in out
    assert "AI2D " in out and "exact McNemar" in out


def test_cli_table(runs, capsys):
    from minimonkey_eval.cli import main

    assert main(["compare", str(runs["mk"][0]), str(runs["ivl"][0]), "--data", "AI2D,POPE"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("AI2D ", "POPE "))]
    assert len(lines) == 2 and "paired randomization" in lines[1] and "+0.60" in lines[0]


# ------------------------------------------------------------------------------------- report
def test_report_significance_section(runs):
    from openpyxl import load_workbook
    from PIL import Image

    from minimonkey_eval.eval.report.build import build_report

    paths = build_report(runs["work"])
    md = paths.markdown.read_text()
    section = md[md.index("## Is the difference real?"):md.index("## Breakdowns")]
    assert "| AI2D | question | 10 |" in section and "exact McNemar" in section and "(forest.png)" in section
    assert "## Flip lists" in section and "only A right" in section
    forest = paths.out_dir / "forest.png"
    with Image.open(forest) as im:
        assert im.width > 600 and len(im.convert("RGB").getcolors(1_000_000)) > 50
    page = paths.html.read_text()
    assert page.count('<table class="sortable">') >= 3 and "data:image/jpeg;base64," in page
    assert page.index("Is the difference real?") < page.index("<h2>Breakdowns</h2>")
    wb = load_workbook(paths.xlsx)
    assert {"significance", "flips"} <= set(wb.sheetnames)
    flips = list(wb["flips"].iter_rows(values_only=True))
    assert flips[0][-1] == "image_path" and len(flips) > 5
    assert all(str(r[-1]).split(";")[0] for r in flips[1:])


def test_report_why_it_does_not_match(runs):
    from openpyxl import load_workbook

    from minimonkey_eval.eval.report.build import build_report
    from minimonkey_eval.eval.report.mismatch_section import SHEET

    paths = build_report(runs["work"])
    md = paths.markdown.read_text()
    section = md[md.index("## Why doesn't it match?"):md.index("## Breakdowns")]
    summary = pd.read_csv(runs["mk"][0] / "summary.csv").iloc[0]
    rows = {tuple(c.strip() for c in line.strip("|").split(" | ")[:2]): line for line in section.splitlines()
            if line.startswith("| ") and "Benchmark" not in line}
    mk_ai2d = next(line for (run, bench), line in rows.items() if bench == "AI2D" and "Mini-Monkey" in run)
    cells = [c.strip() for c in mk_ai2d.strip("|").split(" | ")]
    assert float(cells[2]) == pytest.approx(float(summary["AI2D"]), abs=1e-3) and cells[3] == "74.7"
    assert float(cells[4]) == pytest.approx(float(summary["AI2D"]) - 74.7, abs=1e-3)
    assert cells[5].split(" [")[0] in ("inside CI", "above CI", "below CI")   # the per-run CI verdict
    mk_doc = next(line for (run, bench), line in rows.items() if bench == "DocVQA" and "Mini-Monkey" in run)
    assert "split:" in mk_doc and "tiles:" in mk_doc
    # InternVL2-2B ran the card's setting too: its rows are there; every row names at least one known cause
    assert any("InternVL2-2B" in run for run, _ in rows)
    assert all(line.rstrip(" |").split(" | ")[-1].strip() for line in rows.values())
    ws = load_workbook(paths.xlsx)[SHEET]
    assert ws.cell(3, 1).value == "Run" and ws.max_row == 3 + len(rows)

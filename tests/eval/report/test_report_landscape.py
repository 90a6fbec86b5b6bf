"""Report landscape: every published row of both cards with a sourced parameter count, --published selection,
rank arithmetic, and the section (table, ranks, params-vs-score charts) in report.md / .html / .xlsx."""
from __future__ import annotations

import csv
import json
import math
from importlib import resources

import pandas as pd
import pytest

from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.eval.report import landscape as land
from minimonkey_eval.eval.report import published as pub

SMALL = {"DeepSeek-VL", "Mini-Gemini 2.2B", "Bunny-StableLM-2", "MiniCPM-V-2", "InternVL2-2B", "Mini-Monkey",
         "DeepSeek-VL-1.3B", "MiniCPM-V 2.0", "Qwen2-VL-2B", "Mini-InternVL2-1B", "Mini-InternVL2-2B",
         "Mini-InternVL2-4B"}  # <= 4B parameters, by hand from the cards


def _card_rows(filename: str) -> list[dict]:
    text = resources.files("minimonkey_eval").joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_every_card_row_is_published_data_with_a_sourced_size():
    rows = pub.all_published()
    mk, mi = _card_rows("baselines_minimonkey_card.csv"), _card_rows("baselines_mini_internvl_card.csv")
    assert len(rows) == len(mk) + len(mi) == 23 and rows["key"].is_unique
    assert list(rows["name"]) == [r["model"] for r in mk + mi]
    for (_, r), raw in zip(rows.iterrows(), mk):        # Mini-Monkey card: its own params column and scores
        assert r["params_b"] == float(raw["params"].rstrip("B")) and "params column" in r["params_source"]
        for col in ("MME", "POPE", "OCRBench"):
            assert (math.isnan(r[col]) and raw[col] == "") or r[col] == float(raw[col])
    second = rows.iloc[len(mk):]
    for (_, r), raw in zip(second.iterrows(), mi):       # second card: columns mapped (test splits)
        assert ((math.isnan(r["MMBench_EN"]) and raw["MMBench_EN_test"] == "")
                or r["MMBench_EN"] == float(raw["MMBench_EN_test"]))
        assert r["params_source"]                        # every size (or its absence) says where it comes from
    gpt4o = second[second["name"] == "GPT-4o (20240513)"].iloc[0]
    assert math.isnan(gpt4o["params_b"]) and "not disclosed" in gpt4o["params_source"]
    assert list(rows[rows["name"] == "Mini-Gemini"]["label"]) == ["Mini-Gemini 35B", "Mini-Gemini 2.2B"]
    assert set(rows["same_as"]) - {""} <= set(rows["key"])


def test_data_files_name_real_card_rows():
    keys = set(pub.all_published()["key"])
    extras = pub.row_extras()
    assert {f"{card}:{name}" for card, name in extras} <= keys and {s for *_, s in extras.values() if s} <= keys
    table = pub._data_csv(pub.VLMEVAL_FILE)
    assert {f"{c}:{m}" for c, m in zip(table["card"], table["model"])} <= keys
    assert pub.published_keys("vlmeval:InternVL2-2B") == ["minimonkey:InternVL2-2B", "mini_internvl:Mini-InternVL2-2B"]
    assert pub.published_keys("MiniMonkey") == ["minimonkey:Mini-Monkey"]
    assert pub.published_keys("vlmeval:Nobody") == [] and pub.published_keys("Nobody") == []


def test_parse_published():
    assert land.parse_published(None) == "card" and land.parse_published("all") == "all"
    assert land.parse_published("mini-monkey, gpt-4o (20240513)") == ["minimonkey:Mini-Monkey",
                                                                     "mini_internvl:GPT-4o (20240513)"]
    assert land.parse_published("Mini-Gemini") == ["minimonkey:Mini-Gemini 35B", "minimonkey:Mini-Gemini 2.2B"]
    with pytest.raises(land.PublishedSelectionError, match="no published row"):
        land.parse_published("Mini-Monkey,GPT-5")


class _R:  # the few Run fields the landscape reads
    def __init__(self, model, scores=None, demo=False, meta=None, run_name="r"):
        self.model, self.demo, self.meta, self.run_name, self.label = model, demo, meta or {}, run_name, model
        self.display = f"{model} [{run_name}]"
        self.scores = pd.Series({c: (scores or {}).get(c, math.nan) for c in PAPER_COLUMNS}, dtype=float)


def test_card_selection_is_small_models_plus_measured(monkeypatch):
    assert set(land.select_published("card", [])["label"]) == SMALL
    real = pub.published_keys
    monkeypatch.setattr(pub, "published_keys",
                        lambda m: ["mini_internvl:InternVL2-Llama3-76B"] if m == "vlmeval:Big" else real(m))
    shown = land.select_published("card", [_R("vlmeval:Big")])
    assert set(shown["label"]) == SMALL | {"InternVL2-Llama3-76B"}
    assert len(land.select_published("all", [])) == 23


def test_rank_counts_a_model_once_and_places_the_run():
    shown = pub.all_published()
    shown = shown[shown["label"].isin(["InternVL2-2B", "Mini-InternVL2-2B", "Mini-Monkey", "Qwen2-VL-2B"])]
    # OCRBench: InternVL2-2B 784 (both cards: once), Mini-Monkey 802, Qwen2-VL-2B 794 -> 3 models + the run
    assert land.rank_of(800.0, shown, "OCRBench") == (2, 4)
    assert land.rank_of(900.0, shown, "OCRBench") == (1, 4)
    assert land.rank_of(784.0, shown, "OCRBench") == (3, 4)   # a tie takes the better place
    assert land.rank_of(math.nan, shown, "OCRBench") is None
    assert land.rank_of(50.0, shown[shown["label"] == "Qwen2-VL-2B"], "MME") is None  # nothing published


def test_run_params():
    assert land.run_params(_R("MiniMonkey"))[0] == 2.0                       # nominal, Mini-Monkey card
    assert land.run_params(_R("vlmeval:X", meta={"params_b": 0.5, "params_source": "counted"})) == (0.5, "counted")
    assert math.isnan(land.run_params(_R("vlmeval:X"))[0])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from minimonkey_eval.eval.report.build import build_report

    work = tmp_path_factory.mktemp("landscape")
    d = work / "mk"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"run_name": "mk", "model": "MiniMonkey", "label": "Mini-Monkey",
                                            "msac": True, "scm": False, "demo": False}))
    pd.DataFrame([{"run_name": "mk", "model": "MiniMonkey", "label": "Mini-Monkey", "demo": False,
                   **{c: math.nan for c in PAPER_COLUMNS}, "OCRBench": 790.0, "MMMU": 70.0}]).to_csv(d / "summary.csv",
                                                                                                   index=False)
    return build_report(work, published="Mini-Monkey,GPT-4o (20240513)")


def test_section_in_markdown_html_xlsx(built):
    from openpyxl import load_workbook
    from PIL import Image

    md = built.markdown.read_text()
    section = md.split("## Where the runs sit")[1].split("## Breakdowns")[0]
    table = section.split("### Rank")[0]
    assert [ln.split("|")[1].strip() for ln in table.splitlines() if ln.startswith("| ") and "published (" in ln] \
        == ["Mini-Monkey", "GPT-4o (20240513)"]
    assert "| Mini-Monkey [mk] | measured: mk | 2 |" in table
    ranks = section.split("### Rank")[1].split("### Parameters vs score")[0]
    row = next(ln for ln in ranks.splitlines() if ln.startswith("| Mini-Monkey [mk]"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    by_col = dict(zip(PAPER_COLUMNS, cells))
    assert by_col["OCRBench"] == "2/3" and by_col["MMMU"] == "1/2" and by_col["MME"] == ""   # 790 < 802, > 736
    assert set(built.landscape_charts) == {built.out_dir / f"landscape_{c}.png" for c in PAPER_COLUMNS}
    for p in built.landscape_charts:
        assert f"]({p.name})" in section
    with Image.open(built.out_dir / "landscape_OCRBench.png") as im:
        rgb = im.convert("RGB")
        assert rgb.width > 800
        red = sum(n for n, (r, g, b) in rgb.getcolors(1_000_000) if r > 190 and g < 70 and b < 70)
        assert red > 50                                   # the measured run's star
    html = built.html.read_text()
    assert 'id="landscape-filter"' in html and html.count("<img") == 2 + len(built.landscape_charts)
    wb = load_workbook(built.xlsx)
    assert land.SHEET in wb.sheetnames and len(wb[land.CHART_SHEET]._images) == len(built.landscape_charts)
    assert any(c.value == "GPT-4o (20240513)" for row in wb[land.SHEET].iter_rows() for c in row)


def test_cli_rejects_an_unknown_published_name(tmp_path, capsys):
    from minimonkey_eval import cli

    assert cli.main(["report", "--work-dir", str(tmp_path), "--published", "Mini-Monkey,GPT-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --published 'GPT-5'") and "Mini-Gemini 35B" in err[0]
    assert not (tmp_path / "report").exists()             # refused before anything is written

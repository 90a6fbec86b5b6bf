"""The TSV guard (datasets/validate.py) refuses every cell class it exists for, each at its exact limit: long
list-shaped code in image cells, oversized literals (powers, repetition, node counts), dunder names, bad
``image_path`` names, non-list MathVista / OCRBench lists, and image files that are not small regular files."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from minimonkey_eval.datasets import validate as v
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.datasets.validate import CellError

PWNED = "minimonkey_pwned"
IMAGE = "iVBORw0KGgo" + "A" * 80          # base64-looking text over 64 characters (decoded per sample)


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)               # a payload that ran would leave PWNED here


def write_tsv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def refused(path: Path, bench: str, *needles: str) -> str:
    with pytest.raises(CellError) as exc:
        v.validate_tsv(path, get_benchmark(bench))
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in needles), message
    assert not Path(PWNED).exists()
    return message


def vqa_rows(n: int = 2, **first) -> list[dict]:
    rows = [dict(index=i, image=IMAGE, question="q", answer="['a']", category=v.OCRBENCH_CATEGORIES[0])
            for i in range(n)]
    rows[0].update(first)
    return rows


# ------------------------------------------------------------------------------------------------ image cells
def test_long_list_shaped_code_in_an_image_cell_is_refused(tmp_path):
    """Over 64 characters and shaped like a list: vlmeval's toliststr would eval it, so only string lists pass."""
    code = f"[__import__('os').system('touch {PWNED}; echo {'x' * 40}')]"
    assert len(code) > 64
    refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(image=code)), "OCRBench", "row 1", "column 'image'",
            "Python literal")
    refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(image=repr(list(range(40))))), "OCRBench",
            "list literal of strings")
    v.validate_tsv(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(image=repr([IMAGE, IMAGE]))),
                   get_benchmark("OCRBench"))


def test_image_cell_of_64_characters_must_be_another_rows_index(tmp_path):
    idx = set(map(str, range(3)))
    v.check_image_cell("x" * 65, idx)                       # 65: image data (decoded per sample)
    with pytest.raises(CellError, match="64 characters or fewer must be the index of another row"):
        v.check_image_cell("x" * 64, idx)
    v.check_image_cell(" 1 ", idx, own_index="0")           # a reference, stripped
    with pytest.raises(CellError, match="refers to its own row"):
        v.check_image_cell("1", idx, own_index=" 1")
    with pytest.raises(CellError, match="itself a reference"):
        v.check_image_cell("2", idx, own_index="0", references=frozenset({"2"}))
    v.check_image_cell("[not closed" + "a" * 60, idx)      # not a list literal: image bytes, a failed sample
    v.check_image_cell("a" * 70 + "]", idx)


def test_reference_chains_and_self_references_in_a_file(tmp_path):
    rows = vqa_rows(3)
    rows[1]["image"], rows[2]["image"] = "0", "1"           # row 3 refers to row 2, itself a reference
    refused(write_tsv(tmp_path / "OCRBench.tsv", rows), "OCRBench", "row 3", "itself a reference")
    rows[2]["image"] = "0"
    assert v.validate_tsv(write_tsv(tmp_path / "OCRBench.tsv", rows), get_benchmark("OCRBench")) == 3


def test_one_index_with_two_images_is_refused(tmp_path):
    rows = vqa_rows(3)
    rows[2]["index"] = 0
    rows[2]["image"] = IMAGE + "B"
    refused(write_tsv(tmp_path / "OCRBench.tsv", rows), "OCRBench", "rows 1 and 3 share index")
    rows[2]["image"] = IMAGE                                   # the same image twice: allowed
    assert v.validate_tsv(write_tsv(tmp_path / "OCRBench.tsv", rows), get_benchmark("OCRBench")) == 3


# ------------------------------------------------------------------------------------------------ expressions
@pytest.mark.parametrize("text, why", [
    ("2 ** 65", "unbounded product or power"),
    ("2 ** -1", "unbounded product or power"),                 # a negative number is an expression, not a number
    ("-1000000 * 3", "unbounded product or power"),
    ("1000001 ** 2", "unbounded product or power"),
    ("'a' * 10", "unbounded product or power"),               # repetition: not a small number
    ("[0] * 3", "unbounded product or power"),
    ("1000001 * 2", "unbounded product or power"),
    ("2 * -1000001", "unbounded product or power"),
    ("True * 3", "unbounded product or power"),               # a bool is not a small number
    ("__import__", "it names __import__"),
    ("__builtins__ + 1", "it names __builtins__"),
    ("f(1)", "Python code (Call)"),
    ("a.b", "Python code (Attribute)"),
    ("a[1]", "Python code (Subscript)"),
    ("lambda: 1", "Python code (Lambda)"),
    ("a << 3", "Python code (LShift)"),
    ("'x' if a else f()", "Python code (Call)"),
])
def test_unsafe_expressions_are_named(text, why):
    assert v.unsafe_expression(text) == why or why in (v.unsafe_expression(text) or ""), v.unsafe_expression(text)


@pytest.mark.parametrize("text", ["2 ** 64", "1000000 ** 2", "1000000 * 1000000", "3 * 1000000",
                                  "1.5 * 2", "_private + 1", "a__b", "yes", "3-4", "['a', 'b c']", "1 < 2 <= 3",
                                  "not a", "a if b else c", "{'k': (1, 2)}", "not python at all (", ""])
def test_harmless_expressions_pass(text):
    assert v.unsafe_expression(text) is None


def test_node_count_cap_is_ten_thousand():
    """A list literal of n numbers walks to n + 3 nodes (Expression, List, Load, the numbers)."""
    assert v.unsafe_expression("[" + "1," * 9997 + "]") is None
    assert v.unsafe_expression("[" + "1," * 9998 + "]") == "expression too large"


def test_cell_size_cap_is_64_mib(monkeypatch):
    assert v.unsafe_expression("1" * ((64 << 20) + 1)) == f"cell of {(64 << 20) + 1} characters (at most {64 << 20})"
    monkeypatch.setattr(v, "MAX_CELL_CHARS", 10)          # the limit itself is allowed (a 64 MiB parse takes seconds)
    assert v.unsafe_expression("'abcdefgh'") is None
    assert v.unsafe_expression("'abcdefghi'") == "cell of 11 characters (at most 10)"


def test_deep_nesting_is_refused_not_a_crash():
    assert v.unsafe_expression("(" * 300 + "1" + ")" * 300) is None
    assert v.unsafe_expression("-" * 100_000 + "1") is None          # the parser refuses it first


def test_evaluated_answer_with_code_is_refused_and_text_answers_pass(tmp_path):
    rows = [dict(index=0, image=IMAGE, question="q", answer="2 ** 100000"),
            dict(index=1, image=IMAGE, question="q", answer="yes")]
    refused(write_tsv(tmp_path / "TextVQA_VAL.tsv", rows), "TextVQA_VAL", "row 1", "column 'answer'",
            "unbounded product or power", "write a literal")


def test_extra_evaluated_columns_are_checked(tmp_path):
    rows = mathvista_rows(hint="__import__('os')")
    path = write_tsv(tmp_path / "MathVista_MINI.tsv", rows)
    assert v.validate_tsv(path, get_benchmark("MathVista_MINI")) == 2
    with pytest.raises(CellError, match="column 'hint'"):
        v.validate_tsv(path, get_benchmark("MathVista_MINI"), eval_columns=("hint",))


# ------------------------------------------------------------------------------------------------ index
@pytest.mark.parametrize("index", [str(2 ** 53), str(-(2 ** 53)), "nan", "NaN", "None", "True", "inf", "N_A",
                                   "a-b", "9" * 17, "1_000", "", " ", "x" * 129, "1.0", "__debug__"])
def test_bad_indexes_are_refused(index):
    with pytest.raises(CellError, match="index"):
        v.check_index(index)


@pytest.mark.parametrize("index", [str(2 ** 53 - 1), str(-(2 ** 53) + 1), "0", "-7", "a_1", "_x", "x" * 128,
                                   "nanny", "Q1", "1" * 16])
def test_good_indexes_pass(index):
    v.check_index(index)


# ------------------------------------------------------------------------------------------------ image_path
@pytest.mark.parametrize("name", ["/etc/x.png", "~/x.png", "a//b.png", "../x.png", "a/../../x.png", "a\\..\\x.png",
                                  "a\x00b.png", " ", "a/", "\\abs.png"])
def test_image_path_names_outside_the_folder_are_refused(name):
    with pytest.raises(CellError, match="relative path without '..'"):
        v.check_relative_name(name)


@pytest.mark.parametrize("name", ["a.png", "sub/a.png", "a..b.png", "~a.png"[1:], "x~.png"])
def test_image_path_names_inside_the_folder_pass(name):
    v.check_relative_name(name)


def test_image_path_cells(tmp_path):
    with pytest.raises(CellError, match="is not a file path"):
        v.check_path_cell("a\x00b.png")
    with pytest.raises(CellError, match="is not a file path"):
        v.check_path_cell("['a.png', ' ']")
    with pytest.raises(CellError, match="list literal of strings"):
        v.check_path_cell("['a.png', 3]")
    assert v.image_path_names(" ['a.png', 'b.png'] ") == ["a.png", "b.png"]
    assert v.image_path_names(" /abs/x.png ") == ["/abs/x.png"]
    v.check_path_cell("/data/x.png")                           # a single-image row may name any file to read
    rows = vqa_rows(image="['" + IMAGE + "', '" + IMAGE + "']", image_path="['a.png', '~/b.png']")
    rows[1]["image_path"] = ""
    refused(write_tsv(tmp_path / "OCRBench.tsv", rows), "OCRBench", "row 1", "column 'image_path'", "without '..'")


def test_image_path_without_an_image_column_is_not_joined(tmp_path):
    rows = [dict(index=0, image_path="/data/x.png", question="q", answer="['a']",
                 category=v.OCRBENCH_CATEGORIES[0])]
    assert v.validate_tsv(write_tsv(tmp_path / "OCRBench.tsv", rows), get_benchmark("OCRBench")) == 1
    rows[0]["image_path"] = "a\x00.png"
    refused(write_tsv(tmp_path / "OCRBench.tsv", rows), "OCRBench", "column 'image_path'", "not a file path")


# ------------------------------------------------------------------------------------------------ datasets
def test_ocrbench_answers_and_categories(tmp_path):
    refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(answer="'a'")), "OCRBench", "column 'answer'",
            "OCRBench answer")
    refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(category="Poetry")), "OCRBench", "OCRBench category",
            "is not one of OCRBench's 10")


def mathvista_rows(**first) -> list[dict]:
    rows = [dict(index=i, image=IMAGE, question="q", answer="1", question_type="multi_choice",
                 choices="['1', '2']", skills="['arithmetic']") for i in range(2)]
    rows[1]["question_type"] = "free_form"
    rows[0].update(first)
    return rows


def test_mathvista_choices_and_skills_are_string_lists(tmp_path):
    path = tmp_path / "MathVista_MINI.tsv"
    assert v.validate_tsv(write_tsv(path, mathvista_rows()), get_benchmark("MathVista_MINI")) == 2
    refused(write_tsv(path, mathvista_rows(choices="'1'")), "MathVista_MINI", "column 'answer'",
            "MathVista 'choices'")
    refused(write_tsv(path, mathvista_rows(choices="[1, 2]")), "MathVista_MINI", "MathVista 'choices'")
    refused(write_tsv(path, mathvista_rows(skills="'algebra'")), "MathVista_MINI", "MathVista 'skills'")
    refused(write_tsv(path, mathvista_rows(choices="f()")), "MathVista_MINI", "column 'choices'", "Python code")
    free = mathvista_rows(choices="'1'")
    free[0]["question_type"], free[0]["skills"] = "free_form", " "     # free-form rows: choices are not read
    assert v.validate_tsv(write_tsv(path, free), get_benchmark("MathVista_MINI")) == 2


def test_columns_evaluated_per_dataset():
    assert v._evaluated(SimpleNamespace(kind="VQA", vlmeval_name="TextVQA_VAL"), "answer")
    assert not v._evaluated(SimpleNamespace(kind="MCQ", vlmeval_name="AI2D_TEST"), "answer")
    assert v._evaluated(SimpleNamespace(kind="VQA", vlmeval_name="MathVista_MINI"), "choices")
    assert not v._evaluated(SimpleNamespace(kind="VQA", vlmeval_name="TextVQA_VAL"), "choices")


def test_mcq_answers_are_not_evaluated(tmp_path):
    rows = [dict(index=0, image=IMAGE, question="q", answer="f()", A="x", B="y")]
    assert v.validate_tsv(write_tsv(tmp_path / "AI2D_TEST.tsv", rows), get_benchmark("AI2D_TEST")) == 1


def test_file_without_an_index_column_is_left_to_the_column_check(tmp_path):
    assert v.validate_tsv(write_tsv(tmp_path / "OCRBench.tsv", [dict(image="__import__('os')")] * 3),
                          get_benchmark("OCRBench")) == 3


# ------------------------------------------------------------------------------------------------ raw file
def test_bare_carriage_return_is_refused_with_its_line(tmp_path):
    path = tmp_path / "OCRBench.tsv"
    path.write_bytes(b"index\tquestion\r\n0\tq\r\n1\ta\rb\n")
    with pytest.raises(CellError, match=r"^line 3: a bare carriage return"):
        v.check_line_ends(path)
    path.write_bytes(b'index\tquestion\n0\t"a\rb"\n1\tx\n')
    v.check_line_ends(path)
    path.write_bytes(b"index\tquestion\n0\tb\"a\rb\"\n")
    with pytest.raises(CellError, match="line 2"):
        v.check_line_ends(path)


def test_unreadable_tsv_is_one_line(tmp_path):
    path = tmp_path / "OCRBench.tsv"
    path.write_bytes(b'index\tq\n0\t"never closed\n')
    with pytest.raises(CellError, match=r"^not a readable TSV \("):
        v.read_text_table(path)
    table = v.read_text_table(write_tsv(path, [dict(index="007", answer="")]))
    assert table["index"].tolist() == ["007"] and table["answer"].tolist() == [""]


# ------------------------------------------------------------------------------------------------ image files
def test_image_file_size_cap_is_512_mib(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate((512 << 20) + 1)                        # sparse: no disk used
    with pytest.raises(CellError, match=f"of {(512 << 20) + 1} bytes is over the {512 << 20}-byte cap"):
        v.check_image_file(big)
    os.truncate(big, 512 << 20)
    v.check_image_file(big)                                # at the cap: allowed (not probed)


def test_image_file_kinds(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="fifo.png: not a regular file"):
        v.check_image_file(fifo, error=ValueError)         # the caller's error class, and no blocking open
    text = tmp_path / "text.png"
    text.write_bytes(b"not an image")
    v.check_image_file(text)
    with pytest.raises(CellError, match="not an image Pillow can read"):
        v.check_image_file(text, probe=True)
    with pytest.raises(CellError, match="cannot read the image file"):
        v.check_image_file(text / "below")                 # NotADirectoryError: an OSError, not 'not found'
    with pytest.raises(CellError, match="not a regular file"):
        v.check_message_images([dict(type="text", value="q"), dict(type="image", value=str(fifo))])
    v.check_message_images([dict(type="text", value=str(fifo)), "plain"])
    v.check_message_images(None)


def test_dump_targets_and_their_guard(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    data = SimpleNamespace(img_root=str(root))
    assert v.dump_targets(data, pd.Series(dict(index=7, image=IMAGE))) == [root / "7.png"]
    assert v.dump_targets(data, pd.Series(dict(index=7, image=IMAGE, image_path="p.png"))) == [root / "p.png"]
    assert v.dump_targets(data, dict(index=7, image=[IMAGE, IMAGE])) == [root / "7_0.png", root / "7_1.png"]
    assert v.dump_targets(data, dict(index=7, image=[IMAGE], image_path=["a.png"])) == [root / "a.png"]
    assert v.dump_targets(data, pd.Series(dict(index=7, image_path="['a.png', 'b.png']"))) == \
        [Path("a.png"), Path("b.png"), root / "a.png", root / "b.png"]
    assert v.dump_targets(data, pd.Series(dict(index=7, question="q"))) == []
    os.mkfifo(root / "7.png")
    with pytest.raises(CellError, match="7.png: not a regular file"):
        v.guard_dump_targets(data, pd.Series(dict(index=7, image=IMAGE)))
    (root / "8.png").mkdir()
    with pytest.raises(CellError, match="8.png: is a directory"):
        v.guard_dump_targets(data, pd.Series(dict(index=8, image=IMAGE)))
    (root / "9.png").write_bytes(b"x")
    v.guard_dump_targets(data, pd.Series(dict(index=9, image=IMAGE)))
    v.guard_dump_targets(data, pd.Series(dict(index=10, image=IMAGE)))          # not there yet: decoded later


def test_changed_cells_are_decoded_again(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    frame = pd.DataFrame([dict(index=0, image=IMAGE), dict(index=1, image=IMAGE + "B")])
    data = SimpleNamespace(img_root=str(root), data=frame)
    for i in (0, 1):
        (root / f"{i}.png").write_bytes(b"old")
    assert v.refresh_dumped_images(data) == 2                 # no record of their source: decoded again
    manifest = json.loads((root / v.IMAGE_MANIFEST).read_text())
    assert sorted(manifest) == ["0.png", "1.png"] and manifest["0.png"] != manifest["1.png"]
    for i in (0, 1):
        (root / f"{i}.png").write_bytes(b"decoded")
    assert v.refresh_dumped_images(data) == 0
    frame.loc[1, "image"] = IMAGE + "C"
    assert v.refresh_dumped_images(data) == 1
    assert (root / "0.png").exists() and not (root / "1.png").exists()
    assert not list(root.glob(".*.tmp*"))
    assert v.refresh_dumped_images(SimpleNamespace(img_root=str(root), data=pd.DataFrame(dict(index=[0])))) == 0


# ------------------------------------------------------------------------------------------------ messages
def test_refusals_name_the_row_column_and_value(tmp_path):
    code = "[__import__('os').system('x'), " + "'a', " * 12 + "]"
    message = refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(image=code)), "OCRBench")
    assert message.startswith("row 1 (index '0'), column 'image': a multi-image 'image' cell must be a Python "
                              f"literal, got {code[:60] + '...'!r}")
    message = refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(image="7")), "OCRBench")
    assert message.startswith("row 1 (index '0'), column 'image': image '7': a cell of 64 characters or fewer must be "
                              "the index of another row (VLMEvalKit's image reference)")
    long_index = "L" * 40
    rows = vqa_rows(2)
    rows[1].update(index=long_index, answer="'x'")
    message = refused(write_tsv(tmp_path / "OCRBench.tsv", rows), "OCRBench")
    assert message.startswith(f"row 2 (index {long_index[:30] + '...'!r}), column 'answer': an OCRBench answer must "
                              "be a list literal of strings such as ['a', 'b'], got \"'x'\"")
    message = refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(index="a-b")), "OCRBench")
    assert message.startswith("row 1 (index 'a-b'), column 'index': index 'a-b' is not a plain integer")
    message = refused(write_tsv(tmp_path / "OCRBench.tsv", vqa_rows(category="Poetry")), "OCRBench")
    assert message.endswith("column 'answer': OCRBench category 'Poetry' is not one of OCRBench's 10 (Regular Text "
                            "Recognition, Irregular Text Recognition, Artistic Text Recognition, ...)")


def test_reference_and_repeat_messages_name_the_value():
    idx = {"0", "1", "2"}
    with pytest.raises(CellError, match=r"^image '1' refers to its own row"):
        v.check_image_cell("1", idx, own_index="1")
    with pytest.raises(CellError, match=r"^image '2' refers to a row whose image is itself a reference; refer to the "
                                        r"row that holds the image$"):
        v.check_image_cell("2", idx, own_index="0", references=frozenset({"2"}))
    long_key = "K" * 40
    with pytest.raises(CellError, match=rf"^rows 1 and 2 share index '{'K' * 30}\.\.\.' but hold different images "
                                        r"\(VLMEvalKit would answer"):
        v._check_repeated_indexes([long_key, long_key], ["a", "b"])
    with pytest.raises(CellError, match=r"^image_path '~/b.png' names a file"):
        v.check_relative_name("~/b.png")
    with pytest.raises(CellError, match=r"^image_path 'a\\x00b.png' is not a file path"):
        v.check_path_cell("a\x00b.png")
    with pytest.raises(CellError, match=r"^a multi-image 'image' cell must be a list literal of strings such as "
                                        r"\['a', 'b'\], got '\[0, 1, 2, "):
        v.check_image_cell(repr(list(range(40))), idx)
    with pytest.raises(CellError, match=r"^a multi-image 'image_path' cell must be a list literal"):
        v.image_path_names("[1, 2]")


def test_mathvista_messages_and_the_skills_column(tmp_path):
    path = tmp_path / "MathVista_MINI.tsv"
    message = refused(write_tsv(path, mathvista_rows(choices="'1'")), "MathVista_MINI")
    assert "MathVista 'choices' (multi_choice row) must be a list literal of strings" in message
    message = refused(write_tsv(path, mathvista_rows(skills="'algebra'")), "MathVista_MINI")
    assert "MathVista 'skills' must be a list literal of strings" in message
    message = refused(write_tsv(path, mathvista_rows(skills="f()")), "MathVista_MINI")
    assert "column 'skills'" in message and "Python code (Call)" in message     # evaluated: checked as an expression


def test_a_reference_is_an_image_cell_of_at_most_64_characters(tmp_path):
    """Row 2's image is row 1's 64-character index (a reference); row 3 refers to row 2: a chain, refused. A
    65-character image is data, so referring to its row is fine."""
    key = "k" * 64
    rows = vqa_rows(3)
    rows[0]["index"] = key
    rows[1].update(index="r1", image=key)
    rows[2]["image"] = "r1"
    refused(write_tsv(tmp_path / "OCRBench.tsv", rows), "OCRBench", "row 3", "itself a reference")
    rows = vqa_rows(2)
    rows[0].update(index="r0", image="y" * 65)
    rows[1]["image"] = "r0"
    assert v.validate_tsv(write_tsv(tmp_path / "OCRBench.tsv", rows), get_benchmark("OCRBench")) == 2


def test_bracket_on_one_side_is_a_plain_path():
    assert v.image_path_names("[odd.png") == ["[odd.png"] and v.image_path_names("odd].png]") == ["odd].png]"]


def test_image_file_messages(tmp_path):
    text = tmp_path / "text.png"
    text.write_bytes(b"not an image")
    with pytest.raises(CellError, match=r"cannot read the image file \(Not a directory\)"):
        v.check_image_file(text / "below")
    with pytest.raises(CellError, match=r"not an image Pillow can read \(UnidentifiedImageError\)"):
        v.check_image_file(text, probe=True)


def test_dump_targets_of_a_row_whose_image_is_none(tmp_path):
    root = tmp_path / "img"
    data = SimpleNamespace(img_root=str(root))
    assert v.dump_targets(data, dict(index=7, image=None, image_path="a.png")) == [Path("a.png"), root / "a.png"]


def test_guard_checks_every_target(tmp_path):
    """A no-image row's targets: the path as given (missing here) and under img_root (a FIFO): refused."""
    root = tmp_path / "img"
    root.mkdir()
    os.mkfifo(root / "a.png")
    with pytest.raises(CellError, match="a.png: not a regular file"):
        v.guard_dump_targets(SimpleNamespace(img_root=str(root)), pd.Series(dict(index=1, image_path="a.png")))


def test_refresh_survives_odd_manifests_cells_and_folders(tmp_path, caplog):
    root = tmp_path / "a" / "img"                            # parents missing: created
    frame = pd.DataFrame([dict(index=0, image=IMAGE)])
    assert v.refresh_dumped_images(SimpleNamespace(img_root=str(root), data=frame)) == 0
    assert json.loads((root / v.IMAGE_MANIFEST).read_text())["0.png"]
    (root / v.IMAGE_MANIFEST).write_text("[1, 2]")            # not a mapping: no record
    (root / "0.png").write_bytes(b"old")
    with caplog.at_level(logging.WARNING):
        assert v.refresh_dumped_images(SimpleNamespace(img_root=str(root), data=frame)) == 1
    assert f"{root}: 1 decoded image(s) no longer match the TSV (or have no record); decoding them again" in caplog.text
    blocked = tmp_path / "file"
    blocked.write_text("x")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert v.refresh_dumped_images(SimpleNamespace(img_root=str(blocked / "img"), data=frame)) == 0
    assert f"{blocked / 'img' / v.IMAGE_MANIFEST}: cannot record the decoded images (" in caplog.text


# ------------------------------------------------------------------------------------------------ exact refusals
def refusal(check, *args) -> str:
    with pytest.raises(CellError) as exc:
        check(*args)
    return str(exc.value)


def test_index_refusals_are_exact():
    assert refusal(v.check_index, str(2 ** 53)) == (f"index {2 ** 53} is above 2**53: the prediction xlsx would store "
                                                    "it as an inexact float; renumber the rows")
    assert refusal(v.check_index, "NaN") == ("index 'NaN' reads as a missing value or a float (pandas turns it into "
                                             "NaN); use an integer or another name")
    assert refusal(v.check_index, "a.b") == ("index 'a.b' is not a plain integer or a name of letters, digits and '_' "
                                             "(VLMEvalKit evaluates it as Python and names the image file after it)")


def test_unsafe_expression_reasons_are_exact():
    assert v.unsafe_expression("[" * 200_000 + "]" * 200_000) is None     # ast.parse refuses it: eval would too
    assert v.unsafe_expression("['a'] * 100") == "an unbounded product or power"


def test_a_bare_cr_after_a_quoted_cr_is_still_refused(tmp_path):
    """A CR inside a quoted cell is allowed; the scan goes on and finds the bare one two lines later."""
    path = tmp_path / "x.tsv"
    path.write_bytes(b'index\tquestion\n1\t"a\rb"\n2\tok\n3\tbad\rcell\n')
    assert refusal(v.check_line_ends, path) == ("line 4: a bare carriage return (\\r) inside an unquoted cell would "
                                                "split the row there; replace it with a space")
    path.write_bytes(b'index\tquestion\n1\t"a\rb"\n2\tok\n')
    v.check_line_ends(path)


def test_an_unreadable_tsv_is_one_line_naming_the_parser_error(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"a\tb\n1\t2\n1\t2\t3\t4\n")
    assert refusal(v.read_text_table, path) == ("not a readable TSV (ParserError: Error tokenizing data. C error: "
                                                "Expected 2 fields in line 3, saw 4)")

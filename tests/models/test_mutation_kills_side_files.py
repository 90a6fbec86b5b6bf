"""The checkpoint's JSON side files read through ``models/side_files.py``: which token texts count as special or
added (the tokenizer's prompt splitting depends on them), and the exact one line each bad file gives (the file, the
field, what was found, the fix)."""
from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, StrictInt

from minimonkey_eval.errors import CheckpointError
from minimonkey_eval.eval.sweep.state import SweepError
from minimonkey_eval.models.side_files import (
    AddedToken,
    AddedTokens,
    ShardIndex,
    SpecialTokensMap,
    TokenizerConfig,
    TokenizerSideFiles,
    read_side_file,
    special_contents,
)

HF = "the file does not have the shape a Hugging Face checkpoint has"


def write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def line(path, model, **kwargs) -> str:
    with pytest.raises(CheckpointError) as exc:
        read_side_file(path, model, **kwargs)
    return str(exc.value)


# ---- which texts are special / added ----------------------------------------------------------------------------

def test_special_contents_flattens_strings_tokens_and_lists_in_order_dropping_empty_and_none():
    values = [None, "<a>", AddedToken(content="<b>"), ["<c>", AddedToken(content="<d>", special=False)], "", [""]]
    assert special_contents(values) == ["<a>", "<b>", "<c>", "<d>"]
    assert special_contents([]) == [] and special_contents([None, ""]) == []


def test_every_special_key_of_the_tokenizer_config_counts_and_no_other_key_does():
    cfg = TokenizerConfig.model_validate({
        "bos_token": "<s>", "eos_token": {"content": "</s>"}, "unk_token": "<unk>", "pad_token": "<pad>",
        "sep_token": "<sep>", "cls_token": "<cls>", "mask_token": "<mask>",
        "additional_special_tokens": ["<img>", {"content": "</img>"}], "foo_token": "<foo>"})
    assert cfg.special() == ["<s>", "</s>", "<unk>", "<pad>", "<sep>", "<cls>", "<mask>", "<img>", "</img>"]
    assert TokenizerConfig().special() == []


def test_added_tokens_decoder_gives_integer_ids_and_a_bare_string_is_a_special_token():
    cfg = TokenizerConfig.model_validate({"added_tokens_decoder": {
        "5": {"content": "<x>", "special": False}, "12": "<y>"}})
    added = cfg.added()
    assert sorted(added) == [5, 12] and all(type(k) is int for k in added)
    assert (added[5].content, added[5].special) == ("<x>", False)
    assert (added[12].content, added[12].special) == ("<y>", True)


def test_the_special_tokens_map_names_more_texts_than_it_counts_special():
    smap = SpecialTokensMap.model_validate({"bos_token": "<s>", "im_start": "<|im_start|>",
                                            "additional_special_tokens": ["<a>", {"content": "<b>"}]})
    assert smap.contents() == ["<s>", "<|im_start|>", "<a>", "<b>"]
    assert smap.special() == ["<s>", "<a>", "<b>"]


def test_the_three_files_are_each_read_from_their_own_name(tmp_path):
    write(tmp_path / "tokenizer_config.json", {"bos_token": "<cfg>", "added_tokens_decoder": {"7": "<dec>"}})
    write(tmp_path / "added_tokens.json", {"<file>": 9})
    write(tmp_path / "special_tokens_map.json", {"eos_token": "<map>", "other": "<o>"})
    files = TokenizerSideFiles.read(str(tmp_path))   # a str folder works too
    assert files.config.special() == ["<cfg>"]
    assert files.added == {"<file>": 9}
    assert files.special_map.contents() == ["<map>", "<o>"]
    assert files.special_strings() == {"<cfg>", "<map>"}
    assert files.added_strings() == {"<dec>", "<file>"}


@pytest.mark.parametrize("present", ["tokenizer_config.json", "added_tokens.json", "special_tokens_map.json"])
def test_an_absent_file_is_its_empty_default(tmp_path, present):
    content = {"tokenizer_config.json": {"bos_token": "<s>"}, "added_tokens.json": {"<t>": 3},
               "special_tokens_map.json": {"unk_token": "<u>"}}[present]
    write(tmp_path / present, content)
    files = TokenizerSideFiles.read(tmp_path)
    assert files.special_strings() == ({"<s>"} if present == "tokenizer_config.json" else
                                       {"<u>"} if present == "special_tokens_map.json" else set())
    assert files.added_strings() == ({"<t>"} if present == "added_tokens.json" else set())
    assert files.config.add_bos_token is True and files.config.added() == {}


def test_a_folder_without_side_files_reads_as_empty(tmp_path):
    files = TokenizerSideFiles.read(tmp_path)
    assert files.added == {} and files.special_strings() == set() and files.added_strings() == set()


def test_the_callers_error_class_is_raised(tmp_path):
    class TokError(Exception):
        pass

    write(tmp_path / "added_tokens.json", {"<t>": "3"})
    with pytest.raises(TokError) as exc:
        TokenizerSideFiles.read(tmp_path, TokError)
    assert str(exc.value).startswith(f"{tmp_path / 'added_tokens.json'}: field '<t>': ")
    write(tmp_path / "added_tokens.json", {})
    write(tmp_path / "tokenizer_config.json", "{")
    with pytest.raises(TokError, match="tokenizer_config.json: invalid JSON"):
        TokenizerSideFiles.read(tmp_path, TokError)
    (tmp_path / "tokenizer_config.json").unlink()
    write(tmp_path / "special_tokens_map.json", [])
    with pytest.raises(TokError, match="special_tokens_map.json: field \\(top level\\)"):
        TokenizerSideFiles.read(tmp_path, TokError)


# ---- the one line of each bad file ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["-1", "1.5", "x1", "", " 3"])
def test_a_token_id_that_is_not_a_non_negative_integer_is_refused(tmp_path, key):
    path = write(tmp_path / "tokenizer_config.json", {"added_tokens_decoder": {"3": "<ok>", key: "<t>"}})
    assert line(path, TokenizerConfig) == f"{path}: token id {key!r} is not a non-negative integer"


def test_a_negative_added_token_id_is_refused_and_zero_is_not(tmp_path):
    path = write(tmp_path / "added_tokens.json", {"<a>": 0, "<b>": -1})
    assert line(path, AddedTokens) == f"{path}: a token id is negative"
    write(tmp_path / "added_tokens.json", {"<a>": 0})
    assert read_side_file(path, AddedTokens).root == {"<a>": 0}


def test_a_field_of_the_wrong_shape_names_the_field_and_the_value(tmp_path):
    path = write(tmp_path / "model.safetensors.index.json", {"weight_map": {"a.weight": 1}})
    assert line(path, ShardIndex) == (f"{path}: field weight_map.'a.weight': Input should be a valid string "
                                      f"(got 1); {HF}")
    write(tmp_path / "model.safetensors.index.json", {"weight_map": {"w": 1}})
    assert line(path, ShardIndex) == f"{path}: field weight_map.w: Input should be a valid string (got 1); {HF}"


def test_a_top_level_of_the_wrong_shape(tmp_path):
    path = write(tmp_path / "model.safetensors.index.json", [1])
    assert line(path, ShardIndex) == (f"{path}: field (top level): Input should be a valid dictionary or instance of "
                                      f"ShardIndex (got [1]); {HF}")


def test_an_odd_key_is_quoted_with_escapes_and_a_list_position_is_a_number(tmp_path):
    path = write(tmp_path / "special_tokens_map.json", {"a\nb": {"c": 1}})
    assert line(path, SpecialTokensMap) == (f"{path}: field 'a\\nb'.str: Input should be a valid string "
                                            f"(got {{'c': 1}}); {HF}")

    class Numbers(BaseModel):
        xs: list[StrictInt]

    path = write(tmp_path / "numbers.json", {"xs": [1, "two"]})
    assert line(path, Numbers) == f"{path}: field xs.1: Input should be a valid integer (got 'two'); {HF}"


@pytest.mark.parametrize("width", [58, 59, 60])
def test_the_value_shown_is_cut_after_60_characters(tmp_path, width):
    value = "v" * width            # ascii() adds the two quotes
    path = write(tmp_path / "added_tokens.json", {"k": value})
    shown = repr(value) if width <= 58 else repr(value)[:57] + "..."
    assert line(path, AddedTokens) == f"{path}: field k: Input should be a valid integer (got {shown}); {HF}"


def test_invalid_json_and_the_callers_fix(tmp_path):
    path = write(tmp_path / "x.json", '{\n  "a": ,}')
    assert line(path, AddedTokens) == f"{path}: invalid JSON (Expecting value: line 2 column 8 (char 9))"
    assert line(path, AddedTokens, fix="delete it") == (f"{path}: invalid JSON (Expecting value: line 2 column 8 "
                                                        "(char 9)); delete it")
    write(tmp_path / "x.json", "[" * 100_000)
    assert line(path, AddedTokens).startswith(f"{path}: invalid JSON (maximum recursion depth exceeded")


def test_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'{"x": "\xff"}')
    assert line(path, AddedTokens) == f"{path}: not UTF-8 text; restore the file from the checkpoint's source"
    assert line(path, AddedTokens, fix="run the sweep again") == f"{path}: not UTF-8 text; run the sweep again"


def test_a_path_that_cannot_be_read(tmp_path):
    assert line(tmp_path, AddedTokens) == f"{tmp_path}: cannot read it (Is a directory)"
    missing = tmp_path / "missing.json"
    assert line(missing, AddedTokens) == f"{missing}: cannot read it (No such file or directory)"


def test_a_field_error_ends_with_the_callers_fix_and_class(tmp_path):
    path = write(tmp_path / "added_tokens.json", {"k": None})
    with pytest.raises(SweepError) as exc:
        read_side_file(path, AddedTokens, SweepError, fix="start the sweep afresh")
    assert str(exc.value) == f"{path}: field k: Input should be a valid integer (got None); start the sweep afresh"


def test_a_good_file_gives_its_typed_value(tmp_path):
    path = write(tmp_path / "model.safetensors.index.json",
                 {"metadata": {"total_size": 4}, "weight_map": {"a": "model-1.safetensors"}, "extra": 1})
    index = read_side_file(path, ShardIndex)
    assert index.weight_map == {"a": "model-1.safetensors"} and index.metadata == {"total_size": 4}


def test_a_model_whose_validation_recurses_too_deeply_is_one_line(tmp_path):
    """json.loads refuses deep nesting first; a caller's model (the sweep state is one) may still recurse."""
    from pydantic import model_validator

    class Deep(BaseModel):
        @model_validator(mode="before")
        @classmethod
        def forever(cls, data):
            return cls.forever(data)

    path = write(tmp_path / "deep.json", {})
    assert line(path, Deep) == f"{path}: nested too deeply"

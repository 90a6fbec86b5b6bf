"""Trust at the edges, second round: TSV cells and command-line values that used to be silently wrong or unclear.

Each test asserts the one promised behaviour: a ``DataError`` / ``error:`` line naming the file, row or option.
"""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from helpers.runner_utils import FAST_TILES, cli_env
from PIL import Image

from minimonkey_eval import cli
from minimonkey_eval.datasets.fixtures import encode_image, sample_rows, write_sample_tsvs
from minimonkey_eval.datasets.local import DataError, load_dataset
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.datasets.validate import CellError, validate_tsv

VQA = "OCRBench"


def _tsv(tmp_path, edit) -> object:
    df = sample_rows(VQA, n=4).reset_index(drop=True)
    for column in df.columns:
        df[column] = df[column].astype(object)
    edit(df)
    path = tmp_path / f"{VQA}.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def _refused(path, *needles) -> str:
    with pytest.raises(CellError) as exc:
        validate_tsv(path, get_benchmark(VQA))
    text = str(exc.value)
    assert len(text.splitlines()) == 1
    for needle in needles:
        assert needle in text, text
    return text


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "Infinity", "NA", "NULL", "null", "n_a"])
def test_an_index_read_as_missing_or_float_is_refused(tmp_path, value):
    def edit(df):
        df.loc[1, "index"] = value
    _refused(_tsv(tmp_path, edit), "row 2", "missing value or a float")


def test_a_repeated_index_with_another_image_is_refused_naming_both_rows(tmp_path):
    other = encode_image(Image.new("RGB", (50, 40), (200, 10, 10)))

    def edit(df):
        df.loc[3, "index"] = df.loc[0, "index"]
        df.loc[3, "image"] = other
    _refused(_tsv(tmp_path, edit), "rows 1 and 4", "different images")

    def same_image(df):   # the same image twice: allowed here (the repeat is a failed sample in the run)
        df.loc[3, "index"] = df.loc[0, "index"]
        df.loc[3, "image"] = df.loc[0, "image"]
    assert validate_tsv(_tsv(tmp_path, same_image), get_benchmark(VQA)) == 4


def test_an_image_cell_referring_to_its_own_row_or_to_a_reference_is_refused(tmp_path):
    def own(df):
        df.loc[2, "image"] = str(df.loc[2, "index"])
    _refused(_tsv(tmp_path, own), "row 3", "its own row")

    def chain(df):
        df.loc[1, "image"] = str(df.loc[0, "index"])
        df.loc[2, "image"] = str(df.loc[1, "index"])
    _refused(_tsv(tmp_path, chain), "row 3", "itself a reference")

    def fine(df):
        df.loc[1, "image"] = str(df.loc[0, "index"])
    assert validate_tsv(_tsv(tmp_path, fine), get_benchmark(VQA)) == 4


def test_a_bare_carriage_return_in_a_question_is_refused_naming_the_line(tmp_path):
    path = _tsv(tmp_path, lambda df: None)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"\t", b"\tsplit\rhere ", 1)   # an unquoted cell of the second data row
    path.write_bytes(b"\n".join(lines))
    _refused(path, "line 3", "carriage return")
    # CRLF line ends and a CR inside a quoted cell are what the reader handles: allowed
    crlf = path.with_name("crlf.tsv")
    crlf.write_bytes(_tsv(tmp_path, lambda df: None).read_bytes().replace(b"\n", b"\r\n"))
    assert validate_tsv(crlf, get_benchmark(VQA)) == 4
    quoted = path.with_name("quoted.tsv")
    lines = _tsv(tmp_path, lambda df: None).read_bytes().split(b"\n")
    cells = lines[2].split(b"\t")
    cells[2] = b'"a\rb"'                                    # the question, quoted as csv writers quote it
    lines[2] = b"\t".join(cells)
    quoted.write_bytes(b"\n".join(lines))
    assert validate_tsv(quoted, get_benchmark(VQA)) == 4


def test_the_loader_says_which_file(tmp_path):
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=4)
    path = root / f"{VQA}.tsv"
    text = path.read_text().split("\n")
    text[1] = "nan" + text[1][text[1].index("\t"):]
    path.write_text("\n".join(text))
    with pytest.raises(DataError, match=f"{VQA}.tsv: row 1"):
        load_dataset(VQA, data_root=root)


@pytest.mark.parametrize("argv", [
    ["run", "--model", "MiniMonkey", "--data", "MME", "--tiles", ""],
    ["chat", "--model-path", ".", "--question", "q", "--tiles", " "],
    ["sweep", "--model", "MiniMonkey", "--data", "MME", "--scm", ""],
    ["sweep", "--model", "MiniMonkey", "--data", "MME", "--tiles", ""],
    ["bench", "--model-path", ".", "--tiles", ""],
])
def test_an_empty_setting_is_refused_not_read_as_the_default(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "empty value" in err, err


@pytest.mark.slow
def test_the_file_size_limit_is_named(tmp_path, tiny_checkpoint):
    """Under `ulimit -f` a write fails with EFBIG and no file name: the line names the limit."""
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=3)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    proc = subprocess.run([sys.executable, "-m", "minimonkey_eval.cli", "run", "--model", "MiniMonkey",
                           "--model-path", str(tiny_checkpoint), "--data", VQA, "--data-root", str(root),
                           "--work-dir", str(tmp_path / "results"), "--tiles", FAST_TILES, "--max-new-tokens", "2",
                           "--device", "cpu", "--no-prefetch"],
                          env=cli_env(), capture_output=True, text=True, timeout=300, preexec_fn=limit)
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and ("ulimit -f" in lines[0] or "File too large" in lines[0]), lines


# ------------------------------------------------------------------------------------------------ checkpoint files
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from minimonkey_eval.errors import UserFacingError  # noqa: E402
from minimonkey_eval.models.checkpoint import CheckpointError, load_pretrained, read_config  # noqa: E402
from minimonkey_eval.models.tiny_checkpoint import write_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("sharded") / "checkpoint", shards=2)


def _copy(src, tmp_path, name="ck"):
    return shutil.copytree(src, tmp_path / name)


def _load(ckpt) -> str:
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(ckpt, dtype=torch.float32)
    text = str(exc.value)
    assert len(text.splitlines()) == 1
    return text


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_an_unknown_or_foreign_chat_template_is_refused_at_load(tmp_path, tiny_checkpoint):
    ckpt = _copy(tiny_checkpoint, tmp_path)
    _edit_json(ckpt / "config.json", lambda c: c.__setitem__("template", "internvl2_5"))
    with pytest.raises(CheckpointError, match="'internvl2_5' is not supported"):
        read_config(ckpt)
    _edit_json(ckpt / "config.json", lambda c: c.__setitem__("template", "phi3-chat"))   # an InternLM2 checkpoint
    with pytest.raises(CheckpointError, match="does not belong to InternLM2ForCausalLM"):
        read_config(ckpt)


def test_an_unknown_activation_is_refused(tmp_path, tiny_checkpoint):
    ckpt = _copy(tiny_checkpoint, tmp_path)
    _edit_json(ckpt / "config.json", lambda c: c["llm_config"].__setitem__("hidden_act", "swishy"))
    with pytest.raises(CheckpointError, match="llm_config.hidden_act 'swishy'"):
        read_config(ckpt)


def test_an_f8_tensor_of_the_right_shape_is_refused_naming_it(tmp_path, tiny_checkpoint):
    ckpt = _copy(tiny_checkpoint, tmp_path)
    shard = next(ckpt.glob("*.safetensors"))
    with safe_open(str(shard), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        meta = handle.metadata()
    key = sorted(k for k, t in tensors.items() if t.is_floating_point())[0]
    tensors[key] = tensors[key].to(torch.float8_e4m3fn)
    save_file(tensors, str(shard), metadata=meta)
    text = _load(ckpt)
    assert key in text and "F8_E4M3" in text and shard.name in text


def test_odd_shard_files_are_one_line_naming_them(tmp_path, sharded):
    outside = _copy(sharded, tmp_path, "outside")
    _edit_json(outside / "model.safetensors.index.json",
               lambda i: i["weight_map"].update({k: "../elsewhere.safetensors" for k in list(i["weight_map"])[:1]}))
    assert "not a file name inside the checkpoint folder" in _load(outside)

    folder = _copy(sharded, tmp_path, "folder")
    shard = sorted(folder.glob("*.safetensors"))[0]
    shard.unlink()
    shard.mkdir()
    assert "is a folder" in _load(folder) and shard.name in _load(folder)

    loop = _copy(sharded, tmp_path, "loop")
    shard = sorted(loop.glob("*.safetensors"))[0]
    shard.unlink()
    os.symlink(shard.name, shard)   # points at itself
    assert "symlink loop" in _load(loop)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 10**6) | st.floats(allow_nan=True)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)
SIDE_FILES = ("tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "model.safetensors.index.json")


@pytest.mark.parametrize("name", SIDE_FILES)
def test_random_json_in_a_side_file_is_one_line_never_a_traceback(tmp_path_factory, sharded, name):
    ckpt = _copy(sharded, tmp_path_factory.mktemp("side"))
    original = (ckpt / name).read_text() if (ckpt / name).exists() else None

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=JSON)
    def check(value):
        (ckpt / name).write_text(json.dumps(value))
        try:
            load_pretrained(ckpt, dtype=torch.float32)
        except UserFacingError as exc:
            assert len(str(exc).splitlines()) == 1 and (name in str(exc) or "tokenizer" in str(exc)), str(exc)

    try:
        check()
    finally:
        if original is not None:
            (ckpt / name).write_text(original)


def test_an_image_token_id_outside_the_embedding_is_refused_at_load(tmp_path, tiny_checkpoint, monkeypatch):
    """A tokenizer that maps <IMG_CONTEXT> past llm_config.vocab_size would index outside the embedding table."""
    from minimonkey_eval.models import tokenizer as tokenizer_module

    real = tokenizer_module.load_tokenizer

    def far(*args, **kwargs):
        tok = real(*args, **kwargs)
        ids = tok.convert_tokens_to_ids
        tok.convert_tokens_to_ids = lambda t: 10**6 if t == tokenizer_module.IMG_CONTEXT else ids(t)
        return tok

    monkeypatch.setattr(tokenizer_module, "load_tokenizer", far)
    text = _load(tiny_checkpoint)
    assert "<IMG_CONTEXT>" in text and "1000000" in text and "vocab_size" in text


def test_running_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys):
    """A MemoryError (``ulimit -v``, the machine's RAM) anywhere in a command: one line naming the limit, exit 2."""
    from minimonkey_eval.eval.report import build

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(build, "build_report", exhausted)
    rc = cli.main(["report", "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: out of memory") and "ulimit -v" in err

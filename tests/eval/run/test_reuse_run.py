"""Compute each image once, wired through ``run``: which rows share an image is read from the TSV (VLMEvalKit's image
references, repeated image paths), the runner keeps a group together (one rank, one window, one batch on CPU
'auto'), ``--no-reuse`` gives the same answers, SCM keeps vision reuse without prefix reuse, run.json records the
flag and what was saved, and a run killed in the middle of a group resumes to the same predictions."""
from __future__ import annotations

import json
import signal

import pandas as pd
import pytest
from helpers.reuse_data import DATASET, ONE_TILE, write_shared_tsv
from helpers.runner_utils import CountingEngine, VisionKeyRecorder, merged_predictions, part_lines

from minimonkey_eval.datasets.image_groups import groups_from_columns, payload_key, row_groups, tsv_image_groups
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run.distributed import DistContext, assign_ranks, group_order
from minimonkey_eval.eval.run.options import RunOptions
from minimonkey_eval.models import ScmConfig
from minimonkey_eval.models import engine as engine_module
from minimonkey_eval.models import reuse as reuse_module
from minimonkey_eval.models.pipeline import Pipeline
from minimonkey_eval.models.planning import Job, plan_batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMAGES, PER_IMAGE = 2, 4


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    root = tmp_path_factory.mktemp("LMUData")
    write_shared_tsv(root, images=IMAGES, per_image=PER_IMAGE)
    return root


def _run(engine, ckpt, lmudata, work, name, **kwargs):
    opts = dict(model="MiniMonkey", datasets=[DATASET], model_path=str(ckpt), data_root=str(lmudata),
                work_dir=str(work), run_name=name, tiles=ONE_TILE, max_new_tokens=6, batch_size="auto",
                progress=False)
    opts.update(kwargs)
    return run(RunOptions(**opts), engine=engine)


def _results(result) -> dict:
    meta = json.loads((result.run_dir / "run.json").read_text())
    return meta


# ---------------------------------------------------------------------------------------------------------------------
# Groups from the TSV, shards and order
# ---------------------------------------------------------------------------------------------------------------------
def test_groups_from_tsv_references(lmudata, tmp_path):
    groups = tsv_image_groups(lmudata / f"{DATASET}.tsv")
    # rows interleaved (image 0, image 1, image 0, ...): a row holding an index refers to the row carrying the image
    assert groups == {str(i): f"row:{i % IMAGES}" for i in range(IMAGES * PER_IMAGE)}
    table = pd.read_csv(lmudata / f"{DATASET}.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(table["image"][IMAGES:]) == [str(i % IMAGES) for i in range(IMAGES, IMAGES * PER_IMAGE)]
    # repeated image paths join groups (MME's pairs), a reference joins its carrier, rows without an image are in none
    assert groups_from_columns(["a", "b", "c", "d", "e"], ["\x00", "\x00", "a", "\x00", ""],
                               ["p1.jpg", "p1.jpg", "x.jpg", "p2.jpg", ""]) == \
        {"a": "row:a", "b": "row:a", "c": "row:a", "d": "row:d"}
    assert groups_from_columns([0, 1, 2], ["\x00", "0", "\x00"]) == {"0": "row:0", "1": "row:0", "2": "row:2"}
    # multi-image rows: the list of paths is the key
    assert groups_from_columns([0, 1], None, ["['a.png', 'b.png']", "['a.png', 'b.png']"]) == \
        {"0": "row:0", "1": "row:0"}
    # a reference to an unknown index is not a reference (vlmeval would refuse the file)
    assert groups_from_columns([0, 1], ["\x00", "7"]) == {"0": "row:0", "1": "row:1"}
    # the same image stored twice (its base64 repeated): one group, by the digest of the cell
    same, other = "QUJD" * 40, "REVG" * 40
    keys = [payload_key(c) for c in (same, other, same, "0")]
    assert keys[0] == keys[2] != keys[1] and keys[3] == "0" and len(keys[0]) < 64
    assert groups_from_columns([0, 1, 2, 3], keys) == {"0": "row:0", "1": "row:1", "2": "row:0", "3": "row:0"}
    repeated = tmp_path / "repeated" / f"{DATASET}.tsv"
    repeated.parent.mkdir()
    table.assign(image=[same, other, same, other] + list(table["image"][4:])).to_csv(repeated, sep="\t", index=False)
    assert tsv_image_groups(repeated) == {str(i): f"row:{i % IMAGES}" for i in range(IMAGES * PER_IMAGE)}
    # the real fixtures: MME pairs, HallusionBench figure pairs, circular MMBench copies
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs

    paths = write_sample_tsvs(tmp_path, datasets=["MME", "HallusionBench", "MMBench_DEV_EN"], n=3)
    mme = tsv_image_groups(paths["MME"])
    assert len(mme) == 6 and len(set(mme.values())) == 3
    assert len(set(tsv_image_groups(paths["HallusionBench"]).values())) == 6
    mmb = tsv_image_groups(paths["MMBench_DEV_EN"])
    assert len(set(mmb.values())) == 3 and len(mmb) > 3
    # on a loaded dataset: one key per row position
    from minimonkey_eval.datasets.local import load_dataset

    dataset = load_dataset(DATASET, data_root=lmudata)
    assert row_groups(dataset) == [f"row:{i % IMAGES}" for i in range(IMAGES * PER_IMAGE)]


def test_shards_keep_groups_whole_and_balanced():
    groups = ["a", "b", "a", "b", "c", None, "a", "d", "d", None]
    for world in (2, 3):
        ranks = assign_ranks(groups, world)
        for key in "abcd":
            assert len({r for r, g in zip(ranks, groups) if g == key}) == 1
        load = [ranks.count(r) for r in range(world)]
        assert max(load) - min(load) <= 3                        # the largest group's size
        shards = [DistContext(rank=r, world_size=world).shard_groups(groups) for r in range(world)]
        assert sorted(p for s in shards for p in s) == list(range(len(groups)))   # every row exactly once
    assert assign_ranks(groups, 2) == assign_ranks(list(groups), 2)              # deterministic
    assert assign_ranks([None] * 7, 3) == [i % 3 for i in range(7)]              # no groups: VLMEvalKit's i % W
    assert DistContext().shard_groups(groups) == list(range(len(groups)))
    assert group_order(list(range(10)), groups) == [0, 2, 6, 1, 3, 4, 5, 7, 8, 9]


def test_planner_group_size_and_window_stretch(engine, lmudata):
    # on CPU 'auto' (batch 1) a sharing group fills one batch of up to group_size; other rows stay alone
    assert plan_batches([10, 10, 10, 9], 1, groups=["g", "g", "g", None], group_size=16) == [[0, 1, 2], [3]]
    assert plan_batches([10] * 5, 1, groups=["g"] * 5, group_size=2) == [[0, 1], [2, 3], [4]]
    assert plan_batches([10, 10, 9], 1, groups=["g", "g", None]) == [[0], [1], [2]]

    # a window of 2 is stretched to keep the consecutive questions of one image together

    from minimonkey_eval.datasets.local import load_dataset

    dataset = load_dataset(DATASET, data_root=lmudata)
    image0 = dataset.dump_image(dataset.data.iloc[0])
    image1 = dataset.dump_image(dataset.data.iloc[1])
    from minimonkey_eval.models import Tiling

    jobs = [(image0, "g0", q) for q in ("a?", "b?", "c?", "d?", "e?")] + [(image1, "g1", "f?")]
    recorder = VisionKeyRecorder(engine)

    def describe(i):
        image, key, question = jobs[i]
        return Job(key=i, images=image, question=question, tiling=Tiling.msac(1, 1, 1, 1), max_new_tokens=2,
                   image_key=key)

    list(Pipeline(recorder, batch_size=8, window=2, threads=1).run(range(len(jobs)), describe))
    assert [len(b) for b in recorder.batches] == [5, 1]
    recorder.batches = []
    list(Pipeline(recorder, batch_size=8, window=2, threads=1, reuse=False).run(range(len(jobs)), describe))
    assert [len(b) for b in recorder.batches] == [2, 2, 2]   # without reuse: plain windows of 2


# ---------------------------------------------------------------------------------------------------------------------
# Through run
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(engine, tiny_checkpoint, lmudata, tmp_path_factory):
    """The predictions without reuse (every question on its own)."""
    result = _run(engine, tiny_checkpoint, lmudata, tmp_path_factory.mktemp("noreuse"), "plain", reuse=False)
    return result


def test_questions_about_one_image_get_different_answers(reference):
    """The comparisons mean something only if one image's questions get different answers from the tiny model."""
    answers = [p for _i, p, _f in merged_predictions(reference.run_dir, DATASET)]
    for k in range(IMAGES):
        assert len(set(answers[k::IMAGES])) > 1, answers


def test_no_reuse_and_reuse_answer_alike(engine, tiny_checkpoint, lmudata, tmp_path, reference, monkeypatch):
    """``run --no-reuse`` and ``run``: equal predictions; the TSV's references are the keys (no image is hashed);
    run.json records the flag and, per dataset, what reuse saved; --no-reuse may resume a reuse run folder."""
    from minimonkey_eval.cli import build_parser
    from minimonkey_eval.eval.run.options import options_from_args

    args = build_parser().parse_args(["run", "--model", "MiniMonkey", "--data", DATASET, "--no-reuse"])
    assert options_from_args(args, [DATASET]).reuse is False
    assert options_from_args(build_parser().parse_args(["run", "--model", "MiniMonkey", "--data", DATASET]),
                             [DATASET]).reuse is True

    hashed = []
    real_key = reuse_module.image_content_key
    monkeypatch.setattr(reuse_module, "image_content_key", lambda image: hashed.append(image) or real_key(image))
    counting = CountingEngine(engine)
    result = _run(counting, tiny_checkpoint, lmudata, tmp_path, "reuse")
    assert merged_predictions(result.run_dir, DATASET) == merged_predictions(reference.run_dir, DATASET)
    assert hashed == []                                  # the TSV said which rows share an image
    assert counting.batches == [PER_IMAGE] * IMAGES      # CPU 'auto': one image's questions in one batch

    meta, plain = _results(result), _results(reference)
    assert meta["reuse"] is True and plain["reuse"] is False
    saved, none = meta["results"][DATASET]["reuse"], plain["results"][DATASET]["reuse"]
    n = IMAGES * PER_IMAGE
    assert saved["enabled"] and saved["samples"] == n and saved["images"] == n and saved["vit_passes"] == IMAGES
    assert saved["saved_vit_passes"] == n - IMAGES and saved["saved_prefill_tokens"] > 0
    assert saved["prompt_tokens"] == none["prompt_tokens"] == none["prefill_tokens"]
    assert not none["enabled"] and none["saved_vit_passes"] == 0 and none["saved_prefill_tokens"] == 0
    records = part_lines(result.run_dir, DATASET)
    assert sum(r["reuse"]["vit_passes"] for r in records) == IMAGES      # per-record counters, summed above

    # not part of the identity: --no-reuse resumes a folder a reuse run started
    partial = _run(engine, tiny_checkpoint, lmudata, tmp_path, "mixed", limit=3)
    assert partial.outcomes[DATASET].inferred == 3
    resumed = _run(engine, tiny_checkpoint, lmudata, tmp_path, "mixed", reuse=False)
    assert resumed.outcomes[DATASET].inferred == n - 3
    assert merged_predictions(resumed.run_dir, DATASET) == merged_predictions(reference.run_dir, DATASET)
    assert _results(resumed)["reuse"] is False


def test_scm_keeps_vision_reuse_without_prefix_reuse(engine, tiny_checkpoint, lmudata, tmp_path, monkeypatch):
    shared = []
    original = engine_module.generate_shared
    monkeypatch.setattr(engine_module, "generate_shared", lambda *a, **k: shared.append(1) or original(*a, **k))
    scm = ScmConfig()
    counting = CountingEngine(engine)
    on = _run(counting, tiny_checkpoint, lmudata, tmp_path, "scm", scm=scm)
    off = _run(engine, tiny_checkpoint, lmudata, tmp_path, "scm_plain", scm=scm, reuse=False)
    assert merged_predictions(on.run_dir, DATASET) == merged_predictions(off.run_dir, DATASET)
    assert shared == []                                   # no shared prefix with SCM
    assert counting.batches == [1] * (IMAGES * PER_IMAGE)   # CPU 'auto' with SCM: nothing to batch for
    saved = _results(on)["results"][DATASET]["reuse"]
    assert saved["vit_passes"] == IMAGES and saved["saved_vit_passes"] == IMAGES * PER_IMAGE - IMAGES
    assert saved["saved_prefill_tokens"] == 0 and saved["prefill_tokens"] == saved["prompt_tokens"]


@pytest.mark.slow
def test_killed_in_the_middle_of_a_group_resumes_to_the_same_predictions(tmp_path, tiny_checkpoint, engine, lmudata,
                                                                         reference):
    """SIGKILL after the first answer of an image's batch of questions is on disk (the others in flight), rerun: the
    rest of that group is answered (its image computed again) and the predictions equal an uninterrupted run."""
    from helpers.runner_utils import cli_args, gated_env, signal_at_gate, warm_run
    from helpers.warm_cli import FreshCli

    work = tmp_path / "results"
    args = cli_args("run", "--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", DATASET,
                    "--data-root", lmudata, "--work-dir", work, "--run-name", "killed", "--tiles", ONE_TILE,
                    "--max-new-tokens", 6, "--batch-size", "auto", "--dtype", "fp32", "--device", "cpu")
    env, reached, _ = gated_env(tmp_path, 1)
    fresh = FreshCli()
    killed = signal_at_gate(fresh, args, env, reached, tmp_path / "killed.log")
    assert killed.returncode == -signal.SIGKILL, killed.output
    done = part_lines(work / "killed", DATASET)
    assert len(done) == 1                                  # one answer of a group of PER_IMAGE
    rerun = warm_run(fresh, args, tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.output
    n = IMAGES * PER_IMAGE
    assert f"({n} rows, {n - 1} inferred now)" in rerun.output
    indices = sorted(r["index"] for r in part_lines(work / "killed", DATASET))
    assert indices == list(range(n))
    assert merged_predictions(work / "killed", DATASET) == merged_predictions(reference.run_dir, DATASET)
    meta = json.loads((work / "killed" / "run.json").read_text())
    assert meta["results"][DATASET]["reuse"]["vit_passes"] == IMAGES + 1   # the cut group's image twice

"""``torchrun --nproc-per-node 2`` on CPU (gloo): rows sharded by image group (the questions about one image on one
rank, balanced by count; rows alone i % 2), one part file per rank, merged on rank 0, scored once; predictions
identical to one process."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers.runner_utils import FAST_TILES, cli_env, merged_predictions, part_lines

from minimonkey_eval.datasets.fixtures import write_sample_tsvs
from minimonkey_eval.datasets.image_groups import tsv_image_groups
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run.distributed import assign_ranks
from minimonkey_eval.eval.run.options import RunOptions

DATASETS = ("MME", "OCRBench")   # MME: the two questions of an image pair (i % 2 would split every pair)
LIMIT = 6


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root, datasets=list(DATASETS), n=3)
    return root


def test_two_ranks_match_one_process(tmp_path, tiny_checkpoint, engine, lmudata):
    work = tmp_path / "results"
    args = ["--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", ",".join(DATASETS), "--data-root",
            lmudata, "--work-dir", work, "--run-name", "ddp", "--tiles", FAST_TILES, "--max-new-tokens", 6,
            "--limit", LIMIT, "--batch-size", 1, "--device", "cpu", "--dtype", "fp32"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "minimonkey_eval.cli", "run", *map(str, args)]
    proc = subprocess.run(cmd, env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    run_dir = work / "ddp"
    assert proc.stdout.count("run folder:") == 1          # only rank 0 reports

    # the same rows in one process, single-threaded like the torchrun workers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run(RunOptions(model="MiniMonkey", datasets=list(DATASETS), model_path=str(tiny_checkpoint),
                                data_root=str(lmudata), work_dir=str(tmp_path / "single"), run_name="one",
                                tiles=FAST_TILES, max_new_tokens=6, limit=LIMIT, batch_size=1), engine=engine)
    finally:
        torch.set_num_threads(threads)

    import json

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["timings"]["finished"]
    for name in DATASETS:
        parts = {p.name: [json.loads(x)["index"] for x in p.read_text().splitlines()]
                 for p in sorted((run_dir / "predictions").glob(f"{name}.part*.jsonl"))}
        rows = [r[0] for r in merged_predictions(run_dir, name)]
        groups = tsv_image_groups(lmudata / f"{name}.tsv")
        keys = [groups[str(i)] for i in rows]
        ranks = assign_ranks(keys, 2)
        # whole image groups per rank, as assign_ranks deals them; within a part, batches land in bucketed order
        assert {k: sorted(v) for k, v in parts.items()} == {
            f"{name}.part{r}.jsonl": sorted(i for i, rank in zip(rows, ranks) if rank == r) for r in (0, 1)}
        for key in set(keys):
            owners = {p for p, idx in parts.items() for i in idx if groups[str(i)] == key}
            assert len(owners) == 1, (name, key, parts)
        assert abs(len(parts[f"{name}.part0.jsonl"]) - len(parts[f"{name}.part1.jsonl"])) <= 2   # balanced
        if name == "MME":
            assert len(set(keys)) == len(rows) // 2          # the pairs: i % 2 would have split every one
        else:
            assert ranks == [i % 2 for i in range(len(rows))]   # one question per image: VLMEvalKit's i % 2
        assert len(part_lines(run_dir, name)) == len(rows) == min(LIMIT, 6 if name == "MME" else 3)
        assert merged_predictions(run_dir, name) == merged_predictions(single.run_dir, name)
        assert (run_dir / f"{name}_score.csv").read_text() == (single.run_dir / f"{name}_score.csv").read_text()
    assert (run_dir / "summary.csv").read_text().replace("ddp", "one") == \
        (single.run_dir / "summary.csv").read_text()

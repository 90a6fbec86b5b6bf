"""Mutation testing of one critical module with mutmut, using only the tests that cover it (docs/testing.md).

For each module a scratch folder (outside the checkout: the suite checks that tests leave the checkout unchanged)
gets links to the package and the tests and a pyproject.toml whose ``[tool.mutmut]`` mutates that one file and runs
only its tests; mutmut then mutates, records which test covers which function, and runs each mutant against the
tests that reach it. Prints killed / survived / timeout / other per module and lists every non-killed mutant
(``--diff`` adds its diff). Results are kept in the scratch folder: a second run only retests changed functions
unless ``--fresh``; ``--retest`` reruns the previously non-killed mutants (after new tests were written).

    python scripts/mutation.py validate            # or: scripts/mutation.sh validate
    python scripts/mutation.py all --fresh --diff
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# module name -> (file to mutate, pytest arguments selecting the tests that cover it: files, node ids, --deselect of
# minute-long sweeps that add nothing per mutant, and tests whose first call imports vlmeval's datasets: ~15 CPU
# seconds in every mutant's process). Tests marked slow are left out (pyproject's mutmut arguments).
HOSTILE, EDGES = "tests/datasets/test_hostile.py::", "tests/datasets/test_edges.py::"
MODULES: dict[str, tuple[str, list[str]]] = {
    "tiling": ("minimonkey_eval/models/tiling.py",
               ["tests/models/test_tiling.py", "tests/models/test_mutation_kills_tiling.py",
                "--deselect", "tests/models/test_tiling.py::test_dynamic_bit_equal_sweep",
                "--deselect", "tests/models/test_tiling.py::test_msac_bit_equal_sweep"]),
    "scm": ("minimonkey_eval/models/scm.py", ["tests/models/test_mutation_kills_scm.py"]),
    "significance": ("minimonkey_eval/eval/stats/significance.py",
                     ["tests/eval/stats/test_significance.py", "tests/eval/stats/test_small_sample_stats.py",
                      "tests/eval/stats/test_mutation_kills_significance.py"]),
    "store": ("minimonkey_eval/eval/run/store.py",
              ["tests/eval/run/test_predictions.py", "tests/eval/run/test_mutation_kills_store.py"]),
    "files": ("minimonkey_eval/eval/runfiles/files.py",   # atomic writes and symlink refusal (split from store)
              ["tests/eval/run/test_predictions.py", "tests/eval/run/test_mutation_kills_store.py"]),
    "validate": ("minimonkey_eval/datasets/validate.py",
                 ["tests/datasets/test_mutation_kills_validate.py",
                  EDGES + "test_an_index_read_as_missing_or_float_is_refused",
                  EDGES + "test_a_repeated_index_with_another_image_is_refused_naming_both_rows",
                  EDGES + "test_an_image_cell_referring_to_its_own_row_or_to_a_reference_is_refused",
                  EDGES + "test_a_bare_carriage_return_in_a_question_is_refused_naming_the_line",
                  HOSTILE + "test_vqa_answers_and_mathvista_lists_checked",
                  HOSTILE + "test_multi_image_paths_stay_inside_the_image_folder",
                  HOSTILE + "test_image_file_reasons", HOSTILE + "test_changed_tsv_image_is_decoded_again"]),
    "checkpoint": ("minimonkey_eval/models/checkpoint.py",   # the family's tiny checkpoints load and convert
                   ["tests/models/test_checkpoint.py", "tests/models/test_mutation_kills_checkpoint.py",
                    "tests/models/test_mutation_kills_native_config.py",
                    "tests/models/test_mutation_kills_checkpoint_load.py", "tests/models/test_family.py",
                    EDGES + "test_an_image_token_id_outside_the_embedding_is_refused_at_load",
                    EDGES + "test_an_unknown_activation_is_refused",
                    EDGES + "test_an_f8_tensor_of_the_right_shape_is_refused_naming_it",
                    EDGES + "test_odd_shard_files_are_one_line_naming_them",
                    HOSTILE + "test_transformers_config_errors_are_checkpoint_errors",
                    "--deselect", "tests/models/test_family.py::test_batch_across_4096_equals_batch_one",
                    "-k", "not batch_equals_batch_one"]),
    "config_check": ("minimonkey_eval/models/config_check.py",
                     ["tests/models/test_mutation_kills_config_check.py",
                      HOSTILE + "test_config_json_of_the_wrong_shape", HOSTILE + "test_phi3_rope_strictness",
                      HOSTILE + "test_real_configs_pass_the_shape_check",
                      "tests/models/test_mutation_kills_checkpoint.py"]),
    "record": ("minimonkey_eval/eval/runfiles/record.py",
               # not the checks that read the sources (they would read mutmut's rewritten copy)
               ["tests/eval/runfiles/test_run_record.py", "tests/eval/runfiles/test_typed_files.py",
                "tests/eval/runfiles/test_mutation_kills_record.py", "-k",
                "not (module_over_600_lines or each_rule_lives_in_one_module or imports_no_backend)"]),
    "side_files": ("minimonkey_eval/models/side_files.py",
                   [EDGES + "test_odd_shard_files_are_one_line_naming_them",
                    EDGES + "test_random_json_in_a_side_file_is_one_line_never_a_traceback",
                    "tests/models/test_mutation_kills_checkpoint.py",
                    "tests/models/test_mutation_kills_side_files.py"]),
    "samples_sheet": ("minimonkey_eval/eval/samples_sheet.py",   # the hypothesis test draws anew on every run
                      ["tests/eval/test_mutation_kills_samples_sheet.py", "tests/eval/runfiles/test_typed_files.py",
                       "-k", "not random_csv_in_samples_csv"]),
}
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}
COLUMNS = ("killed", "survived", "timeout", "no tests", "other")


def scratch_pyproject(module_file: str, tests: list[str]) -> str:
    """The checkout's pyproject.toml with its [tool.mutmut] table replaced by one for this module."""
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r"^\[tool\.mutmut\]\n.*?(?=^\[)", "", text, flags=re.S | re.M)
    settings = checkout_settings()
    existing = [t for t in tests if not t.startswith("tests/") or (REPO / t.split("::")[0]).exists()]
    return text + "\n[tool.mutmut]\n" + "\n".join([
        'source_paths = ["minimonkey_eval"]',
        f"only_mutate = {json.dumps([module_file])}",
        f"pytest_add_cli_args = {json.dumps(settings['pytest_add_cli_args'])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(existing)}",
        f"process_isolation = {json.dumps(settings.get('process_isolation', 'fork'))}",
        f"timeout_multiplier = {settings.get('timeout_multiplier', 15.0)}",
    ]) + "\n"


def checkout_settings() -> dict:
    """The checkout's own [tool.mutmut] table (pytest arguments and timeouts are shared by every module)."""
    import tomllib  # Python >= 3.11 (the suite's interpreter); only this script needs it

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]


def prepare(work: Path, module_file: str, tests: list[str], fresh: bool) -> bool:
    """The scratch folder, ready for mutmut; False when the module's test selection changed since the last run
    (mutmut then forgets every result, so a ``--retest`` would leave the killed mutants unchecked)."""
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    # mutmut copies the tests into mutants/ once and then only adds files: a moved or deleted test would stay
    # behind (and a stale copy would run). The tests are what changes between runs: copy them afresh every time.
    shutil.rmtree(work / "mutants" / "tests", ignore_errors=True)
    for name in ("minimonkey_eval", "tests"):
        link = work / name
        if link.is_symlink() and Path(os.readlink(link)) != REPO / name:
            # results of another checkout (a moved or deleted worktree): they say nothing about this one
            shutil.rmtree(work / "mutants", ignore_errors=True)
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(REPO / name)
    settings, text = work / "pyproject.toml", scratch_pyproject(module_file, tests)
    same = not settings.exists() or settings.read_text() == text
    settings.write_text(text)
    return same


def statuses(work: Path, module_file: str) -> dict[str, str]:
    meta = work / "mutants" / (module_file + ".meta")
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: STATUS.get(code, "other") for name, code in codes.items()}


def run_module(name: str, work_root: Path, args: argparse.Namespace) -> dict[str, int]:
    module_file, tests = MODULES[name]
    work = work_root / name
    same_selection = prepare(work, module_file, tests, args.fresh)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH="", MINIMONKEY_NO_PROGRESS="1")
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs)]
    if args.retest and not same_selection:
        print(f"{name}: the test selection changed since the last run; mutmut drops its results: every mutant is run")
    elif args.retest:
        survivors = [m for m, s in statuses(work, module_file).items() if s != "killed"]
        if not survivors:
            print(f"{name}: nothing to retest")
            return summarise(name, work, module_file, args, 0.0)
        command += survivors
    started = time.monotonic()
    log = work / "mutmut.log"
    with open(log, "w") as out:
        rc = subprocess.run(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        print(f"error: mutmut failed on {name} (exit {rc}); log {log}:\n{tail}", file=sys.stderr)
    return summarise(name, work, module_file, args, seconds)


def summarise(name: str, work: Path, module_file: str, args: argparse.Namespace, seconds: float) -> dict[str, int]:
    found = statuses(work, module_file)
    counts = {column: 0 for column in COLUMNS}
    for status in found.values():
        counts[status if status in counts else "other"] += 1
    killed, total = counts["killed"] + counts["timeout"], len(found)
    rate = f"{100 * killed / total:.0f}%" if total else "-"
    print(f"{name}: {total} mutants, " + ", ".join(f"{counts[c]} {c}" for c in COLUMNS)
          + f" (killed incl. timeout {rate}) in {seconds:.0f} s")
    for mutant, status in sorted(found.items()):
        if status not in ("killed", "timeout"):
            print(f"    {status}: {mutant}")
            if args.diff:
                diff = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=work,
                                      capture_output=True, text=True).stdout
                print("\n".join("        " + line for line in diff.splitlines() if line.strip()))
    return dict(counts, total=total, seconds=round(seconds))


def changed_lines(work: Path, mutant: str) -> tuple[str, str]:
    """The mutant's removed and added source lines (``mutmut show``), each joined into one line."""
    diff = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=work, capture_output=True,
                          text=True).stdout.splitlines()
    removed = " ".join(x[1:].strip() for x in diff if x.startswith("-") and not x.startswith("---"))
    added = " ".join(x[1:].strip() for x in diff if x.startswith("+") and not x.startswith("+++"))
    return removed, added


def survivor_rows(name: str, work: Path, module_file: str, jobs: int = 1) -> list[dict]:
    """Every mutant of the module that was not killed, with its change and the reason it may live
    (``scripts/mutation_reasons.py``; "UNEXPLAINED" when no reason matches: a test to write or a reason to add).
    One ``mutmut show`` per survivor, ``jobs`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from mutation_reasons import reason_for

    status = statuses(work, module_file)
    survivors = sorted((m for m, s in status.items() if s not in ("killed", "timeout")), key=_natural)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        changes = list(pool.map(lambda mutant: changed_lines(work, mutant), survivors))
    rows = []
    for mutant, (removed, added) in zip(survivors, changes):
        function, _, number = mutant.rsplit(".", 1)[1].rpartition("__mutmut_")
        function = re.sub(r"^x[_ǁ]", "", function).replace("ǁ", ".")
        rows.append({"module": name, "function": function, "mutant": number, "status": status[mutant],
                     "removed": removed, "added": added,
                     "reason": reason_for(name, function, removed, added) or "UNEXPLAINED"})
    return rows


def _natural(mutant: str) -> tuple:
    head, _, number = mutant.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def write_survivors(path: Path, rows: list[dict]) -> None:
    """The survivors as a markdown page: one table row per mutant, grouped by module."""
    def cell(text: str) -> str:
        text = text if len(text) <= 110 else text[:107] + "..."
        return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else ""

    out = ["# Mutants that survive, and why", "",
           "Written by `scripts/mutation.sh all --report --survivors docs/mutation-survivors.md` from the stored "
           "results of each module's last run: every mutant not killed, the line before and after, and why it may "
           "live (the rules of `scripts/mutation_reasons.py`). Numbers and method: [testing](testing.md).",
           ""]
    for module in dict.fromkeys(r["module"] for r in rows):
        mine = [r for r in rows if r["module"] == module]
        out += [f"## {module} ({len(mine)})", "", "| function | # | before | after | why it lives |",
                "|---|---:|---|---|---|"]
        out += [f"| {r['function']} | {r['mutant']} | {cell(r['removed'])} | {cell(r['added'])} | {r['reason']} |"
                for r in mine]
        out.append("")
    path.write_text("\n".join(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", choices=[*MODULES, "all"])
    parser.add_argument("--fresh", action="store_true", help="drop earlier results of the module(s) first")
    parser.add_argument("--retest", action="store_true", help="rerun only the mutants that were not killed")
    parser.add_argument("--diff", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--report", action="store_true", help="only summarise the stored results (run nothing)")
    parser.add_argument("--survivors", type=Path, metavar="FILE.md",
                        help="also write every surviving mutant with its change and reason to FILE.md")
    parser.add_argument("--workdir", type=Path,
                        default=Path(os.environ.get("MUTATION_WORKDIR",
                                                    Path(tempfile.gettempdir()) / "minimonkey-eval-mutation")),
                        help="scratch folder outside the checkout (default $MUTATION_WORKDIR or "
                             "/tmp/minimonkey-eval-mutation)")
    args = parser.parse_args()
    if args.workdir.resolve().is_relative_to(REPO):
        parser.error(f"--workdir {args.workdir} is inside the checkout; the suite would see the files mutmut "
                     "writes: pick a folder outside it")
    names = list(MODULES) if args.module == "all" else [args.module]
    if args.report:
        table = {name: summarise(name, args.workdir / name, MODULES[name][0], args, 0.0) for name in names}
    else:
        table = {name: run_module(name, args.workdir, args) for name in names}
    if args.survivors:
        rows = [row for name in names
                for row in survivor_rows(name, args.workdir / name, MODULES[name][0], args.jobs)]
        write_survivors(args.survivors, rows)
        unexplained = sum(r["reason"] == "UNEXPLAINED" for r in rows)
        print(f"{args.survivors}: {len(rows)} surviving mutants, {unexplained} without a reason")
    if len(names) > 1:
        print("\nmodule | mutants | " + " | ".join(COLUMNS) + " | seconds")
        for name, row in table.items():
            print(f"{name} | {row['total']} | " + " | ".join(str(row[c]) for c in COLUMNS) + f" | {row['seconds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

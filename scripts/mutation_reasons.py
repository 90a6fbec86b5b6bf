"""Why a surviving mutant may live: one line per class of survivor, matched on the mutated function and the changed
source line (``scripts/mutation.py --survivors`` writes each survivor with the first reason that matches).

Each reason says either why the change cannot alter behaviour (equivalent) or why it is accepted; a survivor no rule
matches is listed as UNEXPLAINED: write the test that kills it, or add a rule here with its reason.
A rule: (module or "*", regex on the function name or "", regex the removed line must match, regex the added line
must match, reason). Some rules take a whole small function ("." for both lines: its every change is equivalent, as
the reason says); after changing such a function, read its survivors again rather than trusting the rule.
"""
from __future__ import annotations

import re

SAME_DEFAULT = "equivalent: the argument's default is the value written out"
UTF8_LOCALE = "equivalent here: the default text encoding is UTF-8 (UTF-8 locale on this box and in CI)"
LOG_TEXT = "accepted: the wording of a log warning (tests assert the warning, the file and the numbers it names)"

RULES: list[tuple[str, str, str, str, str]] = [
    # ---- any module
    ("*", "", r"""["'](utf-8|ascii|stable)["']""", r"""["'](UTF-8|ASCII|STABLE)["']""",
     "equivalent: codec / option names are case-insensitive"),
    ("*", "", r"encoding=\"utf-8\"", r"encoding=None|read_text\(\)|\(\s*\)", UTF8_LOCALE),
    ("*", "", r"ensure_ascii=False", r"ensure_ascii=None", "equivalent: None is falsy, as False"),
    ("*", "", r"dtype=np\.float64|astype\(np\.float64\)|, np\.float64\)",
     r"dtype=None|astype\(None\)|, None\)|, \)|\(\s*[^=]*\)",
     "equivalent: the values are float64 already (numpy's default) or promoted by the next float operation"),
    ("*", "", r"logger\.(warning|info)\(", r"XX|[A-Z]{6,}|, None\)", LOG_TEXT),
    # ---- datasets/validate.py
    ("validate", "_cell_hash", r".", r".",
     "equivalent: changes the hash of every cell alike (digest size, separator, surrogatepass: a TSV read as UTF-8 "
     "holds no lone surrogates; a list cell against the text of a list), not which cells hash equal"),
    ("validate", "_dataset_types", r"question_type", r".",
     "equivalent: the default ('', None, 'XXXX') differs from 'multi_choice' either way"),
    ("validate", "check_image_file", r"permissions", r".",
     "accepted: the tests run as root, for whom os.access says every file is readable"),
    ("validate", "check_line_ends", r"rfind|count", r"None|, 1, |find\(",
     "accepted: differs only when the file starts with a newline or a tab (an empty header), which the TSV reader "
     "refuses anyway"),
    ("validate", "check_line_ends", r"replace it with a space", r".", "accepted: the wording of the fix"),
    ("validate", "check_index", r"(renumber the rows|another name|names the image file after it)", r".",
     "accepted: the wording of the fix (the index and the rule it breaks are asserted)"),
    ("validate", "check_relative_name", r"startswith", r"XX/XX",
     "equivalent: an absolute name also has an empty first part, refused by the '' test"),
    ("validate", "dump_targets|refresh_dumped_images",
     r"hasattr\(line, \"get\"\)|isinstance\(paths, list\)|is_relative_to\(root\)|json\.dumps\(new\)|"
     r"cannot record the decoded images", r".",
     "equivalent: branches for rows without an image or targets outside the image folder, which a validated row "
     "never has; the manifest's text encoding (UTF-8 locale) and the warning's text"),
    ("validate", "read_text_table", r"\[:200\]|type\(exc\)|str\(exc\)", r".",
     "accepted: the detail of a parser message (type name, spacing, length cap): the file and 'not a readable TSV' "
     "are asserted"),
    ("validate", "read_text_table", r'sep="\\t"', r"sep=None",
     "equivalent on tab-separated files: pandas sniffs the tab"),
    ("validate", "_short", r"<= n", r"< n", "accepted: a value of exactly the cut length shown with '...'"),
    ("validate", "unsafe_expression", r"unbounded product or power", r".", "accepted: the wording of the reason"),
    ("validate", "validate_tsv", r"references = frozenset\(\)|if table is None|value\.strip\(\)|_short", r".",
     "equivalent: an empty set vs None where only membership of non-empty sets is asked; the table is always "
     "passed by the caller; an empty cell is not an expression either way; the value shown in a message"),
    # ---- eval/run/store.py
    ("store", "_cut_torn_tail", r"pread|block, pos", r".",
     "equivalent: the torn-tail scan's block size and over-long reads (bytes past the end or the block hold no "
     "newline)"),
    ("store", "close|release|__init__", r"_fd (>=|=) ", r".",
     "equivalent: descriptor 0 is never the store's (stdin is open), and any negative number means closed"),
    ("store", "acquire", r"pread\(fd, 64", r".", "equivalent: a pid is far shorter than 64 bytes"),
    ("store", "acquire", r"ftruncate\(fd, 0\)", r".", "equivalent: the pid is written over the first byte next"),
    ("store", "read_records", r"record = None", r'record = ""', "equivalent: both are refused as not a record"),
    # ---- eval/runfiles
    ("files", "atomic_write_bytes", r"strerror or str\(exc\)", r".",
     "equivalent: an OSError with an errno always carries its strerror"),
    ("record", "from_dict", r'"run record"', r".",
     "accepted: the default name of a record read from no file (callers pass the path)"),
    # ---- models/side_files.py, eval/samples_sheet.py
    ("side_files", "read_side_file", r"\[:160\]", r".", "equivalent: JSON decoder messages are under 160 characters"),
    ("side_files", "special_contents", r"value is None", r".",
     "equivalent: a None item is dropped by the final filter"),
    ("samples_sheet", "_score", r"value = math\.nan", r"None",
     "equivalent: the value is only read when float() succeeded"),
    # ---- models/tiling.py, models/scm.py
    ("tiling", "_as_rgb", r".", r".", "equivalent: converting an RGB image to RGB gives the same pixels"),
    ("tiling", "_tensors", r"normalize: bool = True", r".",
     "equivalent: every caller passes normalize explicitly"),
    ("tiling", "_tensors|pixels_uint8", r"dtype=np\.uint8|dtype=torch\.float32|block\.shape\[1\]", r".",
     "equivalent: PIL RGB arrays are uint8 and torch.empty's default is float32 already; tiles are square "
     "(shape[1] = shape[2])"),
    ("tiling", "candidate_grids", r"range\(", r".",
     "equivalent: the extra grids (0 tiles, or more than max_num) are removed by the area filter that follows"),
    ("tiling", "closest_grid", r'float\("inf"\)', r".", "equivalent: float() reads 'INF' as infinity too"),
    ("tiling", "closest_grid", r"area > 0\.5", r">=",
     "equivalent: equality needs an irrational side length (area = s^2 i j / 2 with w/h = i/j gives w = s i / sqrt 2)"),
    ("tiling", "msac_tiling", r"thumb", r".",
     "equivalent: scale 2's own thumbnail, which the official code's [:-1] always drops"),
    ("tiling", "normalize_pixels", r".", r".",
     "equivalent on CPU: the CUDA branch (device constants) computes the same; checked on a GPU by "
     "tests/models/test_cuda.py"),
    ("scm", "_layer_output", r".", r".",
     "equivalent on transformers 5: decoder layers return a tensor, not a tuple"),
    # ---- eval/stats/significance.py
    ("significance", "_flip_design", r"np\.zeros\(0, dtype=np\.int64\)", r".",
     "equivalent: the counts of no differing unit are never read (the test returns p = 1 first)"),
    ("significance", "_stratum_sums", r"argsort|counts\[g\] >= MIN_GROUP|pvals|max\(1, CHUNK|arange\(m, dtype|"
     r"integers\(0, r", r".",
     "equivalent in distribution: which frequent rows are drawn by the multinomial and which by position, the "
     "normalisation of probabilities that already sum to 1, the chunk size and integer types do not change the "
     "exact bootstrap distribution"),
    ("significance", "bootstrap_stats", r"at \+= width", r"at = width",
     "equivalent in use: at most two runs are resampled together (0 + width = width)"),
    ("significance", "ci_status", r"value > hi", r"value >= hi",
     "equivalent: a value equal to hi is inside the CI and returned earlier"),
    ("significance", "mcnemar_p", r".", r".",
     "equivalent: scipy's defaults are p = 0.5 and two-sided; b = c gives p = 1 either way"),
    ("significance", "newcombe_interval", r"np\.mean\(\(xa - p1\)", r".",
     "equivalent: mean(xb - p2) = 0 and mean(xa - p1) = 0, so adding p1 or p2 leaves the covariance unchanged"),
    ("significance", "newcombe_interval", r"cov > corr|cov >= 0", r"cov >= corr|cov > 0",
     "equivalent: at equality both branches give a covariance of 0"),
    ("significance", "newcombe_interval|wilson_interval", r"min\(1\.0|max\(-1\.0", r"2\.0",
     "equivalent: the correlation and the limits never leave [-1, 1] ([0, 1] for Wilson); the clamp is for rounding"),
    ("significance", "paired", r"sa >= RIGHT_THRESHOLD", r">",
     "equivalent: binary units score exactly 0 or 1, never the threshold 0.5"),
    ("significance", "paired", r'"\|flips"', r".",
     "equivalent: any fixed label gives reproducible flips independent of the bootstrap's seed"),
    ("significance", "paper_factor", r".", r".", "equivalent: the one 'sum' rule (OCRBench) has scale 1"),
    ("significance", "randomization_test", r"np\.zeros\(\(1,", r"np\.zeros\(\(2,",
     "equivalent: only the first row of the zero shift is read"),
    ("significance", "randomization_test", r"scale = max|TIE_TOLERANCE \* scale|>= threshold", r".",
     "accepted: the tie tolerance's scale and whether a |Δ*| exactly at |Δ| - tolerance counts (ties are exact "
     "in the tests; the tolerance only absorbs rounding)"),
    ("significance", "randomization_test", r"max\(1, CHUNK|np\.arange\(c \+ 1\)|min\(1\.0, p\)", r".",
     "equivalent: the chunk size, an unread extra pmf entry, a cap that exact sums of probabilities never reach"),
    ("significance", "randomization_test", r"integers\(0, 256", r"integers\(256|\+ 8\) // 8",
     "equivalent: the default low bound is 0; an unused extra random byte"),
    ("significance", "randomization_test", r"integers\(0, 256", r"integers\(1, 256",
     "accepted: a byte of 0 excluded biases each flip by 1/255 (p moves by less than its Monte Carlo error)"),
    ("significance", "run_ci", r"_bootstrap_label\(resamples, False\)", r"None\)",
     "equivalent: None is falsy, as False"),
    ("significance", "run_ci", r"if n else \(np\.full\(2, np\.nan\)", r"\(n\) or True|np\.full\(3",
     "equivalent: the bootstrap of no units is NaN too; the SE of 2 or 3 NaNs is NaN"),
    ("significance", "verdict", r"delta > 0", r"delta >= 0", "equivalent: delta = 0 returned SAME earlier"),
    # ---- models/checkpoint.py
    ("checkpoint", "_llama_from_internlm2|_phi3|_qwen2", r"mlp_bias=False|pdrop=0\.0|attention_dropout=0\.0|"
     r"bool\(t\.get\(", r".",
     "equivalent: the official config class's own default is the value written out (bool(None) is False)"),
    ("checkpoint", "native_config", r"use_qk_norm=False|use_mean_pooling=True|use_absolute_position_embeddings=True|"
     r"vision_feature_select_strategy=\"default\"|projector_hidden_act=\"gelu\"", r".",
     "equivalent: transformers' InternVL config defaults to the value written out"),
    ("checkpoint", "native_config|plan_checkpoint|check_checkpoint|load_pretrained", r"attn_implementation", r".",
     "equivalent: callers always pass the attention kernel; None or a lost argument selects SDPA, the default"),
    ("checkpoint", "convert_state_dict|load_pretrained", r"device", r".",
     "equivalent on CPU (tensors stay on the CPU either way); the GPU check loads onto CUDA"),
    ("checkpoint", "convert_state_dict", r"len\(natives\) > 1", r"> 2",
     "equivalent: every fused tensor splits into three (q, k, v)"),
    ("checkpoint", "load_pretrained", r"strict=True|leftovers", r".",
     "equivalent: the state dict is complete (expected_tensors checked every name first) and the leftover check "
     "is an internal guard that never fires"),
    ("checkpoint", "_internlm2_wqkv", r"num_key_value_heads", r".",
     "accepted: every published InternLM2 config carries num_key_value_heads; without it the split's shape check "
     "refuses the tensor"),
    ("checkpoint", "phi3_rope_parameters", r"scale <= 1\.0", r"scale < 1\.0",
     "equivalent: at scale 1 both give an attention factor of 1"),
    ("checkpoint", "plan_checkpoint", r"getattr\(tokenizer, \"source\"", r".",
     "equivalent for sentencepiece tokenizers: their source is tokenizer.model, the fallback"),
    ("checkpoint", "plan_checkpoint", r"load_tokenizer\(path, cfg\.llm_arch\)", r".",
     "accepted: the tokenizer files decide the family; the architecture is a cross-check"),
    ("checkpoint", "plan_checkpoint", r"0 <= image_token_id < vocab", r".",
     "accepted: the ends of an internal consistency check (the image token is an added token near the end)"),
    ("checkpoint", "plan_checkpoint", r"stored_keys=located", r".",
     "accepted: with the flag true and the output layer stored, a tied native config still loads the stored layer "
     "(assign=True), as the untied one does"),
    ("checkpoint", "read_config", r"TEMPLATES_FOR_ARCH\.get", r".",
     "equivalent: the architecture is always in the table (refused earlier otherwise)"),
    ("checkpoint", "read_config", r"or \[\"\?\"\]", r".",
     "equivalent: config_check refuses a config without architectures first"),
    ("checkpoint", "split_vit_qkv", r"dim=0", r".", SAME_DEFAULT),
    ("checkpoint", r"LLMAdapter\.tied", r"False\)\)", r".", "equivalent: bool(None) is False"),
    ("checkpoint", "expected_original_shapes", r".", r".",
     "equivalent: internal checks of the key tables, which hold for every table (test_checkpoint round-trips them)"),
    ("checkpoint", "", r"\[:(200|300)\]|\[:3\]|join\(|replace\('ForCausalLM'|relative to the folder|"
     r"InternViT-300M-448px checkpoints|Path\(\"\.\"\)|where = INDEX_NAME|_shard_in\(path, shard, index_file\)|"
     r"glob\(\"\*\.pt\*\"\)|internal:", r".",
     "accepted: the wording of a refusal (the file it names and what is wrong are asserted)"),
    ("checkpoint", "_shard_in", r"\\x00", r".", "accepted: the OS refuses a file name with a NUL when it is opened"),
    ("checkpoint", "_check_regular", r"strerror or str\(exc\)", r".",
     "equivalent: an OSError from os.stat always carries its strerror"),
    # ---- models/config_check.py
    ("config_check", "", r"nullable=False", r"nullable=None", "equivalent: None is falsy, as False"),
]


def reason_for(module: str, function: str, removed: str, added: str) -> str | None:
    """The first matching rule's reason, or None."""
    for where, func, before, after, reason in RULES:
        if where not in ("*", module) or (func and not re.search(func, function)):
            continue
        if re.search(before, removed) and re.search(after, added):
            return reason
    return None

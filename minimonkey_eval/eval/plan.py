"""What a benchmark run will cost before it runs, with and without computing each image once (``minimonkey-eval plan``).

:func:`plan_datasets` reads each dataset's TSV (``<data_root>/<NAME>.tsv``; the images' headers only, never the
model's weights: the checkpoint's ``config.json`` and tokenizer are all it loads) and counts per benchmark: samples
(rows with an image), unique images (the TSV's image groups, ``datasets.image_groups``), visual tokens, the LLM
prefill tokens and the ViT tile passes one sample at a time and with reuse, and their FLOPs. Tiles come from the
image sizes through the run's own tile setting (``tile_profiles.resolve_tiles``, ``planning.estimate_tiles``; the
first image of an MMMU row doubled where the wrapper upscales it), the prompt from the wrapper's prompt rules
(``eval.backends.prompts.build_question``) through the chat template and tokenizer. With reuse the ViT encodes every
(image, tiling) once and the questions about one image prefill their common prefix (``system + user header + <img>
... </img>``, the same text before the image) once and each its own suffix; this is the best case the pipeline
reaches when a group's questions share a batch (SCM off). FLOPs (:func:`vision_flops` and :func:`llm_prefill_flops`
of ``eval.bench``; :func:`shared_prefill_flops` for a shared prefix): per ViT tile ``2 Nv (4 Dv^2 + 2 Dv Iv) T +
4 Nv T^2 Dv`` (T = 1025 tokens) + patch embedding + projector; per prefill of L tokens ``2 N W L + 2 N H d L^2 + 2 D V``
(W: the matmul weights of one LLM layer; causal attention; the last position's LM head); a prefix P shared by
suffixes S_i: ``2 N W (P + sum S_i) + 2 N H d (P^2 + sum (2 P S_i + S_i^2)) + 2 D V`` per suffix. Estimated time =
FLOPs / (``tflops`` x 10^12), ``tflops`` the sustained (not peak) rate; decoding is not counted.
"""
from __future__ import annotations

import ast
import base64
import io
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TFLOPS = 400.0   # sustained bf16 TFLOP/s: ~40% of an H100/H200's 989 dense peak
_HEAD_CHARS = 1 << 16    # base64 characters decoded first to read an image's size from its header


@dataclass
class DatasetPlan:
    """One benchmark's counts (``*_reuse``: with each image computed once); ``note`` says what was skipped."""

    dataset: str
    samples: int = 0
    unique_images: int = 0
    visual_tokens: int = 0
    prefill_tokens: int = 0
    prefill_tokens_reuse: int = 0
    vit_tiles: int = 0
    vit_tiles_reuse: int = 0
    flops: float = 0.0
    flops_reuse: float = 0.0
    skipped: int = 0
    note: str = ""

    def add(self, other: "DatasetPlan") -> None:
        for f in fields(self):
            if f.name not in ("dataset", "note"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Plan:
    """Every benchmark's :class:`DatasetPlan`, their total, and the settings they were counted with."""

    datasets: list[DatasetPlan]
    total: DatasetPlan
    tflops: float
    model: str
    tiles: str
    notes: list[str] = field(default_factory=list)

    def seconds(self, flops: float) -> float:
        return flops / (self.tflops * 1e12)


# --------------------------------------------------------------------------------------------------- FLOPs
def shared_prefill_flops(text_config, prefix: int, suffixes: list[int]) -> float:
    """FLOPs of prefilling ``prefix`` once and every suffix after it (attending to the prefix and itself, causal),
    with one LM-head position per suffix; equals ``llm_prefill_flops(text_config, [prefix + s])`` for one suffix."""
    from minimonkey_eval.eval.bench import llm_prefill_flops

    t = text_config
    heads = t.num_attention_heads
    d = getattr(t, "head_dim", None) or t.hidden_size // heads
    linear = llm_prefill_flops(t, [1]) - 2.0 * t.num_hidden_layers * heads * d - 2.0 * t.hidden_size * t.vocab_size
    attention = 2.0 * t.num_hidden_layers * heads * d
    total = linear * (prefix + sum(suffixes)) + attention * prefix * prefix
    for s in suffixes:
        total += attention * (2 * prefix * s + s * s) + 2.0 * t.hidden_size * t.vocab_size
    return total


# --------------------------------------------------------------------------------------------------- images
def _cell_images(cell: str) -> list[str]:
    """An ``image`` cell as its list of base64 payloads (a list literal for multi-image rows)."""
    text = cell.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return [text]
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [text]
    return [text]


def base64_image_size(payload: str) -> tuple[int, int]:
    """(width, height) of a base64 image, decoding its head first (the header), all of it only if needed."""
    from PIL import Image

    head = payload[:_HEAD_CHARS - _HEAD_CHARS % 4]
    for data in (head, payload):
        try:
            with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                return image.size
        except Exception:  # noqa: BLE001 - a truncated head: try the whole payload
            continue
    raise ValueError("not a readable base64 image")


def _path_sizes(paths, folders: list[Path]) -> list[tuple[int, int]]:
    from minimonkey_eval.models.planning import image_size

    out = []
    for path in paths:
        candidates = [Path(path)] + [folder / path for folder in folders]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(path)
        out.append(image_size(found))
    return out


# --------------------------------------------------------------------------------------------------- counting
@dataclass
class PlanInputs:
    """What :func:`plan_dataset` needs of the checkpoint (tokenizer, template, tokens per tile, configs) and the
    tile rule."""

    tokenizer: object
    template: object
    num_image_token: int
    img_end_id: int
    config: object           # the native (transformers) config: vision + text
    model: str
    tile_model: str
    profile: str
    override: str | None


def load_counter(model_path: str | Path, model: str, tiles: str | None) -> PlanInputs:
    """The checkpoint's config and tokenizer (no weights) and the run's tile rule for ``model`` / ``tiles``."""
    from minimonkey_eval.eval.backends.engine_backend import split_tiles_option
    from minimonkey_eval.models.chat_template import get_template
    from minimonkey_eval.models.checkpoint import native_config, read_config
    from minimonkey_eval.models.registry import MINIMONKEY, get_model
    from minimonkey_eval.models.tokenizer import IMG_CONTEXT, IMG_END, load_tokenizer

    cfg = read_config(model_path)
    tokenizer = load_tokenizer(model_path, cfg.llm_arch)
    config = native_config(cfg, tokenizer.convert_tokens_to_ids(IMG_CONTEXT))
    spec = get_model(model)
    profile, override = split_tiles_option(tiles)
    return PlanInputs(tokenizer=tokenizer, template=get_template(cfg.template, cfg.system_message),
                    num_image_token=cfg.num_image_token, img_end_id=tokenizer.convert_tokens_to_ids(IMG_END),
                    config=config, model=model, tile_model=MINIMONKEY if spec.msac_native else spec.family,
                    profile=profile, override=override)


def _question(counter: PlanInputs, line: dict, dataset: str, n_images: int) -> str:
    from minimonkey_eval.eval.backends.prompts import build_question

    try:
        return build_question(counter.model, line, dataset, n_images, counter.profile)
    except Exception:  # noqa: BLE001 - a dataset whose prompt rules are not reproduced: its raw question
        return "\n".join(["<image>"] * n_images + [str(line.get("question", ""))])


def plan_dataset(counter: PlanInputs, name: str, data_root: Path) -> DatasetPlan:
    """The counts of one dataset's TSV (a missing TSV: a plan with a note and no samples)."""
    import pandas as pd

    from minimonkey_eval.datasets.image_groups import REFERENCE_MAX_CHARS, groups_from_columns, payload_key
    from minimonkey_eval.datasets.indexes import index_key
    from minimonkey_eval.eval.backends.prompts import upscales_first_image
    from minimonkey_eval.eval.bench import llm_prefill_flops, vision_flops
    from minimonkey_eval.models.chat_template import build_query
    from minimonkey_eval.models.planning import estimate_tiles
    from minimonkey_eval.models.reuse import prefix_length
    from minimonkey_eval.models.tile_profiles import resolve_tiles

    out = DatasetPlan(name)
    path = data_root / f"{name}.tsv"
    if not path.is_file():
        out.note = f"no {path}"
        return out
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "index" not in table or not ({"image", "image_path"} & set(table.columns)):
        out.note = f"{path}: no index / image columns"
        return out
    index = [index_key(i) for i in table["index"]]
    cells = dict(zip(index, table["image"])) if "image" in table else {}
    short = [payload_key(c) for c in table["image"]] if "image" in table else None
    groups = groups_from_columns(index, short, list(table["image_path"]) if "image_path" in table else None)
    folders = [data_root / "images" / name, data_root / "images"]
    upscale = upscales_first_image(counter.model, name, counter.profile)
    sizes: dict = {}             # image group -> sizes of its images
    vision: dict = {}            # (image group, tiles) -> tiles (ViT passes with reuse)
    prefixes: dict = {}          # (image group, tiles, prefix ids) -> [prefix length, suffix lengths]
    lengths: list[int] = []
    text_config = counter.config.text_config
    for pos, key in enumerate(index):
        group = groups.get(key)
        cell = cells.get(key, "")
        if group is None or ("image" in table and not cell):
            out.skipped += 1     # no image: vlmeval skips the row
            continue
        line = table.iloc[pos].to_dict()
        try:
            if group not in sizes:
                if "image" in table:
                    carrier = cells.get(index_key(cell), cell) if len(cell) <= REFERENCE_MAX_CHARS else cell
                    sizes[group] = [base64_image_size(p) for p in _cell_images(carrier)]
                else:
                    sizes[group] = _path_sizes(_cell_images(line["image_path"]), folders)
            images = sizes[group]
            tiling = resolve_tiles(counter.tile_model, name, counter.profile, counter.override,
                                   n_images=len(images))
            tiles = tuple(estimate_tiles((w * 2, h * 2) if upscale and k == 0 else (w, h), tiling, first=k == 0)
                          for k, (w, h) in enumerate(images))
            query = build_query(_question(counter, line, name, len(images)), [0] * len(images), counter.template,
                                counter.num_image_token)
        except Exception as exc:  # noqa: BLE001 - an unreadable image or cell: counted as skipped
            out.skipped += 1
            out.note = f"{out.skipped} row(s) skipped (e.g. {key}: {type(exc).__name__}: {exc})"[:200]
            continue
        ids = counter.tokenizer.encode(query)
        visual = counter.num_image_token * sum(tiles)
        prefix = prefix_length(ids, counter.img_end_id)
        length = len(ids) + visual
        out.samples += 1
        out.visual_tokens += visual
        out.vit_tiles += sum(tiles)
        vision[(group, tiles)] = sum(tiles)
        unit = prefixes.setdefault((group, tiles, tuple(ids[:prefix])), [prefix + visual, []])
        unit[1].append(length - unit[0])
        lengths.append(length)
    out.unique_images = len({g for g, _t in vision})
    out.prefill_tokens = sum(lengths)
    out.vit_tiles_reuse = sum(vision.values())
    out.prefill_tokens_reuse = sum(p + sum(s) for p, s in prefixes.values())
    out.flops = vision_flops(counter.config, out.vit_tiles) + llm_prefill_flops(text_config, lengths)
    out.flops_reuse = vision_flops(counter.config, out.vit_tiles_reuse) + \
        sum(shared_prefill_flops(text_config, p, s) for p, s in prefixes.values())
    return out


def plan_datasets(model_path: str | Path, datasets: list[str], data_root: str | Path, model: str | None = None,
                  tiles: str | None = None, tflops: float = DEFAULT_TFLOPS) -> Plan:
    """:func:`plan_dataset` for every dataset, and their total (``model``: a registered model, default Mini-Monkey's
    ``registry.PAIR_NEW``)."""
    from minimonkey_eval.models.registry import PAIR_NEW

    model = model or PAIR_NEW
    counter = load_counter(model_path, model, tiles)
    plans = [plan_dataset(counter, name, Path(data_root)) for name in datasets]
    total = DatasetPlan("total")
    for p in plans:
        total.add(p)
    tile_text = counter.profile + (f" ({counter.override})" if counter.override else "")
    return Plan(plans, total, tflops, model, tile_text)


# --------------------------------------------------------------------------------------------------- output
COLUMNS = (("dataset", "benchmark"), ("samples", "samples"), ("unique_images", "images"),
           ("questions_per_image", "q/image"), ("visual_tokens", "visual tok"), ("prefill_tokens", "prefill tok"),
           ("prefill_tokens_reuse", "prefill tok reuse"), ("vit_tiles", "ViT tiles"),
           ("vit_tiles_reuse", "ViT tiles reuse"), ("time_s", "est. s"), ("time_s_reuse", "est. s reuse"),
           ("speedup", "saved"))


def plan_rows(plan: Plan) -> list[dict]:
    """The table's rows (raw numbers): every benchmark, then the total."""
    rows = []
    for p in plan.datasets + [plan.total]:
        row = {f.name: getattr(p, f.name) for f in fields(p)}
        row["questions_per_image"] = p.samples / p.unique_images if p.unique_images else None
        row["time_s"], row["time_s_reuse"] = plan.seconds(p.flops), plan.seconds(p.flops_reuse)
        row["speedup"] = p.flops / p.flops_reuse if p.flops_reuse else None
        rows.append(row)
    return rows


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "questions_per_image":
        return f"{value:.2f}"
    if key == "speedup":
        return f"{value:.2f}x"
    if key.startswith("time_s"):
        return f"{value:.1f}" if 10 <= value < 1e5 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_plan(plan: Plan) -> str:
    """The plan as a text table, the notes and the formula."""
    rows = plan_rows(plan)
    cells = [[header for _, header in COLUMNS]] + [[_cell(k, r.get(k)) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    for p in plan.datasets:
        if p.note or p.skipped:
            lines.append(f"{p.dataset}: {p.note or f'{p.skipped} row(s) without an image skipped'}")
    lines.append(f"model {plan.model}, tiles {plan.tiles}; 'reuse': each (image, tiling) through the ViT once and the "
                 "questions about one image prefilling their common prompt prefix once (SCM off, a group in one "
                 "batch)")
    lines.append(f"est. s = (ViT + prefill FLOPs) / ({plan.tflops:g} TFLOP/s sustained); ViT per tile "
                 "2*Nv*(4*Dv^2 + 2*Dv*Iv)*T + 4*Nv*T^2*Dv (T = 1025) + patch embedding + projector; prefill of L "
                 "tokens 2*N*W*L + 2*N*H*d*L^2 + 2*D*V (W: matmul weights of a layer); decoding not counted; "
                 "'saved' = FLOPs without / with reuse")
    return "\n".join(lines)


__all__ = ["DEFAULT_TFLOPS", "DatasetPlan", "Plan", "PlanInputs", "base64_image_size", "format_plan", "load_counter",
           "plan_dataset", "plan_datasets", "plan_rows", "shared_prefill_flops"]

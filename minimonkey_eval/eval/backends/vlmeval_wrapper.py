"""Any VLMEvalKit model as a measured run: ``run --model vlmeval:NAME --model-path DIR``.

``VLMEvalRunner`` is our runner with the engine swapped for the wrapper VLMEvalKit registers under NAME
(``vlmeval.config.supported_VLM[NAME]``, built with ``model_path=DIR``, its code unchanged). Everything else is the
runner's own: offline TSVs, the wrapper's ``use_custom_prompt`` / ``build_prompt`` exactly as VLMEvalKit's
``infer_data`` calls them, ``generate(message, dataset)`` per sample (batch size 1; a wrapper with a
``generate_batch(messages, dataset)`` gets ``--batch-size`` samples at a time), resume, failed-sample records,
score sheets, summary.csv and a run.json that records the wrapper (``vlmeval`` block: name, class, batch
interface). Building the wrapper runs with Hugging Face downloads off; a wrapper that needs the network, remote
code or a missing package fails with one line naming the class, DIR and the cause.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from minimonkey_eval.eval.run.runner import RunError, Runner, default_batch_size, parse_datasets

logger = logging.getLogger(__name__)

PREFIX = "vlmeval:"
# Options that set our engine's tiles / SCM / kernels: meaningless for somebody else's wrapper.
_ENGINE_ONLY = (("scm", "--scm"), ("msac", "--msac"),
                ("tiles", "--tiles"), ("max_new_tokens", "--max-new-tokens"),
                ("normalize_on_device", "--normalize-on-device"))
_NETWORK = re.compile(r"offline|connect|network|resolve|max retries|timed out|huggingface\.co|hub|"
                      r"LocalEntryNotFound|couldn't find|not a local folder", re.I)


def is_vlmeval_model(model: str | None) -> bool:
    return bool(model) and str(model).startswith(PREFIX)


def make_runner(opts, ctx=None, engine=None) -> Runner:
    """The runner for ``opts``: ``VLMEvalRunner`` for ``vlmeval:NAME``, else ours."""
    return VLMEvalRunner(opts, ctx) if is_vlmeval_model(opts.model) else Runner(opts, ctx, engine)


def wrapper_class(entry) -> type:
    """The class behind a ``supported_VLM`` entry (a class or a ``functools.partial`` of one)."""
    while isinstance(entry, partial):
        entry = entry.func
    return entry


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def count_params(wrapper) -> int:
    """Parameters of the torch modules the wrapper holds as attributes (each tensor once); 0 when none."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return 0
    seen: set[int] = set()
    total = 0
    for value in vars(wrapper).values():
        if isinstance(value, torch.nn.Module):
            for p in value.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


@contextlib.contextmanager
def hub_offline(allow: bool):
    """Hugging Face downloads off (env and the already-imported constants) unless ``allow``."""
    if allow:
        yield
        return
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    patched = []
    with contextlib.suppress(ImportError):
        import huggingface_hub.constants as hub_constants

        patched.append((hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE))
        hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for obj, attr, value in patched:
            setattr(obj, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_failure(name: str, cls: type, model_path: Path, exc: BaseException) -> str:
    """One line saying why VLMEvalKit's wrapper could not be built, and what to do."""
    text = " ".join(str(exc).split())[:300]
    config = model_path / "config.json"
    missing_code: list[str] = []   # modules config.json's auto_map names that DIR lacks
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        for ref in json.loads(config.read_text(encoding="utf-8")).get("auto_map", {}).values():
            for item in ref if isinstance(ref, list) else [ref]:
                module = str(item).split("--")[-1].rsplit(".", 1)[0]
                if item and not (model_path / f"{module}.py").is_file() and f"{module}.py" not in missing_code:
                    missing_code.append(f"{module}.py")
    if isinstance(exc, ImportError):
        why = f"it needs a package that is not installed ({text})"
    elif "trust_remote_code" in text or "remote code" in text.lower() or missing_code:
        files = f" ({', '.join(missing_code)} missing)" if missing_code else ""
        why = (f"it loads remote code (the model's own modeling files via trust_remote_code), which {model_path} "
               f"does not provide offline{files}; {type(exc).__name__}: {text}")
    elif _NETWORK.search(f"{type(exc).__name__} {text}"):
        why = (f"it needs the network (downloads are off: put the weights and code it loads into {model_path}; "
               f"{type(exc).__name__}: {text})")
    else:
        why = f"{type(exc).__name__}: {text}"
    return f"{PREFIX}{name}: VLMEvalKit's wrapper {class_path(cls)} could not be built from {model_path}: {why}"


@dataclass
class Staged:
    """A message ready for the wrapper (the fields the runner reads off its own wrappers' staged samples)."""

    message: list
    sample: tuple                      # (message, dataset name)
    setting: object = None             # no tile setting: the wrapper decides
    prepared: object = None
    error: BaseException | None = None


class VLMEvalAdapter:
    """The seams our runner calls on its own wrappers, forwarded unchanged to a VLMEvalKit ``BaseModel``."""

    def __init__(self, wrapper):
        self.wrapper = wrapper
        self.batch_interface = callable(getattr(wrapper, "generate_batch", None))

    def use_custom_prompt(self, dataset):
        use = getattr(self.wrapper, "use_custom_prompt", None)
        return bool(use(dataset)) if use is not None else False

    def build_prompt(self, line, dataset=None):
        return self.wrapper.build_prompt(line, dataset=dataset)

    def set_dump_image(self, dump_image):
        setter = getattr(self.wrapper, "set_dump_image", None)
        if setter is not None:
            setter(dump_image)

    def stage(self, message, dataset=None, tiling=None):
        """Nothing to prepare on the CPU ahead: the wrapper takes the message as is."""
        return Staged(message, (message, dataset))

    def generate_staged(self, staged: list) -> list[str]:
        if self.batch_interface and staged:
            dataset = staged[0].sample[1]
            answers = list(self.wrapper.generate_batch([s.message for s in staged], dataset))
            if len(answers) != len(staged):
                raise RuntimeError(f"generate_batch returned {len(answers)} answers for {len(staged)} samples")
            return [_text(a) for a in answers]
        return [_text(self.wrapper.generate(message=s.message, dataset=s.sample[1])) for s in staged]


class WrapperPipeline:
    """``models.pipeline.Pipeline``'s ``run(sources, describe)`` contract over a VLMEvalKit wrapper (the runner
    after issue 12 drives inference through a pipeline): batches of ``batch_size`` Jobs, answered by the wrapper;
    a failing batch is retried one sample at a time, a failing sample is a failed Job (``failed_at='generate'``)."""

    def __init__(self, adapter: VLMEvalAdapter, batch_size: int):
        self.adapter, self.batch_size = adapter, max(1, batch_size)

    def run(self, sources, describe):
        batch = []
        for source in sources:
            batch.append(describe(source))
            if len(batch) == self.batch_size:
                yield self._answer(batch)
                batch = []
        if batch:
            yield self._answer(batch)

    def _answer(self, jobs: list) -> list:
        ready = [j for j in jobs if j.error is None]
        staged = [self.adapter.stage(j.extra["message"], j.extra["dataset"]) for j in ready]
        try:
            answers = self.adapter.generate_staged(staged) if staged else []
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one by one, so one bad sample fails alone
            if len(ready) == 1:
                ready[0].fail("generate", exc)
                return jobs
            for job in ready:
                self._answer([job])
            return jobs
        for job, answer in zip(ready, answers):
            job.answer = answer
        return jobs


def _text(answer) -> str:
    if not isinstance(answer, str):
        raise TypeError(f"the wrapper answered a {type(answer).__name__}, not text")
    return answer


class VLMEvalRunner(Runner):
    """Our runner around VLMEvalKit's wrapper NAME instead of our engine (same run folder, resume and outputs)."""

    def __init__(self, opts, ctx=None, engine=None):
        from minimonkey_eval.datasets.local import import_vlmeval
        from minimonkey_eval.eval.run.distributed import DistContext

        self.name = opts.model[len(PREFIX):].strip()
        if not self.name:
            raise RunError("--model vlmeval:NAME: NAME missing (a model of vlmeval.config.supported_VLM)")
        for field_name, flag in _ENGINE_ONLY:
            if getattr(opts, field_name, None):
                raise RunError(f"{flag} sets our engine; it does not apply to {opts.model} (VLMEvalKit's own wrapper "
                               "decides its tiles and answer length)")
        for value, flag in ((opts.batch_size, "--batch-size"), (opts.limit, "--limit")):
            if isinstance(value, int) and value < 1:
                raise RunError(f"{flag} must be >= 1, got {value}")
        if opts.max_image_pixels is not None and opts.max_image_pixels < 0:
            raise RunError(f"--max-image-pixels must be >= 0 (0: no limit), got {opts.max_image_pixels}")
        if not opts.model_path:
            raise RunError(f"{opts.model}: --model-path DIR is required (a local copy of what the wrapper loads; "
                           "nothing is downloaded)")
        path = Path(opts.model_path).expanduser()
        if not path.is_dir():
            raise RunError(f"{path}: model directory not found (--model-path)")
        self.opts = opts
        self.ctx = ctx or DistContext()
        self.datasets = parse_datasets(opts.datasets, allow_all=True)
        self.profile = self.override = self.tile_model = None
        self.msac = False
        self.model_path = path.resolve()
        self.data_root = Path(opts.data_root).expanduser().resolve() if opts.data_root else None
        import_vlmeval(self.data_root)
        from vlmeval.config import supported_VLM

        if self.name not in supported_VLM:
            close = [k for k in supported_VLM if self.name.lower() in k.lower()][:8]
            hint = f" (close: {', '.join(close)})" if close else ""
            raise RunError(f"{opts.model}: VLMEvalKit registers no model {self.name!r} in "
                           f"vlmeval.config.supported_VLM{hint}")
        self.entry = supported_VLM[self.name]
        self.wrapper_cls = wrapper_class(self.entry)
        self.batch_interface = callable(getattr(self.wrapper_cls, "generate_batch", None))
        safe = re.sub(r"[^A-Za-z0-9._+=-]+", "-", self.name)
        self.run_name = opts.run_name or f"vlmeval-{safe}"
        if not re.fullmatch(r"[A-Za-z0-9._+=-]+", self.run_name) or self.run_name in (".", ".."):
            raise RunError(f"--run-name {self.run_name!r}: use letters, digits and ._+=- only")
        self.work_dir = Path(opts.work_dir).expanduser().resolve()
        self.run_dir = self.work_dir / self.run_name
        self.label = f"{self.name} (VLMEvalKit wrapper)"
        self._engine = None
        self._vlm = None
        self._lock = None
        self.meta = {}
        given = opts.batch_size if isinstance(opts.batch_size, int) else None   # 'auto' (issue 12): the default
        if self.batch_interface:
            self.batch_size = given or default_batch_size(self.ctx.device_for(opts.device))
        else:
            if given not in (None, 1):
                logger.warning("%s: %s has no batch interface (generate_batch); --batch-size %d -> 1", opts.model,
                               self.wrapper_cls.__name__, opts.batch_size)
            self.batch_size = 1

    # ---- settings the runner records -------------------------------------------------------------------------
    def tile_setting(self, dataset):
        return None

    def tiles_record(self, dataset: str) -> dict:
        return {"kind": "vlmeval wrapper", "tiles": "decided by the wrapper", "max_new_tokens": None}

    def identity(self) -> dict:
        return {"model": self.opts.model, "msac": False, "checkpoint_sha256": self.fingerprint, "tile_profile": None,
                "tiles_override": None, "scm": False, "scm_ratio": None, "scm_fix_off_by_one": False,
                "max_new_tokens": None,
                "demo": bool(self.opts.demo), "dtype": None, "attn": None}   # the wrapper's own choice

    def prediction_file(self, name: str) -> Path:
        return self.run_dir / f"{self.run_name}_{name}.xlsx"

    def _open_run_dir(self) -> None:
        super()._open_run_dir()
        self.meta["vlmeval"] = {"name": self.name, "class": class_path(self.wrapper_cls),
                                "ran_through": "VLMEvalKit's own wrapper (vlmeval.config.supported_VLM), unchanged",
                                "batch_interface": self.batch_interface}
        self.meta["tile_model"] = None
        self.meta["prediction_prefix"] = self.run_name   # VLMEvalKit's files: {prefix}_{DATASET}.xlsx (not {model}_)
        self._save_meta()

    # ---- the model -------------------------------------------------------------------------------------------
    @property
    def engine(self):
        raise RunError(f"{self.opts.model} runs through VLMEvalKit's wrapper; it has no engine of ours")

    @property
    def vlm(self):
        if self._vlm is None:
            kwargs = {"model_path": str(self.model_path)}
            try:
                with hub_offline(self.opts.allow_download):
                    wrapper = self.entry(**kwargs)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - the wrapper's own failure, as one line
                raise RunError(build_failure(self.name, self.wrapper_cls, self.model_path, exc)) from None
            self._vlm = VLMEvalAdapter(wrapper)
            params = count_params(wrapper)
            if params and self.meta is not None:
                self.meta["params_b"] = float(f"{params / 1e9:.4g}")
                self.meta["params_source"] = "counted: torch modules the wrapper holds"
        return self._vlm

    def _record_engine(self) -> None:
        if not self.meta.get("dtype"):
            self.meta["dtype"], self.meta["device"] = self.opts.dtype, self.opts.device

    # ---- the runner split by issue 12 (inference.Inference: describe_row -> pipeline().run) --------------------
    def describe_row(self, dataset, line):
        job = self.message_job(dataset, line)   # the wrapper decides its tiles: an OOM sample is a failed sample
        job.extra["dataset"] = dataset.dataset_name
        return job

    def pipeline(self, profile=None):
        return WrapperPipeline(self.vlm, self.batch_size)

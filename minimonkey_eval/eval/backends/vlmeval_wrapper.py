"""Any VLMEvalKit model as a measured run: ``run --model vlmeval:NAME --model-path DIR``.

:class:`VLMEvalBackend` implements ``eval.run.backend.Backend`` with the wrapper VLMEvalKit registers under NAME
(``vlmeval.config.supported_VLM[NAME]``, built with ``model_path=DIR``, its code unchanged) instead of our engine.
Everything else is the runner's own: offline TSVs, the wrapper's ``use_custom_prompt`` / ``build_prompt`` exactly
as VLMEvalKit's ``infer_data`` calls them, ``generate(message, dataset)`` per sample (batch size 1; a wrapper with a
``generate_batch(messages, dataset)`` gets ``--batch-size`` samples at a time, :class:`WrapperPipeline`), resume,
failed-sample records, score sheets, summary.csv and a run record that records the wrapper (``vlmeval`` block:
name, class, batch interface). Building the wrapper runs with Hugging Face downloads off
(``process_state.hub_offline``); a wrapper that needs the network, remote code or a missing package fails with one
line naming the class, DIR and the cause.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
from functools import partial
from pathlib import Path

from minimonkey_eval.eval.backends.base import message_job
from minimonkey_eval.eval.run.options import RunError, RunOptions
from minimonkey_eval.models.settings import default_batch_size
from minimonkey_eval.naming import safe_name
from minimonkey_eval.process_state import hub_offline

logger = logging.getLogger(__name__)

PREFIX = "vlmeval:"
# Options that set our engine's tiles / SCM / kernels: meaningless for somebody else's wrapper.
ENGINE_ONLY = (("scm", "--scm"), ("msac", "--msac"),
               ("tiles", "--tiles"), ("max_new_tokens", "--max-new-tokens"),
               ("normalize_on_device", "--normalize-on-device"))
_NETWORK = re.compile(r"offline|connect|network|resolve|max retries|timed out|huggingface\.co|hub|"
                      r"LocalEntryNotFound|couldn't find|not a local folder", re.I)


def is_vlmeval_model(model: str | None) -> bool:
    return bool(model) and str(model).startswith(PREFIX)


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


class VLMEvalAdapter:
    """What the backend asks of a VLMEvalKit ``BaseModel`` (prompts, image dumping, answers), forwarded unchanged."""

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

    def generate(self, messages: list, dataset: str) -> list[str]:
        """Answers to ``messages`` of ``dataset``: one ``generate_batch`` call when the wrapper has one, else
        ``generate`` per message."""
        if self.batch_interface and messages:
            answers = list(self.wrapper.generate_batch(messages, dataset))
            if len(answers) != len(messages):
                raise RuntimeError(f"generate_batch returned {len(answers)} answers for {len(messages)} samples")
            return [_text(a) for a in answers]
        return [_text(self.wrapper.generate(message=m, dataset=dataset)) for m in messages]


class WrapperPipeline:
    """``models.pipeline.Pipeline``'s ``run(sources, describe)`` contract over a VLMEvalKit wrapper: batches of
    ``batch_size`` Jobs, answered by the wrapper; a failing batch is retried one sample at a time, a failing sample
    is a failed Job (``failed_at='generate'``)."""

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
        try:
            answers = (self.adapter.generate([j.extra["message"] for j in ready], ready[0].extra["dataset"])
                       if ready else [])
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


class VLMEvalBackend:
    """VLMEvalKit's wrapper NAME (``opts.model == 'vlmeval:NAME'``) behind the runner (same run folder, resume and
    outputs as our engine's runs); the wrapper is built on first use and dropped by :meth:`release`."""

    def __init__(self, opts: RunOptions, ctx):
        from minimonkey_eval.datasets.local import import_vlmeval

        self.opts, self.ctx = opts, ctx
        self.name = opts.model[len(PREFIX):].strip()
        if not self.name:
            raise RunError("--model vlmeval:NAME: NAME missing (a model of vlmeval.config.supported_VLM)")
        for field_name, flag in ENGINE_ONLY:
            if getattr(opts, field_name, None):
                raise RunError(f"{flag} sets our engine; it does not apply to {opts.model} (VLMEvalKit's own wrapper "
                               "decides its tiles and answer length)")
        if not opts.model_path:
            raise RunError(f"{opts.model}: --model-path DIR is required (a local copy of what the wrapper loads; "
                           "nothing is downloaded)")
        path = Path(opts.model_path).expanduser()
        if not path.is_dir():
            raise RunError(f"{path}: model directory not found (--model-path)")
        self.model_path = path.resolve()
        import_vlmeval(Path(opts.data_root).expanduser().resolve() if opts.data_root else None)
        from vlmeval.config import supported_VLM

        if self.name not in supported_VLM:
            close = [k for k in supported_VLM if self.name.lower() in k.lower()][:8]
            hint = f" (close: {', '.join(close)})" if close else ""
            raise RunError(f"{opts.model}: VLMEvalKit registers no model {self.name!r} in "
                           f"vlmeval.config.supported_VLM{hint}")
        self.entry = supported_VLM[self.name]
        self.wrapper_cls = wrapper_class(self.entry)
        self.batch_interface = callable(getattr(self.wrapper_cls, "generate_batch", None))
        self.label = f"{self.name} (VLMEvalKit wrapper)"
        self.default_run_name = f"vlmeval-{safe_name(self.name)}"
        # VLMEvalKit's files are {prefix}_{DATASET}.xlsx: the run name, as 'vlmeval:NAME' is no file name
        self.prediction_prefix = opts.run_name or self.default_run_name
        given = opts.batch_size if isinstance(opts.batch_size, int) else None   # 'auto': the default
        if self.batch_interface:
            self.batch_size = given or default_batch_size(ctx.device_for(opts.device))
        else:
            if given not in (None, 1):
                logger.warning("%s: %s has no batch interface (generate_batch); --batch-size %d -> 1", opts.model,
                               self.wrapper_cls.__name__, opts.batch_size)
            self.batch_size = 1
        self._adapter: VLMEvalAdapter | None = None
        self._params = 0

    # ---- the model ------------------------------------------------------------------------------------------------
    @property
    def adapter(self) -> VLMEvalAdapter:
        """The wrapper, built on first use (downloads off unless --allow-download)."""
        if self._adapter is None:
            try:
                with hub_offline(self.opts.allow_download):
                    wrapper = self.entry(model_path=str(self.model_path))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - the wrapper's own failure, as one line
                raise RunError(build_failure(self.name, self.wrapper_cls, self.model_path, exc)) from None
            self._adapter = VLMEvalAdapter(wrapper)
            self._params = count_params(wrapper)
        return self._adapter

    def pipeline(self, dataset, profile=None) -> WrapperPipeline:
        self.adapter.set_dump_image(dataset.dump_image)   # builds the wrapper
        return WrapperPipeline(self.adapter, self.batch_size)

    def describe(self, dataset, line):
        job = message_job(self.adapter, dataset, line)   # the wrapper decides its tiles: an OOM sample is a failed one
        job.extra["dataset"] = dataset.dataset_name
        return job

    def release(self) -> None:
        self._adapter = None

    # ---- what the run record says --------------------------------------------------------------------------------
    def identity(self) -> dict:
        return {"model": self.opts.model, "msac": False, "tile_profile": None, "tiles_override": None, "scm": False,
                "scm_ratio": None, "scm_fix_off_by_one": False, "max_new_tokens": None, "demo": bool(self.opts.demo),
                "dtype": None, "attn": None}   # the wrapper's own choice

    def tiles_record(self, dataset: str) -> dict:
        return {"kind": "vlmeval wrapper", "tiles": "decided by the wrapper", "max_new_tokens": None}

    def record_fields(self) -> dict:
        fields = {"tile_model": None,
                  "vlmeval": {"name": self.name, "class": class_path(self.wrapper_cls),
                              "ran_through": "VLMEvalKit's own wrapper (vlmeval.config.supported_VLM), unchanged",
                              "batch_interface": self.batch_interface}}
        if self._params:
            fields.update(params_b=float(f"{self._params / 1e9:.4g}"),
                          params_source="counted: torch modules the wrapper holds")
        return fields

    def result_fields(self, records: list[dict]) -> dict:
        return {}

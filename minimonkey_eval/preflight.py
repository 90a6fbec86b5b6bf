"""Pre-flight checks (``minimonkey-eval doctor``): the :class:`Check` record and the environment checks.

A check is one row of the doctor's table: what was looked at, a status and one line of detail. ``FAIL`` is kept for
what would stop a run (missing TSV or shard, undecodable images, a bad config, no vlmeval); ``WARN`` for what a run
survives but a user should know (a TSV that is not VLMEvalKit's file, a version outside the supported range); ``OK``
and ``INFO`` for the rest. The data checks live in ``datasets.preflight``, the checkpoint check in
``models.checkpoint.check_checkpoint``; this module holds the environment's: Python, torch, CUDA, the GPUs,
flash-attn, transformers and vlmeval, each against the range this project declares in its package metadata
(``pyproject.toml``'s dependencies and extras, read back with ``importlib.metadata`` and ``packaging``).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"
DISTRIBUTION = "minimonkey-eval"


@dataclass(frozen=True)
class Check:
    area: str        # env | data | checkpoint
    item: str        # python, torch, MME, config.json, ...
    status: str      # OK | INFO | WARN | FAIL
    detail: str      # one line

    @property
    def stops_a_run(self) -> bool:
        return self.status == FAIL


def installed_version(*names: str) -> str | None:
    """The installed version of the first distribution found among ``names`` (None if none is installed)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def supported_ranges() -> dict[str, str]:
    """Distribution name (canonical) -> the version specifier this project declares for it (extras included);
    ``python`` -> Requires-Python. Empty when the project is not installed (no metadata to read)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        requires = metadata.requires(DISTRIBUTION) or []
        python = metadata.metadata(DISTRIBUTION).get("Requires-Python")
    except metadata.PackageNotFoundError:
        return {}
    out = {"python": python or ""}
    for text in requires:
        req = Requirement(text)
        out.setdefault(canonicalize_name(req.name), str(req.specifier))
    return out


def version_check(item: str, version: str | None, spec: str | None, missing_status: str = FAIL,
                  missing_detail: str = "not installed") -> Check:
    """``version`` against ``spec``: ok inside it, warn outside it, ``missing_status`` when not installed."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if version is None:
        return Check("env", item, missing_status, missing_detail)
    if not spec:
        return Check("env", item, OK, f"{version} (no range declared)")
    try:
        inside = Version(version.split("+")[0]) in SpecifierSet(spec)
    except InvalidVersion:
        return Check("env", item, WARN, f"{version}: not a version number this check can compare with {spec}")
    if inside:
        return Check("env", item, OK, f"{version} (supported: {spec})")
    return Check("env", item, WARN, f"{version} is outside the supported {spec}; results may differ from the "
                                    "tested setup (pip install -e '.[vlmeval]' installs a supported one)")


def check_environment() -> list[Check]:
    """Python, torch, CUDA / GPUs, flash-attn, transformers and vlmeval, against the declared ranges."""
    ranges = supported_ranges()
    checks = []
    if not ranges:
        checks.append(Check("env", DISTRIBUTION, INFO, "not installed as a package: no declared ranges to compare "
                                                       "with (pip install -e . from the checkout)"))
    checks.append(version_check("python", platform.python_version(), ranges.get("python")))
    torch_version = installed_version("torch")
    checks.append(version_check("torch", torch_version, ranges.get("torch"),
                                missing_detail="not installed; pip install -e . installs it"))
    if torch_version is not None:
        checks.extend(check_devices())
    flash = installed_version("flash-attn", "flash_attn")
    checks.append(version_check("flash-attn", flash, ranges.get("flash-attn"), missing_status=INFO,
                                missing_detail="not installed: attention runs on PyTorch SDPA (--attn "
                                               "flash_attention_2 needs pip install -e '.[flash]' on a CUDA machine)"))
    checks.append(version_check("transformers", installed_version("transformers"), ranges.get("transformers")))
    checks.append(version_check("vlmeval", installed_version("ms-vlmeval", "vlmeval"), ranges.get("ms-vlmeval"),
                                missing_detail="VLMEvalKit is not installed: pip install -e '.[vlmeval]'"))
    return checks


def check_devices() -> list[Check]:
    """CUDA as torch sees it, and each GPU's name and memory (total, free)."""
    import torch  # lazy: a few seconds, only when the environment is checked

    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = f"torch built for CUDA {built}, but no GPU is visible" if built else "a CPU-only torch build"
        return [Check("env", "cuda", INFO, f"not available ({why}): runs use the CPU (fine for the demo, slow "
                                           "for the real benchmarks)")]
    checks = [Check("env", "cuda", OK, f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s), "
                                       f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no (use --dtype fp16)'}")]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        checks.append(Check("env", f"cuda:{i}", OK, f"{props.name}, {total / 2**30:.1f} GiB "
                                                    f"({free / 2**30:.1f} GiB free)"))
    return checks

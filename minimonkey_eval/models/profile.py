"""Where the time goes: an optional :class:`Profile` that ``Engine.generate_prepared`` and ``Pipeline`` fill in.

``bench`` hands one to the runner; ordinary runs pass none, so the engine adds no device syncs. Stages:

* ``staging_wait_s``: time the device-feeding thread waited for staged inputs (prompt, image decode, tiling,
  tokenizing: all of it when staging is not overlapped, only what the staging threads did not hide otherwise);
* ``vision_s``: ViT + projector of the batch's tiles (host-to-device copies included);
* ``prefill_s``: embedding, (SCM), left padding and the LLM prefill up to the first new token on the host;
* ``decode_s``: the remaining tokens and the text decoding.

Stage boundaries call ``torch.cuda.synchronize()`` on CUDA (profiled runs only). The end of the prefill is seen
through a ``generate`` streamer: its second ``put`` carries the first new token, copied to the host.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


class _FirstToken:
    """``generate`` streamer: the time the first new token reaches the host (the prompt is the first ``put``)."""

    def __init__(self, profile: "Profile"):
        self.profile, self.calls, self.time = profile, 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.time = self.profile.now()

    def end(self) -> None:
        pass


@dataclass
class Profile:
    cuda: bool = False
    wall_s: float = 0.0             # inference wall time (the runner adds each dataset's)
    staging_wait_s: float = 0.0
    vision_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    batches: int = 0
    failed_batches: int = 0         # batches that raised (out of memory) before being split and retried
    samples: int = 0
    tiles: int = 0
    prompt_tokens: int = 0          # real prompt tokens (after SCM)
    padded_tokens: int = 0          # batch rows x longest prompt, summed over batches
    generated_tokens: int = 0       # up to and including the eos
    decode_tokens: int = 0          # generated after the first one
    seq_lens: list = field(default_factory=list)

    @classmethod
    def for_device(cls, device) -> "Profile":
        return cls(cuda=getattr(device, "type", str(device)) == "cuda")

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def first_token(self) -> _FirstToken:
        return _FirstToken(self)

    def record(self, t0: float, t_vision: float, mark: _FirstToken, t_end: float, tiles: int,
               lengths: list[int], rows: list[list[int]], eos: int) -> None:
        """One answered batch: stage times from its boundaries, and its token counts."""
        first = mark.time if mark.time is not None else t_end
        self.vision_s += t_vision - t0
        self.prefill_s += first - t_vision
        self.decode_s += t_end - first
        self.batches += 1
        self.samples += len(lengths)
        self.tiles += tiles
        self.seq_lens.extend(lengths)
        self.prompt_tokens += sum(lengths)
        self.padded_tokens += len(lengths) * max(lengths)
        for row in rows:
            n = row.index(eos) + 1 if eos in row else len(row)
            self.generated_tokens += n
            self.decode_tokens += max(0, n - 1)

    @property
    def padding_waste(self) -> float | None:
        """(padded - real) / padded prompt tokens."""
        return (self.padded_tokens - self.prompt_tokens) / self.padded_tokens if self.padded_tokens else None

"""CUDA-only checks, run by ``scripts/gpu_check.sh`` on a GPU box (skipped without CUDA): ``--normalize-on-device``
is bit-equal to torchvision's CPU normalisation, and flash-attn answers like SDPA where flash-attn is installed."""
from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (scripts/gpu_check.sh)")


def _photo(width: int, height: int, seed: int = 0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy())


def test_normalize_pixels_on_cuda_is_bit_equal_to_torchvision_on_cpu():
    """The decision for --normalize-on-device: every uint8 value, and real tiles, in float32 and in bf16."""
    from torchvision import transforms

    from minimonkey_eval.models.tiling import IMAGENET_MEAN, IMAGENET_STD, msac_tiling, normalize_pixels

    every = torch.arange(256, dtype=torch.uint8).repeat(3, 448 * 448 // 256 + 1)[:, :448 * 448].view(1, 3, 448, 448)
    pixels = torch.cat([every, msac_tiling(_photo(900, 600), 2, 6, 1, 4, normalize=False).pixel_values])
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = torch.stack([reference(tile.permute(1, 2, 0).numpy()) for tile in pixels])
    on_gpu = normalize_pixels(pixels.cuda())
    assert torch.equal(on_gpu.cpu(), expected)
    assert torch.equal(on_gpu.to(torch.bfloat16).cpu(), expected.to(torch.bfloat16))


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn not installed")
def test_flash_attention_answers_like_sdpa(tmp_path):
    from minimonkey_eval.models import Engine, Tiling
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "ckpt")
    samples = [([_photo(w, h, k)], q) for k, (w, h, q) in enumerate(
        [(900, 600, "What is shown?"), (300, 1200, "Describe it."), (640, 480, "Which color dominates?")])]
    answers = {}
    for attn in ("sdpa", "flash_attention_2"):
        engine = Engine.from_pretrained(ckpt, dtype="bf16", device="cuda", attn_implementation=attn)
        answers[attn] = engine.generate(samples, tiling=Tiling.msac(2, 6, 1, 4), max_new_tokens=12, batch_size=3)
    assert answers["flash_attention_2"] == answers["sdpa"]

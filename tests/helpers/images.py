"""Small drawn test images (not a test module)."""
from __future__ import annotations

from PIL import Image, ImageDraw


def text_image(width: int, height: int, color, text: str) -> Image.Image:
    """A plain ``color`` RGB image with ``text`` drawn in black at the top left."""
    image = Image.new("RGB", (width, height), color)
    ImageDraw.Draw(image).text((5, 5), text, fill=(0, 0, 0))
    return image

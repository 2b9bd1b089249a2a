"""Batched augmentation: pure functions over a whole batch, no per-sample Python.

"affine" (rotation, scale, shift) suits digits, which are never mirrored (a mirrored 2 is no digit).
"mirror-shift" suits pictures of objects, which are seen from either side: a mirrored shirt is a shirt.
"""
import functools
import math

import torch
import torch.nn.functional as F

ONE_PIXEL_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def random_affine(images: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  scale=(0.9, 1.1), translate: float = 0.1, mirror: bool = False) -> torch.Tensor:
    """Rotate, scale and shift every image of a (N, C, H, W) float batch by its own random amounts, and
    with `mirror` flip half of them left to right.

    Pixels brought in from outside are 0 (the black background), so call this before normalising."""
    n = images.shape[0]
    draw = lambda low, high: torch.rand(n, generator=generator, device=generator.device) * (high - low) + low
    angle = draw(-degrees, degrees) * (math.pi / 180)
    factor = draw(*scale)
    shift_x, shift_y = draw(-2 * translate, 2 * translate), draw(-2 * translate, 2 * translate)  # grid units span 2
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    flip = 1 - 2 * (draw(0, 1) < 0.5).float() if mirror else torch.ones_like(cos)  # -1: read x from the right
    theta = torch.stack([torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# name -> batch function (pixels in [0, 1], generator) -> pixels; "none" trains on the images as they are.
AUGMENTATIONS = {"none": None, "affine": random_affine,
                 "mirror-shift": functools.partial(random_affine, degrees=0.0, scale=(1.0, 1.0), mirror=True)}


def one_pixel_shifts(images: torch.Tensor, background: float) -> list[torch.Tensor]:
    """The batch itself and shifted by one pixel down, up, right and left, `background` filling in
    (test-time augmentation: small shifts are what the affine training augmentation taught)."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), value=background)
    return [padded[..., 1 - dy:1 - dy + height, 1 - dx:1 - dx + width] for dy, dx in ONE_PIXEL_SHIFTS]

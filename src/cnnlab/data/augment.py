"""Batched augmentation: pure functions over a whole batch and a torch.Generator, no per-sample Python.

Digits get small rotations, scalings and shifts (`affine`), never flips: they are not mirror-symmetric.
Natural images (CIFAR-10, photo folders) get the standard CIFAR augmentation of He et al. 2015, section
4.2: a random crop of the image padded by 4 pixels on each side, and a horizontal flip half of the time.
"""
import math

import torch
import torch.nn.functional as F

ONE_PIXEL_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
CROP_PADDING = 1 / 8  # of the image side: 4 pixels at 32x32, as He et al.


def random_affine(images: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  scale=(0.9, 1.1), translate: float = 0.1) -> torch.Tensor:
    """Rotate, scale and shift every image of a (N, C, H, W) float batch by its own random amounts.

    Pixels brought in from outside are 0 (the black background), so call this before normalising."""
    n = images.shape[0]
    draw = lambda low, high: torch.rand(n, generator=generator) * (high - low) + low
    angle = draw(-degrees, degrees) * (math.pi / 180)
    factor = draw(*scale)
    shift_x, shift_y = draw(-2 * translate, 2 * translate), draw(-2 * translate, 2 * translate)  # grid units span 2
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(images: torch.Tensor, generator: torch.Generator, flip: bool = False) -> torch.Tensor:
    """Each image of a (N, C, H, W) batch padded with black by a border of `CROP_PADDING` of its side, then
    cropped back to H x W at its own random offset; with `flip`, half of them mirrored left to right.

    One gather does both: the crop offsets the row and column indices, a flip reverses the columns."""
    n, _, height, width = images.shape
    pad = max(1, round(CROP_PADDING * min(height, width)))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    mirrored = torch.rand(n, 1, generator=generator) < 0.5 if flip else torch.zeros(n, 1, dtype=torch.bool)
    columns = torch.arange(width)
    rows = (dy + torch.arange(height)).to(images.device)                                 # (N, H)
    cols = (dx + torch.where(mirrored, columns.flip(0), columns)).to(images.device)      # (N, W)
    padded = F.pad(images, (pad, pad, pad, pad))
    batch = torch.arange(n, device=images.device)[:, None, None]
    cropped = padded[batch, :, rows[:, :, None], cols[:, None, :]]                        # (N, H, W, C)
    return cropped.permute(0, 3, 1, 2)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return random_crop(images, generator, flip=True)


# name -> batch function (pixels in [0, 1], generator) -> pixels; "none" trains on the images as they are.
AUGMENTATIONS = {"none": None, "affine": random_affine, "crop": random_crop, "crop-flip": random_crop_flip}


def one_pixel_shifts(images: torch.Tensor, background) -> list[torch.Tensor]:
    """The batch itself and shifted by one pixel down, up, right and left, `background` filling in: a number,
    or one per channel shaped (1, C, 1, 1) (test-time augmentation: small shifts are what the training
    augmentations taught)."""
    height, width = images.shape[-2:]
    border = F.pad(torch.zeros((1, 1, height, width), dtype=torch.bool, device=images.device), (1, 1, 1, 1), value=True)
    padded = torch.where(border, background, F.pad(images, (1, 1, 1, 1)))
    return [padded[..., 1 - dy:1 - dy + height, 1 - dx:1 - dx + width] for dy, dx in ONE_PIXEL_SHIFTS]

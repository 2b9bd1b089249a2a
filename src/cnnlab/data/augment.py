"""Batched augmentation: pure functions over a whole batch and a torch.Generator, no per-sample Python.

Digits get small rotations, scalings and shifts (`affine`), never flips: they are not mirror-symmetric.
Natural images (CIFAR-10, photo folders) get the standard CIFAR augmentation of He et al. 2015, section
4.2: a random crop of the image padded by 4 pixels on each side, and a horizontal flip half of the time.
Clothes (Fashion-MNIST) get small crops, flips and random erasing (Zhong et al. 2017).
"""

import math

import torch
import torch.nn.functional as F

ONE_PIXEL_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
CROP_PADDING = 1 / 8  # of the image side: 4 pixels at 32x32, as He et al.


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def _affine_grid(
    images: torch.Tensor, generator: torch.Generator, degrees: float, scale: tuple[float, float], translate: float
) -> torch.Tensor:
    """The sampling grid that rotates, scales and shifts each image by its own random amounts."""
    n = images.shape[0]
    angle = _uniform(n, -degrees, degrees, generator) * (math.pi / 180)
    factor = _uniform(n, scale[0], scale[1], generator)
    shift_x = _uniform(n, -2 * translate, 2 * translate, generator)  # grid units span 2
    shift_y = _uniform(n, -2 * translate, 2 * translate, generator)
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    return F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)


def _sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.1,
) -> torch.Tensor:
    """Rotate, scale and shift every image of a (N, C, H, W) float batch by its own random amounts.

    Pixels brought in from outside are 0 (the black background), so call this before normalising."""
    return _sample(images, _affine_grid(images, generator, degrees, scale, translate))


def random_elastic_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 12.0,
    scale: tuple[float, float] = (0.85, 1.1),
    translate: float = 0.08,
    pixels: float = 1.5,
) -> torch.Tensor:
    """random_affine plus an elastic warp (Simard et al. 2003): a smooth random displacement of up to
    `pixels` pixels, bicubic from a 4x4 grid of random moves, so each stroke bends its own way. One
    resampling for both."""
    n, _, height, width = images.shape
    moves = torch.rand(n, 2, 4, 4, generator=generator, device=generator.device) * 2 - 1
    grid_units = torch.tensor([2 / width, 2 / height], device=generator.device).view(1, 2, 1, 1)  # pixels -> grid
    amount = _uniform(n, 0, pixels, generator).view(n, 1, 1, 1) * grid_units
    field = F.interpolate(moves * amount, size=(height, width), mode="bicubic", align_corners=False)
    grid = _affine_grid(images, generator, degrees, scale, translate) + field.permute(0, 2, 3, 1).to(images.device)
    return _sample(images, grid)


def random_stroke_width(
    images: torch.Tensor, generator: torch.Generator, thinner: float = 0.6, thicker: float = 1.0
) -> torch.Tensor:
    """Each image's strokes thinned or thickened by a random fraction of a 3x3 erosion or dilation
    (max-pooling): pens and preprocessing leave strokes thinner or fatter than MNIST's."""
    amount = _uniform(images.shape[0], -thinner, thicker, generator).view(-1, 1, 1, 1).to(images.device)
    dilated = F.max_pool2d(images, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-images, 3, stride=1, padding=1)
    return torch.where(amount > 0, images + amount * (dilated - images), images - amount * (eroded - images))


def random_contrast(
    images: torch.Tensor, generator: torch.Generator, gamma: float = 0.7, gain: tuple[float, float] = (1.0, 1.8)
) -> torch.Tensor:
    """A random gamma (e^-0.7 to e^0.7) and gain (clipped at white): faint pencil, saturated marker,
    binary pixel art, where MNIST's strokes have soft grey edges."""
    n = images.shape[0]
    exponent = torch.exp(_uniform(n, -gamma, gamma, generator)).view(-1, 1, 1, 1).to(images.device)
    factor = _uniform(n, gain[0], gain[1], generator).view(-1, 1, 1, 1).to(images.device)
    return (images.clamp(min=0) ** exponent * factor).clamp(max=1)


def random_blur(images: torch.Tensor, generator: torch.Generator, most: float = 0.8) -> torch.Tensor:
    """Each image blended with its 3x3 binomial blur by a random weight up to `most`: soft photos, JPEG."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=images.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).view(1, 1, 3, 3).repeat(images.shape[1], 1, 1, 1)
    blurred = F.conv2d(images, kernel, padding=1, groups=images.shape[1])
    weight = _uniform(images.shape[0], 0, most, generator).view(-1, 1, 1, 1).to(images.device)
    return images + weight * (blurred - images)


def robust(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """What users' digits differ from MNIST by, once preprocessed: shape (affine and elastic), stroke
    width, contrast and blur (issue 12, the `robust` recipe)."""
    images = random_elastic_affine(images, generator)
    images = random_stroke_width(images, generator)
    images = random_contrast(images, generator)
    return random_blur(images, generator)


def random_crop(
    images: torch.Tensor, generator: torch.Generator, flip: bool = False, padding: float = CROP_PADDING
) -> torch.Tensor:
    """Each image of a (N, C, H, W) batch padded with black by a border of `padding` of its side (at least a
    pixel), then cropped back to H x W at its own random offset; with `flip`, half of them mirrored left to right.

    One gather does both: the crop offsets the row and column indices, a flip reverses the columns."""
    n, _, height, width = images.shape
    pad = max(1, round(padding * min(height, width)))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=generator.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=generator.device)
    mirrored = (
        torch.rand(n, 1, generator=generator, device=generator.device) < 0.5
        if flip
        else torch.zeros(n, 1, dtype=torch.bool, device=generator.device)
    )
    columns = torch.arange(width, device=generator.device)
    rows = (dy + torch.arange(height, device=generator.device)).to(images.device)  # (N, H)
    cols = (dx + torch.where(mirrored, columns.flip(0), columns)).to(images.device)  # (N, W)
    padded = F.pad(images, (pad, pad, pad, pad))
    batch = torch.arange(n, device=images.device)[:, None, None]
    cropped = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return cropped.permute(0, 3, 1, 2)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return random_crop(images, generator, flip=True)


def random_erasing(
    images: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017, their defaults): with probability `p`, a rectangle of each image,
    of a random share `area` of the image and aspect ratio `aspect` (log-uniform), filled with uniform noise.
    The model must then recognise an object from its parts: a sleeve or a collar, not one telling patch."""
    n, _, height, width = images.shape
    device = generator.device
    size = _uniform(n, area[0], area[1], generator) * height * width
    ratio = torch.exp(_uniform(n, math.log(aspect[0]), math.log(aspect[1]), generator))
    tall = torch.sqrt(size * ratio).round().clamp(1, height)
    wide = torch.sqrt(size / ratio).round().clamp(1, width)
    top = (torch.rand(n, generator=generator, device=device) * (height - tall + 1)).floor()
    left = (torch.rand(n, generator=generator, device=device) * (width - wide + 1)).floor()
    erased = torch.rand(n, generator=generator, device=device) < p
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside = lambda start, length, at: (at >= start.view(-1, 1, 1)) & (at < (start + length).view(-1, 1, 1))
    mask = (inside(top, tall, rows) & inside(left, wide, cols) & erased.view(-1, 1, 1)).unsqueeze(1)
    noise = torch.rand(images.shape, generator=generator, device=device)
    return torch.where(mask.to(images.device), noise.to(images.device), images)


def clothes(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fashion-MNIST's augmentation: shifts of up to 2 pixels (the garments are centred: 1/8 of the side, 4
    pixels, shifted them off their frame), left-right flips (a garment seen from either side), then random
    erasing."""
    return random_erasing(random_crop(images, generator, flip=True, padding=2 / 28), generator)


# name -> batch function (pixels in [0, 1], generator) -> pixels; "none" trains on the images as they are.
AUGMENTATIONS = {
    "none": None,
    "affine": random_affine,
    "robust": robust,
    "crop": random_crop,
    "crop-flip": random_crop_flip,
    "clothes": clothes,
}


def one_pixel_shifts(images: torch.Tensor, background: float | torch.Tensor) -> list[torch.Tensor]:
    """The batch itself and shifted by one pixel down, up, right and left, `background` filling in: a number,
    or one per channel shaped (1, C, 1, 1) (test-time augmentation: small shifts are what the training
    augmentations taught)."""
    height, width = images.shape[-2:]
    border = F.pad(torch.zeros((1, 1, height, width), dtype=torch.bool, device=images.device), (1, 1, 1, 1), value=True)
    padded = torch.where(border, background, F.pad(images, (1, 1, 1, 1)))
    return [padded[..., 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width] for dy, dx in ONE_PIXEL_SHIFTS]

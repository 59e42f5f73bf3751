"""Renderers of the synthetic lesion testbed: pure functions of (rng, severity, size).

``severity`` in [0, 1] is the latent malignancy of one image: it drives the ABCD-rule cues of
dermoscopy (asymmetry, border, colours, diameter) and the BI-RADS cues of breast ultrasound
(shape, orientation, margin, posterior features). How severity depends on the label is decided
by the caller (the class separation), so the renderers never see the label.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

# Dermoscopic colours (RGB in [0, 1]): light brown, dark brown, black, blue-grey, red.
LESION_COLOURS = np.array(
    [
        [0.62, 0.42, 0.28],
        [0.36, 0.22, 0.14],
        [0.10, 0.07, 0.07],
        [0.40, 0.46, 0.56],
        [0.70, 0.25, 0.22],
    ]
)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return yy, xx


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in roughly [-1, 1]: a random ``cells``x``cells`` grid, upsampled."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def _radial_border(
    rng: np.random.Generator,
    theta: np.ndarray,
    asymmetry: float,
    irregularity: float,
    harmonics: range,
) -> np.ndarray:
    """Relative radius r(theta): an elongation term plus random higher harmonics."""
    radius = 1.0 + asymmetry * np.cos(2 * (theta - rng.uniform(0, np.pi)))
    radius += 0.5 * asymmetry * np.cos(theta - rng.uniform(0, 2 * np.pi))  # off-centre bulge
    for k in harmonics:
        amp = irregularity * rng.uniform(0.3, 1.0) / np.sqrt(k)
        radius += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return radius


def render_dermoscopy(rng: np.random.Generator, severity: float, size: int) -> np.ndarray:
    """A dermoscopy-like image (float RGB [H, W, 3] in [0, 1]) of a pigmented lesion.

    Benign (low severity): small, near-symmetric, smooth border, one or two close browns.
    Malignant (high severity): large, asymmetric, notched border, 3+ colours incl. black,
    blue-grey and red.
    """
    yy, xx = _grid(size)
    skin = np.array([0.86, 0.66, 0.54]) + rng.normal(0, 0.04, 3)
    texture = 0.05 * smooth_noise(rng, size, 12) + 0.015 * rng.standard_normal((size, size))
    image = np.clip(skin[None, None, :] * (1 + texture[..., None]), 0, 1)

    cy, cx = 0.5 + rng.normal(0, 0.04, 2)
    dy, dx = yy - cy, xx - cx
    dist, theta = np.hypot(dy, dx), np.arctan2(dy, dx)
    base_radius = 0.13 + 0.15 * severity + rng.normal(0, 0.015)
    border = _radial_border(
        rng,
        theta,
        asymmetry=0.04 + 0.30 * severity,
        irregularity=0.02 + 0.22 * severity,
        harmonics=range(3, 14),
    )
    softness = 0.012 - 0.008 * severity  # benign borders fade, malignant ones are abrupt
    inside = 1 / (1 + np.exp(-(base_radius * border - dist) / softness))

    n_colours = int(np.clip(1 + round(3.2 * severity + rng.normal(0, 0.4)), 1, 5))
    order = [0, 1, *rng.permutation([2, 3, 4]).tolist()]
    lesion = np.broadcast_to(LESION_COLOURS[order[0]], image.shape).copy()
    lesion *= 1 + 0.08 * smooth_noise(rng, size, 6)[..., None]
    for colour in order[1:n_colours]:
        field = smooth_noise(rng, size, 5)
        weight = 1 / (1 + np.exp(-(field - rng.uniform(0.0, 0.8)) / 0.15))
        lesion = lesion * (1 - weight[..., None]) + LESION_COLOURS[colour] * weight[..., None]
    alpha = inside[..., None] * (0.75 + 0.2 * severity)
    return np.clip(image * (1 - alpha) + lesion * alpha, 0, 1)


def render_ultrasound(rng: np.random.Generator, severity: float, size: int) -> np.ndarray:
    """A breast-ultrasound-like image (grey as RGB [H, W, 3] in [0, 1]) with a mass.

    Benign: oval, wider-than-tall, circumscribed, posterior enhancement. Malignant: irregular,
    spiculated, taller-than-wide, posterior acoustic shadowing.
    """
    yy, xx = _grid(size)
    depth_profile = 0.55 + 0.25 * np.exp(-((yy - 0.08) ** 2) / 0.001)  # bright skin line
    depth_profile -= 0.25 * yy  # attenuation with depth
    tissue = (
        depth_profile
        + 0.12 * smooth_noise(rng, size, 8)
        + 0.06 * np.sin(2 * np.pi * (yy * rng.uniform(3, 6) + 0.3 * smooth_noise(rng, size, 4)))
    )

    cy, cx = rng.uniform(0.42, 0.55), 0.5 + rng.normal(0, 0.06)
    radius = 0.11 + 0.06 * severity + rng.normal(0, 0.01)
    aspect = 1.5 - 0.8 * severity  # width / height: > 1 benign (parallel), < 1 malignant
    dy, dx = (yy - cy) * np.sqrt(aspect), (xx - cx) / np.sqrt(aspect)
    dist, theta = np.hypot(dy, dx), np.arctan2(dy, dx)
    border = _radial_border(
        rng,
        theta,
        asymmetry=0.03 + 0.1 * severity,
        irregularity=0.01 + 0.12 * severity,
        harmonics=range(3, 8),
    )
    n_spikes = rng.integers(12, 20)
    spikes = np.clip(np.cos(n_spikes * theta + rng.uniform(0, 6)), 0, 1) ** 6
    border = border + severity * 0.35 * spikes
    softness = 0.01 - 0.006 * severity
    mass = 1 / (1 + np.exp(-(radius * border - dist) / softness))

    below = (yy > cy) * np.exp(-(((xx - cx) / (radius / np.sqrt(aspect))) ** 4))
    below *= np.clip((yy - cy) / 0.1, 0, 1)
    posterior = (0.35 * (1 - severity) - 0.45 * severity) * below  # enhancement vs shadow
    echo = tissue * (1 + posterior) * (1 - 0.8 * mass) + 0.05 * mass * severity

    speckle = rng.rayleigh(0.8, (size, size)).astype(np.float32)
    speckle = gaussian_filter(speckle, 0.6)  # real speckle is spatially correlated
    grey = np.clip(echo * speckle, 0, 1)

    # Convex-probe sector: outside the fan the scanner shows black.
    ay, ax = -0.25, 0.5
    fan_angle = np.abs(np.arctan2(xx - ax, yy - ay))
    fan_radius = np.hypot(yy - ay, xx - ax)
    grey *= (fan_angle < 0.62) & (fan_radius > 0.3) & (fan_radius < 1.24)
    return np.repeat(grey[..., None], 3, axis=2)


# ---- nuisances: things a real image carries that have nothing to do with the diagnosis ----


def add_colour_cast(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Multiply the channels by a random white-balance error (camera, lighting)."""
    return np.clip(image * (1 + rng.normal(0, 0.08, 3))[None, None, :], 0, 1)


def add_vignetting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Dark corners, as a dermatoscope's circular field of view or uneven gain leaves."""
    yy, xx = _grid(image.shape[0])
    r2 = (yy - 0.5) ** 2 + (xx - 0.5) ** 2
    falloff = np.clip(1 - rng.uniform(0.8, 1.6) * np.clip(r2 - 0.12, 0, None) * 4, 0.05, 1)
    return image * falloff[..., None]


def draw_hair(rng: np.random.Generator, canvas: Image.Image) -> None:
    """Dark curved hairs across the image (dermoscopy's most common artefact)."""
    draw = ImageDraw.Draw(canvas)
    size = canvas.size[0]
    for _ in range(int(rng.integers(2, 9))):
        p0, p1, p2 = rng.uniform(-0.1, 1.1, (3, 2)) * size
        t = np.linspace(0, 1, 24)[:, None]
        points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        shade = int(rng.integers(15, 60))
        width = max(1, round(size / rng.uniform(120, 200)))
        draw.line([tuple(p) for p in points], fill=(shade, shade // 2 + 5, 5), width=width)


def draw_ruler(rng: np.random.Generator, canvas: Image.Image) -> None:
    """A millimetre ruler (dermoscopy) or depth scale (ultrasound) along one edge."""
    draw = ImageDraw.Draw(canvas)
    size = canvas.size[0]
    step = max(size // 24, 2)
    edge = int(rng.integers(4))
    colour = (20, 20, 20) if edge % 2 == 0 else (235, 235, 235)
    for i, pos in enumerate(range(step, size - step, step)):
        length = size // 14 if i % 5 == 0 else size // 28
        segments = {
            0: ((pos, 0), (pos, length)),
            1: ((size - 1 - length, pos), (size - 1, pos)),
            2: ((pos, size - 1 - length), (pos, size - 1)),
            3: ((0, pos), (length, pos)),
        }
        draw.line(segments[edge], fill=colour, width=max(1, size // 128))

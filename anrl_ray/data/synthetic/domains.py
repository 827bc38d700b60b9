"""Domain definitions of the synthetic benchmark: cameras, lightings, attack instruments per domain.

Four domains named after the real datasets, O (OULU-NPU), C (CASIA-FASD), I (Replay-Attack),
M (MSU-MFSD), that differ the way those do: who is filmed (skin tones), where (lighting,
backgrounds), with which camera (resolution, blur, noise, colour cast, vignetting, JPEG quality)
and with which attacks (printers, screens, supports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOMAINS = ("O", "C", "I", "M")


@dataclass(frozen=True)
class Camera:
    """A capture device: everything between the scene and the stored JPEG."""

    name: str
    res_scale: tuple[float, float]  # sensor resolution / stored crop size (< 1: upsampled, soft)
    blur: tuple[float, float]  # optical blur sigma, stored pixels
    noise: tuple[float, float]  # sensor noise std (signal-dependent part), [0, 1] units
    jpeg: tuple[int, int]  # JPEG quality
    cast: tuple[float, float, float]  # RGB gains (white balance)
    vignette: float  # brightness loss at the corners
    gamma: tuple[float, float]  # tone curve exponent
    saturation: float = 1.0  # colour rendering of the sensor pipeline
    flare: float = 0.0  # veiling glare: lifts the blacks


@dataclass(frozen=True)
class Lighting:
    """A recording condition of a domain: light levels and the kind and brightness of the background."""

    name: str
    ambient: tuple[float, float]
    diffuse: tuple[float, float]
    side: float  # max |x| of the light direction (0 frontal, 1 from the side)
    background: str  # plain | office | cluttered
    bg_level: tuple[float, float]  # background brightness


@dataclass(frozen=True)
class Instrument:
    """An attack instrument (a printer + paper, or a screen) and how it is presented."""

    kind: str  # print | replay | cut
    name: str
    scale: tuple[float, float]  # medium size / crop size (< 1: its edge shows in the crop)
    halftone_freq: float = 0.0  # print: screen frequency, cycles per render pixel
    halftone_amp: float = 0.0
    gamut: tuple[float, float] = (0.0, 1.0)  # print: paper black / white
    saturation: float = 1.0
    paper_noise: float = 0.0
    bend: float = 0.0  # print: bending (shading bands + warp)
    pixel_pitch: float = 0.0  # replay: render pixels per screen pixel
    grid_amp: float = 0.0
    moire_amp: float = 0.0
    moire_freq: tuple[float, float] = (0.015, 0.05)  # replay: moire frequency, cycles per render pixel
    screen_gamma: float = 1.0
    black: float = 0.0  # replay: backlight black level
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # screen white point / paper and ink colour
    glare: float = 0.0  # probability of a glare spot per video
    bezel: float = 0.0  # replay: probability that the bezel shows


@dataclass(frozen=True)
class Domain:
    """One domain: its cameras, recording conditions, attack instruments and population.

    Live videos and the attacker's source images are drawn from the same scene distribution
    (``lightings``, ``light_temp``, poses, ``scene_blur``); only the instruments and their
    re-capture set spoofs apart.
    """

    name: str
    like: str  # the real dataset it imitates
    cameras: tuple[Camera, ...]
    lightings: tuple[Lighting, ...]
    attacks: dict[str, tuple[Instrument, ...]]  # attack type -> instruments (cycled over videos)
    skin_tone: tuple[float, float]  # 0 light .. 1 dark
    light_temp: tuple[float, float]  # -1 warm .. +1 cool
    hand_held: float  # probability that an attack medium is hand-held (else fixed support)
    scene_blur: tuple[float, float] = (0.25, 0.5)  # defocus of a filmed face / the attacker's source capture, stored px


def _print(name: str, **kw: Any) -> Instrument:
    return Instrument(kind="print", name=name, **kw)


def _replay(name: str, **kw: Any) -> Instrument:
    return Instrument(kind="replay", name=name, **kw)


# Each domain has its own strong attack cues (what an in-domain model learns) and its own
# camera, which hides or mimics the other domains' cues (what makes cross-domain hard):
#   O: sharp phone cameras; photo-quality prints and OLED displays that make faces *more* vivid
#      (over-saturated, deep blacks): the opposite of the other domains' washed-out media;
#   C: soft, noisy, desaturated, flared cameras (live faces look "washed out"); prints and the
#      replay are strongly desaturated / blue with raised blacks, paper edges and bends;
#   I: low-res webcam; coarse halftone blotches and strong moire bands, bezels of small screens;
#   M: saturated phone / laptop colour; glossy prints with yellow paper, glare on the screens.
# Shared, weaker cues: halftone / pixel-grid texture, reduced dynamic range (not in O), light mismatch.
# Scene content (lighting, background, pose, defocus) is never a cue: sources are drawn like live scenes.
DOMAIN_PROFILES: dict[str, Domain] = {
    # OULU-NPU: six recent phones, three sessions (office light, dark, backlit), 2 printers + 2 displays.
    "O": Domain(
        name="O",
        like="OULU-NPU",
        cameras=tuple(
            Camera(f"phone{i}", (0.95, 1.2), (0.25, 0.45), (0.005, 0.012), (90, 96), c, 0.1, (0.95, 1.05))
            for i, c in enumerate([(1.02, 1.0, 0.97), (0.98, 1.0, 1.03), (1.04, 1.0, 0.95)])
        ),
        lightings=(
            Lighting("office", (0.45, 0.55), (0.45, 0.6), 0.5, "office", (0.55, 0.75)),
            Lighting("dark", (0.25, 0.35), (0.35, 0.45), 0.6, "office", (0.25, 0.4)),
            Lighting("backlit", (0.35, 0.45), (0.2, 0.3), 0.3, "office", (0.85, 1.0)),
        ),
        attacks={
            "print": (  # photo-quality inkjet on glossy paper: vivid, full range, fine dithering
                _print("printer1", scale=(1.08, 1.35), halftone_freq=0.3, halftone_amp=0.05, gamut=(0.02, 0.99),
                       saturation=1.5, paper_noise=0.015, glare=0.05),
                _print("printer2", scale=(1.08, 1.35), halftone_freq=0.25, halftone_amp=0.06, gamut=(0.03, 0.98),
                       saturation=1.45, paper_noise=0.015, glare=0.05),
            ),
            "replay": (  # OLED phone / laptop displays: deep blacks, steep gamma, over-saturated colour
                _replay("display1", scale=(1.05, 1.3), pixel_pitch=2.6, grid_amp=0.05, moire_amp=0.01, screen_gamma=1.3,
                        black=0.005, saturation=1.5, glare=0.1, bezel=0.05),
                _replay("display2", scale=(1.05, 1.3), pixel_pitch=3.0, grid_amp=0.06, moire_amp=0.01, screen_gamma=1.25,
                        black=0.01, saturation=1.45, tint=(1.0, 1.0, 1.03), glare=0.1, bezel=0.05),
            ),
        },
        skin_tone=(0.0, 0.45),
        light_temp=(-0.3, 0.3),
        hand_held=0.5,
    ),
    # CASIA-FASD: low / normal / high quality cameras, warped prints, cut prints, iPad replay.
    "C": Domain(
        name="C",
        like="CASIA-FASD",
        cameras=(
            Camera("low", (0.35, 0.45), (0.9, 1.2), (0.03, 0.045), (50, 62), (1.08, 1.0, 0.86), 0.3, (0.9, 1.0), 0.75, 0.06),
            Camera("normal", (0.55, 0.7), (0.6, 0.8), (0.02, 0.03), (62, 72), (1.06, 1.0, 0.9), 0.2, (0.95, 1.05), 0.85, 0.04),
            Camera("high", (0.9, 1.1), (0.4, 0.55), (0.01, 0.015), (80, 88), (1.03, 1.0, 0.94), 0.1, (1.0, 1.1), 0.95, 0.02),
        ),
        lightings=(Lighting("indoor", (0.45, 0.6), (0.4, 0.55), 0.4, "plain", (0.6, 0.85)),),
        attacks={
            "print": (
                _print("warped", scale=(0.8, 1.1), halftone_freq=0.2, halftone_amp=0.06, gamut=(0.15, 0.85),
                       saturation=0.6, paper_noise=0.05, bend=0.15, glare=0.1),
            ),
            "cut": (
                _print("cut", scale=(0.9, 1.15), halftone_freq=0.2, halftone_amp=0.06, gamut=(0.15, 0.85),
                       saturation=0.6, paper_noise=0.05, bend=0.05),
            ),
            "replay": (
                _replay("ipad", scale=(0.85, 1.15), pixel_pitch=3.0, grid_amp=0.06, moire_amp=0.04, screen_gamma=1.35,
                        black=0.12, tint=(0.9, 1.0, 1.12), glare=0.3, bezel=0.35),
            ),
        },
        skin_tone=(0.15, 0.55),
        light_temp=(-0.6, -0.2),
        hand_held=0.8,
    ),
    # Replay-Attack: one webcam, controlled (uniform background) vs adverse (daylight, clutter), fixed vs hand support.
    "I": Domain(
        name="I",
        like="Idiap Replay-Attack",
        cameras=(Camera("webcam", (0.45, 0.55), (0.5, 0.8), (0.02, 0.03), (70, 80), (0.9, 1.0, 1.12), 0.25, (0.9, 1.0)),),
        lightings=(
            Lighting("controlled", (0.55, 0.65), (0.35, 0.45), 0.2, "plain", (0.5, 0.65)),
            Lighting("adverse", (0.3, 0.4), (0.55, 0.75), 0.9, "cluttered", (0.45, 0.8)),
        ),
        attacks={
            "print": (
                _print("hardcopy", scale=(0.9, 1.2), halftone_freq=0.12, halftone_amp=0.14, gamut=(0.08, 0.92),
                       saturation=0.85, paper_noise=0.03, glare=0.1),
            ),
            "replay": (
                _replay("mobile", scale=(0.8, 1.05), pixel_pitch=1.8, grid_amp=0.05, moire_amp=0.16, screen_gamma=1.2,
                        black=0.07, tint=(0.96, 1.0, 1.08), glare=0.3, bezel=0.6),
                _replay("highdef", scale=(0.95, 1.25), pixel_pitch=2.4, grid_amp=0.05, moire_amp=0.12, screen_gamma=1.1,
                        black=0.05, tint=(0.98, 1.0, 1.03), glare=0.3, bezel=0.25),
            ),
        },
        skin_tone=(0.0, 0.9),
        light_temp=(0.1, 0.5),
        hand_held=0.5,
    ),
    # MSU-MFSD: laptop webcam and Android phone, glossy A3 prints, iPad and iPhone replay.
    "M": Domain(
        name="M",
        like="MSU-MFSD",
        cameras=(
            Camera("laptop", (0.6, 0.75), (0.5, 0.7), (0.015, 0.025), (75, 85), (1.1, 0.97, 0.9), 0.2, (0.95, 1.05), 1.05),
            Camera("android", (0.85, 1.0), (0.35, 0.5), (0.01, 0.018), (85, 92), (1.03, 1.0, 0.97), 0.15, (1.0, 1.1), 1.1),
        ),
        lightings=(Lighting("indoor", (0.4, 0.55), (0.4, 0.6), 0.6, "office", (0.5, 0.8)),),
        attacks={
            "print": (
                _print("a3", scale=(1.05, 1.3), halftone_freq=0.3, halftone_amp=0.05, gamut=(0.1, 0.9),
                       saturation=0.8, paper_noise=0.025, tint=(1.04, 1.0, 0.82), glare=0.5),
            ),
            "replay": (
                _replay("ipad_air", scale=(0.95, 1.25), pixel_pitch=2.5, grid_amp=0.05, moire_amp=0.04, screen_gamma=1.2,
                        black=0.07, tint=(1.0, 1.0, 1.05), glare=0.7, bezel=0.25),
                _replay("iphone", scale=(0.85, 1.1), pixel_pitch=1.7, grid_amp=0.06, moire_amp=0.05, screen_gamma=1.3,
                        black=0.09, tint=(0.97, 1.0, 1.07), glare=0.7, bezel=0.5),
            ),
        },
        skin_tone=(0.0, 0.9),
        light_temp=(-0.2, 0.2),
        hand_held=0.6,
    ),
}

"""How AV-MNIST makes each modality harder: PCA energy removal and noise at an SNR."""

from __future__ import annotations

import math

import numpy as np

from crossfuse.errors import CrossfuseError


def pca_degrade(
    images: np.ndarray, fit_mask: np.ndarray, energy_removed: float
) -> tuple[np.ndarray, dict]:
    """Remove ``energy_removed`` of the PCA energy from uint8 images (N, 28, 28).

    PCA is fitted on ``images[fit_mask]`` (the training split); the leading components
    whose cumulative explained variance reaches ``1 - energy_removed`` are kept and every
    image is reconstructed from them. ``energy_removed == 0`` leaves the images unchanged.

    Returns:
        The degraded uint8 images and a summary (components kept, variance retained).
    """
    flat = images.reshape(len(images), -1).astype(np.float64)  # (N, 784)
    fit = flat[fit_mask]
    if len(fit) < 2:
        raise CrossfuseError("need at least 2 training images to fit the PCA")
    if energy_removed == 0.0:
        return images.copy(), {"components_kept": None, "variance_retained": 1.0}
    mean = fit.mean(axis=0)  # (784,)
    # Eigenvectors of the 784×784 scatter matrix = right singular vectors of the centred
    # data; much faster than an SVD of the (rank-deficient) data matrix itself.
    centred = fit - mean  # (n, 784)
    variance, vectors = np.linalg.eigh(centred.T @ centred)  # ascending
    variance, basis_all = np.clip(variance[::-1], 0.0, None), vectors[:, ::-1].T  # (784, 784)
    if variance.sum() == 0:
        raise CrossfuseError("the training images are all identical; PCA is undefined")
    cumulative = np.cumsum(variance) / variance.sum()
    keep = min(int(np.searchsorted(cumulative, 1.0 - energy_removed - 1e-12)) + 1, len(fit))
    basis = basis_all[:keep]  # (k, 784)
    rebuilt = mean + (flat - mean) @ basis.T @ basis  # (N, 784)
    out = np.clip(np.rint(rebuilt), 0, 255).astype(np.uint8).reshape(images.shape)
    return out, {"components_kept": keep, "variance_retained": float(cumulative[keep - 1])}


def make_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of zero-mean white or pink (1/f power) noise."""
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.arange(len(spectrum))
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(freqs[1:])  # amplitude ∝ 1/√f → power ∝ 1/f
    return np.fft.irfft(spectrum, n)


def mix_at_snr(
    signal: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """Add noise at ``snr_db`` relative to the clip's own mean power; keep peaks below 1.

    A mix that would clip is scaled down as a whole, which leaves the SNR unchanged.
    """
    power = float(np.mean(signal**2))
    if len(signal) < 2 or power == 0.0:
        raise CrossfuseError("clip is silent or too short to mix noise at a given SNR")
    noise = make_noise(len(signal), kind, rng)
    noise *= math.sqrt(power / 10 ** (snr_db / 10) / float(np.mean(noise**2)))
    mixed = signal + noise
    peak = float(np.abs(mixed).max())
    return mixed * (0.99 / peak) if peak > 0.99 else mixed

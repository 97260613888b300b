"""Latent directions (smile, ...): learn one from labelled latents, load one for the renderer.

A direction is the unit normal of a linear boundary between latents with and without an
attribute (InterFaceGAN, Shen et al. 2020).  ``fit_boundary`` fits an L2-regularised logistic
regression with balanced class weights (numpy + scipy's L-BFGS, no scikit-learn), on latents
of any shape [N, ...]: W [N, style_dim] gives a [style_dim] direction, W+ [N, n_latent,
style_dim] a per-layer one.  The direction points towards label 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from lookalike.errors import ConfigError

SMILE_SETTING = "LOOKALIKE_STYLEGAN_SMILE_DIRECTION"


@dataclass(frozen=True)
class DirectionFit:
    direction: np.ndarray          # unit norm, shape latents.shape[1:], float32
    bias: float                    # boundary offset along the direction, in latent units
    train_accuracy: float          # fraction of training latents on their label's side
    n_positive: int
    n_negative: int


def _as_binary(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if y.dtype == bool:
        return y.astype(np.int64)
    values = set(np.unique(y).tolist())
    if values <= {0, 1}:
        return y.astype(np.int64)
    if values <= {-1, 1}:
        return (y > 0).astype(np.int64)
    raise ValueError(f"labels must be binary (0/1, -1/+1 or bool); found values {sorted(values)[:6]}")


def fit_boundary(latents: np.ndarray, labels: np.ndarray, *, l2: float = 1.0,
                 max_iter: int = 1000) -> DirectionFit:
    """Fit a linear boundary to ``latents`` [N, ...] and binary ``labels`` [N]."""
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"latents must be [N, ...] with N samples, got shape {list(x.shape)}")
    y = _as_binary(labels)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} latents but {y.shape[0]} labels")
    if not np.isfinite(x).all():
        raise ValueError("latents contain NaN or infinite values")
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need latents of both classes; got {n_pos} positive and {n_neg} negative")
    if l2 < 0:
        raise ValueError("l2 must be >= 0")

    shape = x.shape[1:]
    x = x.reshape(x.shape[0], -1)
    center = x.mean(0)
    xc = x - center                                              # [N, D]
    sign = 2.0 * y - 1.0                                         # +-1
    weight = np.where(y == 1, 0.5 / n_pos, 0.5 / n_neg)           # balanced, sums to 1

    def loss_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        margin = sign * (xc @ w + b)                             # [N]
        loss = np.sum(weight * np.logaddexp(0.0, -margin)) + 0.5 * l2 / len(y) * (w @ w)
        g = -weight * sign * _sigmoid(-margin)                   # d loss / d score
        grad_w = xc.T @ g + l2 / len(y) * w
        return float(loss), np.concatenate([grad_w, [g.sum()]])

    res = minimize(loss_grad, np.zeros(xc.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    w, b = res.x[:-1], res.x[-1]
    norm = float(np.linalg.norm(w))
    if norm == 0 or not np.isfinite(norm):
        raise ValueError("the labels are not linearly related to the latents (zero direction)")
    accuracy = float(np.mean(((xc @ w + b) > 0) == (y == 1)))
    # boundary: (x - center) . w + b = 0  ->  x . u = center . u - b / |w|
    u = w / norm
    offset = float(center @ u - b / norm)
    return DirectionFit(direction=u.reshape(shape).astype(np.float32), bias=offset,
                        train_accuracy=accuracy, n_positive=n_pos, n_negative=n_neg)


def fit_direction(latents: np.ndarray, labels: np.ndarray, *, l2: float = 1.0) -> np.ndarray:
    """Unit direction (shape ``latents.shape[1:]``) separating label 0 from label 1, pointing to 1."""
    return fit_boundary(latents, labels, l2=l2).direction


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def save_direction(path: str | Path, direction: np.ndarray) -> Path:
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(direction, dtype=np.float32))
    return path


def load_direction(path: str | Path, n_latent: int, style_dim: int, *,
                   setting: str = SMILE_SETTING) -> np.ndarray:
    """Load a direction .npy of shape [n_latent, style_dim], [1, style_dim] or [style_dim].

    Returns float32 [n_latent, style_dim] (a single W direction repeated for every layer).
    Raises ConfigError naming ``path`` and ``setting`` if it is missing, unreadable, of the
    wrong shape for this generator, or not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{setting}: direction file not found: {path}")
    try:
        d = np.load(path, allow_pickle=False)
    except Exception:  # noqa: BLE001 - numpy's words ("pickled data") mislead here
        raise ConfigError(f"{setting}: {path} is not a .npy array file (unreadable or another "
                          "format)", advice="Save the direction with numpy.save, or fit one "
                                            "with `lookalike directions fit`.") from None
    if not isinstance(d, np.ndarray):  # a .npz archive (a latent.npz, say) or a zip
        if hasattr(d, "close"):
            d.close()
        raise ConfigError(f"{setting}: {path} is a .npz archive, not a .npy array",
                          advice="Point it at a direction .npy, e.g. from `lookalike directions fit`.")
    if d.shape == (style_dim,) or d.shape == (1, style_dim):
        d = np.broadcast_to(d.reshape(1, style_dim), (n_latent, style_dim))
    if d.shape != (n_latent, style_dim):
        raise ConfigError(f"{setting}: {path} has shape {list(d.shape)}; this generator needs "
                          f"[{n_latent}, {style_dim}] or [{style_dim}]")
    if not np.issubdtype(d.dtype, np.floating) or not np.isfinite(d).all():
        raise ConfigError(f"{setting}: {path} must hold finite floating-point values")
    if not np.any(d):
        raise ConfigError(f"{setting}: {path} is all zeros")
    return np.array(d, dtype=np.float32)

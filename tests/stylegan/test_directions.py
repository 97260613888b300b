"""`lookalike directions fit`: a linear model recovers a direction planted in synthetic latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from lookalike.cli import app  # noqa: E402
from lookalike.errors import ConfigError  # noqa: E402
from lookalike.stylegan.directions import load_direction  # noqa: E402

runner = CliRunner()


def _planted(shape: tuple[int, ...], n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents [n, *shape] with an offset mean and correlated-free noise; labels from a hidden
    unit direction plus label noise (about 5 % flipped)."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(shape)
    d /= np.linalg.norm(d)
    x = rng.standard_normal((n, *shape)) + rng.standard_normal(shape)         # not centred
    score = (x - x.mean(0)).reshape(n, -1) @ d.reshape(-1)
    y = (score + 0.15 * rng.standard_normal(n) > 0).astype(int)
    return x.astype(np.float32), y, d


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_fit_recovers_a_planted_w_direction_via_the_cli(tmp_path: Path) -> None:
    x, y, d = _planted((64,))
    np.save(tmp_path / "latents.npy", x)
    (tmp_path / "smiling.txt").write_text("\n".join(map(str, y)) + "\n")
    out = tmp_path / "smile.npy"
    res = runner.invoke(app, ["directions", "fit", str(tmp_path / "latents.npy"),
                              str(tmp_path / "smiling.txt"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "training accuracy" in res.output and "written to" in res.output
    fitted = np.load(out)
    assert fitted.shape == (64,) and fitted.dtype == np.float32
    assert abs(np.linalg.norm(fitted) - 1) < 1e-5
    assert _cos(fitted, d) >= 0.9
    # the renderer accepts it for a generator with 8 layers of 64 (the tiny fixture's shape)
    per_layer = load_direction(out, 8, 64)
    assert per_layer.shape == (8, 64) and np.allclose(per_layer[3], fitted)


def test_fit_recovers_a_planted_w_plus_direction(tmp_path: Path) -> None:
    x, y, d = _planted((8, 16), n=500, seed=1)
    np.save(tmp_path / "latents.npy", x)
    np.save(tmp_path / "labels.npy", y)
    out = tmp_path / "dir.npy"
    res = runner.invoke(app, ["directions", "fit", str(tmp_path / "latents.npy"),
                              str(tmp_path / "labels.npy"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    fitted = np.load(out)
    assert fitted.shape == (8, 16) and _cos(fitted, d) >= 0.9
    assert load_direction(out, 8, 16).shape == (8, 16)
    with pytest.raises(ConfigError, match=r"LOOKALIKE_STYLEGAN_SMILE_DIRECTION.*\[8, 32\]"):
        load_direction(out, 8, 32)


def test_fit_refuses_bad_input_with_a_clear_message(tmp_path: Path) -> None:
    x, y, _ = _planted((16,), n=50)
    np.save(tmp_path / "latents.npy", x)
    (tmp_path / "labels.txt").write_text("\n".join(map(str, y[:40])))
    res = runner.invoke(app, ["directions", "fit", str(tmp_path / "latents.npy"),
                              str(tmp_path / "labels.txt"), "-o", str(tmp_path / "d.npy")])
    assert res.exit_code == 2 and "50 latents but 40 labels" in res.output
    (tmp_path / "one.txt").write_text("1\n" * 50)
    res = runner.invoke(app, ["directions", "fit", str(tmp_path / "latents.npy"),
                              str(tmp_path / "one.txt"), "-o", str(tmp_path / "d.npy")])
    assert res.exit_code == 2 and "both classes" in res.output
    (tmp_path / "exists.npy").write_bytes(b"x")
    res = runner.invoke(app, ["directions", "fit", str(tmp_path / "latents.npy"),
                              str(tmp_path / "one.txt"), "-o", str(tmp_path / "exists.npy")])
    assert res.exit_code == 2 and "--force" in res.output
    assert not (tmp_path / "d.npy").exists()

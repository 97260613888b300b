"""``lookalike directions ...``: learn latent directions (e.g. smile) for the StyleGAN renderer.

Mount with ``app.add_typer(directions_app, name="directions")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lookalike.errors import LookalikeError

directions_app = typer.Typer(
    name="directions",
    help="Latent directions for the StyleGAN renderer (e.g. the smile direction).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise typer.BadParameter(f"file not found: {path}", param_hint=what)
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise ValueError(f"expected one array in the .npz, found {z.files}")
                return z[z.files[0]]
        return np.loadtxt(path, ndmin=1)          # text: one value per line (labels)
    except ValueError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint=what) from None


@directions_app.command("fit")
def fit(
    latents: Annotated[Path, typer.Argument(
        help="Latents of N faces: .npy of shape [N, style_dim] (W) or [N, n_latent, style_dim] (W+), "
             "e.g. stacked inversions of the gallery.")],
    labels: Annotated[Path, typer.Argument(
        help="N binary labels in the same order: .npy, or text with one 0/1 per line "
             "(1 = has the attribute, e.g. smiling).")],
    out: Annotated[Path, typer.Option("--out", "-o",
        help="Where to write the unit direction (.npy, shape of one latent). "
             "Point LOOKALIKE_STYLEGAN_SMILE_DIRECTION at it.")] = Path("direction.npy"),
    l2: Annotated[float, typer.Option(min=0.0,
        help="L2 regularisation of the logistic regression; raise it when N is small.")] = 1.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Learn a direction from LATENTS and binary LABELS with a linear model (logistic regression).

    The result is the unit normal of the boundary between label 0 and label 1, pointing to 1:
    adding it to a latent adds the attribute.  Example:

        lookalike directions fit latents.npy smiling.txt --out smile.npy
    """
    from lookalike.stylegan.directions import fit_boundary, save_direction

    if out.exists() and not force:
        raise typer.BadParameter(f"{out} exists (use --force to overwrite)", param_hint="--out")
    x = _load_array(latents, "LATENTS")
    y = _load_array(labels, "LABELS")
    try:
        result = fit_boundary(x, y, l2=l2)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except LookalikeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    path = save_direction(out, result.direction)
    typer.echo(f"fitted on {result.n_positive + result.n_negative} latents "
               f"({result.n_positive} positive, {result.n_negative} negative); "
               f"training accuracy {result.train_accuracy:.1%}")
    if result.train_accuracy < 0.75:
        typer.echo("warning: the labels are poorly separated; check them or add latents", err=True)
    typer.echo(f"direction {list(result.direction.shape)} written to {path}")

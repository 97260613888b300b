"""The ``lookalike`` command: build a gallery, match a photo, evaluate a face model.

Settings come from ``LOOKALIKE_*`` environment variables (see ``lookalike.config``); options
given here win over them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Iterable, Optional

import typer

from lookalike.config import get_settings
from lookalike.errors import GalleryError, LookalikeError

app = typer.Typer(
    help="Lookalike: which celebrity do you resemble? Match a face photo against a celebrity "
         "gallery and render morph videos, on this machine with no servers.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown")  # docstring paragraphs re-wrapped, not broken at source lines
gallery_app = typer.Typer(help="Build and curate the celebrity gallery.", no_args_is_help=True,
                          rich_markup_mode="markdown")
app.add_typer(gallery_app, name="gallery")

def _print_version(value: bool) -> None:
    if value:
        from lookalike import __version__

        typer.echo(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None) -> None:
    """Lookalike: which celebrity do you resemble? Match a face photo against a celebrity gallery
    and render morph videos, on this machine with no servers."""


GalleryOpt = Annotated[Optional[Path], typer.Option(
    "--gallery", "-g", help="Gallery folder (default: $LOOKALIKE_DATA_DIR/gallery).",
    file_okay=False)]


def _fail(exc: LookalikeError) -> None:
    typer.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
    if exc.advice:
        typer.echo(f"  {exc.advice}", err=True)
    raise typer.Exit(exc.exit_code)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _gallery_dir(path: Path | None) -> Path:
    return path or get_settings().gallery_dir


def _progress(desc: str):
    from tqdm import tqdm

    def wrap(items: Iterable, total: int) -> Iterable:
        return tqdm(items, total=total, desc=desc, unit="photo", file=sys.stderr,
                    disable=total == 0, dynamic_ncols=True)

    return wrap


# --- run ------------------------------------------------------------------------------------

@app.command()
def run(
    photo: Annotated[Path, typer.Argument(help="Face photo (JPEG, PNG, WebP, HEIC, GIF, BMP, TIFF).",
                                          exists=True, dir_okay=False, readable=True)],
    gallery: GalleryOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for result.json and media.",
                                      file_okay=False)] = Path("out"),
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, max=100,
                                                 help="How many celebrities to list.")] = None,
    no_video: Annotated[bool, typer.Option("--no-video", help="Match only: no videos (the aligned face is still written).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print result.json instead of a summary.")] = False,
) -> None:
    """Match PHOTO against the gallery and render the morph and smile videos into --out.

    Exit status: 0 done; 10 empty file; 11 unsupported image; 12 corrupt image; 13 image too
    large; 14 no face; 15 face too small; 3 gallery missing; 4 bad setting; 1 internal error.
    """
    from lookalike.job import load_index, run_job
    from lookalike.stylegan.stage import check_renderer

    try:
        settings = get_settings()
        if not no_video:
            check_renderer(settings)   # a missing StyleGAN file stops here, before any work
        index = load_index(_gallery_dir(gallery), settings)
        data = photo.read_bytes()
        result = run_job(data, out, index, settings=settings, top_k=top_k, render=not no_video,
                         photo_name=photo.name,
                         on_stage=None if as_json else lambda s: typer.echo(f"… {s}", err=True))
    except LookalikeError as exc:
        if as_json and (out / "result.json").is_file():
            typer.echo((out / "result.json").read_text())
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_summary(result, out)


def _print_summary(result: dict, out: Path) -> None:
    face = result["face"]
    seen = f" (largest of {face['faces_seen']} faces)" if face["faces_seen"] > 1 else ""
    typer.echo(f"Face found{seen}: box {face['box']} in a {face['image_size'][0]}x"
               f"{face['image_size'][1]} photo.")
    typer.echo("\nClosest celebrities (similarity 0-1; 0.5 = the model's same-person threshold):")
    for n, m in enumerate(result["matches"], 1):
        typer.echo(f"  {n}. {m['name']:<28} {m['similarity']:.3f}  [{m['category']}]")
    for key, label in (("good_news", "Good news"), ("bad_news", "Bad news")):
        m = result.get(key)
        typer.echo(f"{label:>10}: " + (f"{m['name']} ({m['similarity'] * 100:.0f}%)" if m else "none "
                                       "(no such category in the gallery)"))
    t = result["timings_ms"]
    stages = ", ".join(f"{k} {v:.0f}" for k, v in t.items() if k not in ("total", "matches_ready"))
    typer.echo(f"\nTime (ms): {stages}")
    typer.echo(f"Matches ready in {t.get('matches_ready', 0):.0f} ms, whole job {t['total']:.0f} ms.")
    typer.echo(f"\nWrote {out}/result.json and: {', '.join(result['artifacts'].values())}")


# --- gallery --------------------------------------------------------------------------------

@gallery_app.command("import")
def gallery_import(
    source: Annotated[Path, typer.Argument(help="Folder with one sub-folder of photos per person.",
                                           exists=True, file_okay=False)],
    gallery: GalleryOpt = None,
    metadata: Annotated[Optional[Path], typer.Option(
        "--metadata", "-m", exists=True, dir_okay=False,
        help="CSV with header id,name,category (category good or bad) (default: SOURCE/people.csv).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=64, help="Worker processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Add or update people from SOURCE; only new or changed photos are analysed."""
    from lookalike.gallery.importer import import_folder

    from lookalike.stylegan.stage import check_renderer, uses_stylegan

    target = _gallery_dir(gallery)
    latents = None
    try:
        settings = get_settings()
        check_renderer(settings)
        report = import_folder(source, target, metadata=metadata, workers=workers,
                               progress=None if as_json else _progress("importing"))
        if uses_stylegan(settings):
            latents = _invert_gallery(target, settings, None if as_json else _progress("inverting"))
    except LookalikeError as exc:
        _fail(exc)
        return
    if as_json:
        body = report.to_dict()
        if latents is not None:
            body["stylegan_latents"] = latents
        typer.echo(json.dumps(body, indent=2))
        return
    if latents is not None:
        typer.echo(f"StyleGAN latents: {latents['inverted']} inverted, {latents['cached']} already cached.")
    typer.echo(f"Gallery {target}: {_count(report.people, 'person', 'people')}; "
               f"{_count(report.added, 'photo')} added, {report.unchanged} unchanged, "
               f"{report.removed} removed.")
    for item in report.failed:
        typer.echo(f"  skipped {item['source']}: {item['code']} - {item['message']}")
    for rel in report.ambiguous:
        typer.echo(f"  note {rel}: several faces, the largest was used")


def _invert_gallery(target: Path, settings, progress) -> dict:
    """Celebrity latents for the StyleGAN renderer, computed once at import and cached."""
    import numpy as np
    from PIL import Image

    from lookalike.gallery.store import Gallery
    from lookalike.stylegan.stage import precompute_gallery_latents

    g = Gallery.load(target)

    def loader(i: int):
        return lambda: np.asarray(Image.open(g.crop_path(i)).convert("RGB"))

    return precompute_gallery_latents([loader(i) for i in range(len(g))], settings, progress)


@gallery_app.command("list")
def gallery_list(
    gallery: GalleryOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """People in the gallery with their category and photo count."""
    from lookalike.gallery.store import Gallery

    try:
        g = Gallery.load(_gallery_dir(gallery))
    except LookalikeError as exc:
        _fail(exc)
        return
    rows = [{"id": p.id, "name": p.name, "category": p.category, "photos": len(g.photos_of(p.id))}
            for p in sorted(g.people.values(), key=lambda p: p.id)]
    if as_json:
        typer.echo(json.dumps({"stats": g.stats(), "people": rows}, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['id']:<30} {r['category']:<5} {r['photos']:>3}  {r['name']}")
    s = g.stats()
    typer.echo(f"{_count(s['people'], 'person', 'people')}, {_count(s['photos'], 'photo')}, "
               f"model {s['model']}; {_count(s['failed'], 'photo')} without a usable face.")


@gallery_app.command("set-category")
def gallery_set_category(
    person: Annotated[str, typer.Argument(help="Person id (folder name).")],
    category: Annotated[str, typer.Argument(help="good or bad.")],
    gallery: GalleryOpt = None,
) -> None:
    """Tag a person as good news or bad news."""
    from lookalike.errors import ConfigError
    from lookalike.gallery.store import CATEGORIES, Gallery

    try:
        if category not in CATEGORIES:
            raise ConfigError(f"category must be one of {', '.join(CATEGORIES)}, not {category!r}")
        g = Gallery.load(_gallery_dir(gallery))
        if person not in g.people:
            raise ConfigError(f"no person {person!r} in the gallery (see `lookalike gallery list`)")
        g.people[person].category = category
        g.save()
    except LookalikeError as exc:
        _fail(exc)
        return
    typer.echo(f"{person} is now {category}.")


@gallery_app.command("remove")
def gallery_remove(
    person: Annotated[str, typer.Argument(help="Person id (folder name).")],
    gallery: GalleryOpt = None,
) -> None:
    """Remove a person, their crops and embeddings from the gallery."""
    from lookalike.errors import ConfigError
    from lookalike.gallery.store import Gallery

    try:
        g = Gallery.load(_gallery_dir(gallery))
        if person not in g.people:
            raise ConfigError(f"no person {person!r} in the gallery (see `lookalike gallery list`)")
        g.remove_photos(set(g.photos_of(person)))
        del g.people[person]
        g.save()
    except LookalikeError as exc:
        _fail(exc)
        return
    typer.echo(f"removed {person}.")


@gallery_app.command("reembed")
def gallery_reembed(
    gallery: GalleryOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Re-embed even if the gallery is already "
                                                        "in the configured model's space.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute every embedding with the configured face model (after switching backend).

    Uses the stored aligned crops, not the original photos; the model comes from
    LOOKALIKE_FACE_BACKEND (and LOOKALIKE_ONNX_MODEL_DIR for onnx).
    """
    from lookalike.faces import get_backend
    from lookalike.gallery.reembed import reembed_gallery

    target = _gallery_dir(gallery)
    try:
        backend = get_backend()
        report = reembed_gallery(target, backend, force=force,
                                 progress=None if as_json else _progress("re-embedding"))
    except LookalikeError as exc:
        _fail(exc)
        return
    d = report.to_dict()
    if as_json:
        typer.echo(json.dumps({**d, "backend": backend.describe()}, indent=2))
        return
    where = backend.describe().get("provider")
    if report.skipped:
        typer.echo(f"Gallery {target} is already embedded with {report.new_model}; nothing to do "
                   "(--force re-embeds anyway).")
        return
    typer.echo(f"Gallery {target}: {d['photos']} photos re-embedded with {report.new_model}"
               + (f" on {where}" if where else "") + f" in {d['seconds']:.1f} s "
               f"(was {report.old_model or 'empty'}); {report.detected} aligned on the model's "
               f"own detection, {report.from_landmarks} on the stored landmarks.")
    for item in report.failed:
        typer.echo(f"  dropped {item['source']}: {item['code']} - {item['message']}")


# --- eval -----------------------------------------------------------------------------------

@app.command("eval")
def evaluate(
    source: Annotated[Path, typer.Argument(help="Folder with one sub-folder of photos per person.",
                                           exists=True, file_okay=False)],
    workers: Annotated[Optional[int], typer.Option(min=1, max=64, help="Worker processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Rank-1/rank-5 identification and similarity distributions of the face model on SOURCE.

    One photo per person (the first with a single face) forms the gallery; the others probe it.
    """
    from lookalike.evaluate import evaluate_folder

    try:
        report = evaluate_folder(source, workers=workers,
                                 progress=None if as_json else _progress("analysing"))
    except LookalikeError as exc:
        _fail(exc)
        return
    d = report.to_dict()
    if not report.probes:
        if as_json:
            typer.echo(json.dumps(d, indent=2))
        for f in d["failed"]:
            typer.echo(f"  failed {f['photo']}: {f['code']} - {f['message']}", err=True)
        _fail(GalleryError(f"nothing to evaluate in {source}: "
                           f"{_count(d['people'], 'person', 'people')} with a usable photo, no probe",
                           advice="Give at least two people two or more photos each with a usable face."))
        return
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"Model {d['model']}: {_count(d['people'], 'person', 'people')}, "
               f"{_count(d['probes'], 'probe photo')}.")
    typer.echo(f"Rank-1 identification: {report.rank_rate(1) * 100:.1f} %   "
               f"rank-5: {report.rank_rate(5) * 100:.1f} %")
    for key, label in (("same_person_similarity", "same person"),
                       ("different_person_similarity", "different people")):
        s = d[key]
        if s["pairs"]:
            typer.echo(f"Similarity, {label:<16} ({s['pairs']} pairs): median {s['median']:.3f}, "
                       f"5-95 % {s['p5']:.3f}-{s['p95']:.3f}")
    thr = d["at_threshold_0.5"]
    if thr["true_accept_rate"] is not None and thr["false_accept_rate"] is not None:
        typer.echo(f"At similarity 0.5: same-person pairs accepted {thr['true_accept_rate'] * 100:.1f} %, "
                   f"different-person pairs accepted {thr['false_accept_rate'] * 100:.2f} %")
    for m in d["misidentified"]:
        typer.echo(f"  missed {m['photo']}: ranked {m['rank']}, answer {m['answer']}")
    for f in d["failed"]:
        typer.echo(f"  failed {f['photo']}: {f['code']} - {f['message']}")


def _mount_optional() -> None:
    """Sub-commands that live beside their subsystem (service commands; torch-only ones)."""
    import importlib.util

    if importlib.util.find_spec("lookalike.service_cli") is not None:
        from lookalike.service_cli import register as register_service_commands

        register_service_commands(app)
    if importlib.util.find_spec("torch") and importlib.util.find_spec("lookalike.stylegan.cli"):
        from lookalike.stylegan.cli import directions_app

        app.add_typer(directions_app, name="directions")


_mount_optional()


def main() -> None:
    try:
        app()
    except LookalikeError as exc:  # a setting read at start-up, outside a command's own handling
        typer.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

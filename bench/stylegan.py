"""StyleGAN2 renderer speed: ms per generated frame and per inversion step, per resolution.

    python bench/stylegan.py                                   # CPU, 256/512/1024, prints a table
    python bench/stylegan.py --device cuda --write docs/BENCHMARKS.md
    python bench/stylegan.py --sizes 256 --frames 16 --steps 20

The generators are config-f (style_dim 512, 8 mapping layers, channel multiplier 2) with
random weights, so no checkpoint is needed: speed does not depend on the weights' values.
The perceptual loss is a randomly initialised VGG16 (LPIPS-style, images compared at 256 px).

- frame: ``morph_frames`` (W+ lerp -> synthesis -> uint8), ``--batch`` frames per call, at the
  generator's own size (no resize), median ms per frame over ``--repeat`` runs after a warm-up.
- inversion step: one Adam step of ``invert`` (synthesis + VGG16 + pixel loss, backward) on a
  batch of one face, W+ space, no noise optimisation: (time of ``invert`` with N steps - its
  fixed cost) / N, the fixed cost being the two loss evaluations without gradient (start and
  end), timed apart.

Targets on one H200 (the issue's): a 1024 px face inverted in <= 5 s, 48 frames in <= 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

# per size: (inversion steps timed, frames timed per repeat); small at 1024 so a CPU run of
# every size stays within a few minutes
CPU_PLAN = {256: (2, 4), 512: (1, 2), 1024: (1, 2)}
GPU_PLAN = {256: (50, 96), 512: (50, 96), 1024: (50, 96)}
DEFAULT_STEPS = 300          # LOOKALIKE_STYLEGAN_STEPS default: the projected whole inversion


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_size(size: int, device, *, steps: int, frames: int, batch: int, repeat: int) -> dict:
    import torch

    from lookalike.stylegan.generator import Generator
    from lookalike.stylegan.inversion import invert, w_statistics
    from lookalike.stylegan.perceptual import VGG16Features
    from lookalike.stylegan.render import morph_frames

    torch.manual_seed(size)
    g = Generator(size, 512, 8, channel_multiplier=2).to(device).eval().requires_grad_(False)
    vgg = VGG16Features().to(device)
    with torch.no_grad():
        w = g.get_latent(torch.randn(2, 512, device=device))                    # [2, 512]
        target = g.synthesis(w[1:2, None].repeat(1, g.n_latent, 1))[0]          # [3, S, S]
    latent_avg = w_statistics(g)[0][None]                                       # warm the W stats
    a, b = w[0].repeat(g.n_latent, 1), w[1].repeat(g.n_latent, 1)

    # frames
    ts = [i / max(1, frames - 1) for i in range(frames)]

    def run_frames() -> float:
        _sync(device)
        t = time.perf_counter()
        for _ in morph_frames(g, a, b, ts, batch_size=min(batch, frames)):
            pass
        _sync(device)
        return time.perf_counter() - t

    run_frames()                                                                # warm-up
    frame_s = statistics.median(run_frames() for _ in range(repeat)) / frames

    # inversion steps
    def loss_eval() -> float:
        _sync(device)
        t = time.perf_counter()
        with torch.no_grad():
            img = g.synthesis(a[None])
            vgg.feature_distance(vgg(img), vgg(target[None]))
        _sync(device)
        return time.perf_counter() - t

    def run_invert(n: int) -> float:
        _sync(device)
        t = time.perf_counter()
        invert(g, target, steps=n, perceptual=vgg, latent_avg=latent_avg)
        _sync(device)
        return time.perf_counter() - t

    if device.type == "cuda":
        run_invert(2)                          # warm-up (CUDA kernels, autotuning)
    fixed_s = 2 * statistics.median(loss_eval() for _ in range(repeat))
    total = statistics.median(run_invert(steps) for _ in range(repeat))
    step_s = max(0.0, total - fixed_s) / steps
    return {"size": size, "n_latent": g.n_latent, "frame_ms": frame_s * 1000,
            "frames48_s": 48 * frame_s, "step_ms": step_s * 1000, "fixed_ms": fixed_s * 1000,
            "inversion_s": DEFAULT_STEPS * step_s + fixed_s, "steps": steps, "frames": frames}


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(device)}"
    return f"CPU ({machine()}, {torch.get_num_threads()} torch threads)"


def report(rows: list[dict], device, batch: int, repeat: int) -> str:
    import torch

    lines = [
        "## StyleGAN2 renderer (`bench/stylegan.py`)",
        "",
        f"Device: {device_name(device)}; torch {torch.__version__}; random config-f weights "
        f"(style_dim 512, 8 mapping layers); frames in batches of {batch}; median of {repeat} "
        "runs after a warm-up. Inversion: W+, VGG16 perceptual + pixel loss, batch 1; "
        f"*whole inversion* projects the default {DEFAULT_STEPS} steps plus the fixed cost.",
        "",
        "| size | W+ rows | ms / frame | 48 frames (s) | ms / inversion step | fixed (ms) "
        f"| whole inversion, {DEFAULT_STEPS} steps (s) | timed |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['size']} | {r['n_latent']} | {r['frame_ms']:.0f} | {r['frames48_s']:.1f} | "
                     f"{r['step_ms']:.0f} | {r['fixed_ms']:.0f} | {r['inversion_s']:.1f} | "
                     f"{r['frames']} frames, {r['steps']} steps |")
    lines += [
        "",
        "Targets on one H200: 1024 px face inverted in <= 5 s (at 300 steps: <= ~16 ms a step), "
        "48 frames in <= 1 s.",
    ]
    if device.type != "cuda":
        lines += [
            "**Not measured on a GPU:** no GPU was available for this run, so the targets are "
            "unverified. On a CUDA machine run `python bench/stylegan.py --device cuda --write "
            "docs/BENCHMARKS.md` to replace this section. On this CPU the StyleGAN renderer is "
            "far too slow for visitors (minutes per job at 1024 px); it is meant for CUDA "
            "workers (`LOOKALIKE_STYLEGAN_DEVICE=auto`), with `LOOKALIKE_STYLEGAN_STEPS` lowered "
            "if the inversion budget is tight.",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ap.add_argument("--sizes", default="256,512,1024", help="comma-separated resolutions")
    ap.add_argument("--steps", type=int, help="inversion steps timed (default: per size, "
                                              "few on CPU)")
    ap.add_argument("--frames", type=int, help="frames generated per run (default: per size)")
    ap.add_argument("--batch", type=int, default=4, help="frames per generator call")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement after a warm-up")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--write", type=Path, help="update this markdown file's stylegan section")
    args = ap.parse_args()

    import torch

    from lookalike.errors import ConfigError
    from lookalike.stylegan.inversion import pick_device

    try:
        device = pick_device(args.device)
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except (ConfigError, ValueError) as exc:
        ap.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = GPU_PLAN if device.type == "cuda" else CPU_PLAN
    rows = []
    for size in sizes:
        steps, frames = plan.get(size, (3, 4))
        steps, frames = args.steps or steps, args.frames or frames
        print(f"{size} px: {frames} frames, {steps} inversion steps on {device}…", file=sys.stderr)
        rows.append(bench_size(size, device, steps=steps, frames=frames, batch=args.batch,
                               repeat=args.repeat))
        r = rows[-1]
        print(f"  {r['frame_ms']:.0f} ms/frame, {r['step_ms']:.0f} ms/step", file=sys.stderr)
    body = report(rows, device, args.batch, args.repeat)
    print(body)
    if args.write:
        write_section(args.write, "stylegan", body)


if __name__ == "__main__":
    main()

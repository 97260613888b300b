"""Jobs per minute through the distributed stack with one worker process, then with two.

    python bench/throughput.py --fixtures ../shared/fixtures [--jobs 8] [--write docs/BENCHMARKS.md]

Starts a private distributed stack (bench/_stack.py) and ``lookalike worker --queue all
--concurrency 1`` processes, each limited to one compute thread, so a worker process is the
unit being scaled. For 1 and then 2 workers: ``--jobs`` whole jobs (a ~1 MP fixture photo, top-5
matches, both morphs and the smile clip, all encoded) are submitted at once over HTTP, and the
time from the first submit to the last job's ``succeeded`` gives jobs per minute. One job runs
first in each round to warm the workers (models loaded, gallery index read).

Target (the job-service issue): two worker processes >= 1.7x the jobs per minute of one, on
this 2-core machine, where the API, PostgreSQL, Redis and the S3 server share the same cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402
from _stack import BenchStack  # noqa: E402

PHOTOS = ["faces/Unnamed_B/1.jpg", "faces/Unnamed_A/1.jpg", "bad-inputs/baseline.jpg"]


def run_jobs(client: httpx.Client, photos: list[Path], n: int, timeout: float = 900) -> tuple[float, list[dict]]:
    """Submits ``n`` jobs at once (photos in turn) and waits for all: (seconds, final views)."""
    t0 = time.perf_counter()
    ids = []
    for i in range(n):
        p = photos[i % len(photos)]
        r = client.post("/v1/jobs", files={"photo": (p.name, p.read_bytes(), "image/jpeg")})
        r.raise_for_status()
        ids.append(r.json()["id"])
    pending, done = set(ids), {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} jobs unfinished after {timeout} s")
        for job_id in list(pending):
            view = client.get(f"/v1/jobs/{job_id}").json()
            if view["state"] in ("succeeded", "failed"):
                done[job_id] = view
                pending.discard(job_id)
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    failed = [v for v in done.values() if v["state"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed: {failed[0].get('error')}")
    return elapsed, list(done.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "fixtures")
    ap.add_argument("--jobs", type=int, default=8, help="jobs per round")
    ap.add_argument("--write", type=Path, help="update this markdown file's throughput section")
    args = ap.parse_args()
    photos = [args.fixtures / p for p in PHOTOS]

    results: dict[int, dict] = {}
    with BenchStack(args.fixtures) as stack:
        headers = {"Authorization": f"Bearer {stack.keys['client']}"}
        with httpx.Client(base_url=stack.base_url, headers=headers, timeout=60, trust_env=False) as c:
            for workers in (1, 2):
                stack.start_worker(f"worker-{workers}")
                print(f"{workers} worker(s): warm-up…", file=sys.stderr)
                run_jobs(c, photos, workers)  # each worker process loads its models once
                print(f"{workers} worker(s): {args.jobs} jobs…", file=sys.stderr)
                seconds, views = run_jobs(c, photos, args.jobs)
                per_job = [sum(v for k, v in (view.get("timings_ms") or {}).items()
                               if k in ("encode", "match", "render")) for view in views]
                results[workers] = {"seconds": seconds, "jpm": 60 * args.jobs / seconds,
                                    "job_ms": statistics.median(per_job) if per_job else float("nan")}

    ratio = results[2]["jpm"] / results[1]["jpm"]
    lines = [f"## Throughput (`python bench/throughput.py --fixtures ../shared/fixtures --jobs {args.jobs}`)", "",
             f"Machine: {machine()}; distributed stack on loopback (api, PostgreSQL, Redis, `weed mini` "
             f"S3 on the same cores); `lookalike worker --queue all --concurrency 1` processes with one "
             f"compute thread each; {args.jobs} whole jobs (top-5, two morphs + smile, encoded) "
             f"submitted at once; {time.strftime('%Y-%m-%d')}.", "",
             "| worker processes | wall time (s) | jobs / minute | median stage time per job (ms) |",
             "|---:|---:|---:|---:|"]
    for workers, r in results.items():
        lines.append(f"| {workers} | {r['seconds']:.1f} | {r['jpm']:.1f} | {r['job_ms']:.0f} |")
    lines += ["", f"Two workers give **{ratio:.2f}×** the jobs per minute of one (target ≥ 1.7×)."]
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section(args.write, "throughput", table)


if __name__ == "__main__":
    main()

"""API gateway under load on loopback: status reads and photo submits per second, with latency.

    python bench/api_load.py --fixtures ../shared/fixtures [--duration 10] [--write docs/BENCHMARKS.md]

Starts a private distributed stack (bench/_stack.py: its own redis-server, PostgreSQL database,
``weed mini`` S3 server and ``lookalike api --workers N``), then drives it with ``wrk`` (Debian's
``wrk`` package; ``make bench-service`` installs it), which costs far less CPU per request than
a Python client would on this 2-core machine:

- **status**: ``GET /v1/jobs/{id}`` of a finished job (state, timings, result, 9 presigned
  artifact URLs), with a client API key: auth, rate limit in Redis, a PostgreSQL read, URL signing.
- **submit**: ``POST /v1/jobs`` of a ~200 KB JPEG (multipart): the photo is streamed in,
  checked (format sniffing, header-only pixel count), stored in S3, the job row written and the
  encoder task queued. No worker runs during this phase, so the queue just grows.

Targets on this 2-core machine (the job-service issue): status >= 1000/s with p99 <= 25 ms;
>= 150 submits/s. wrk, the API, PostgreSQL, Redis and the S3 server all share the two cores.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402
from _stack import BenchStack, photo_near  # noqa: E402

SUBMIT_LUA = """
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def parse_wrk(out: str) -> dict:
    """Requests/s, the latency percentiles and the error counts from ``wrk --latency``."""
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {int(p): ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50": pct[50], "p90": pct[90], "p99": pct[99], "requests": total,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


def wrk(url: str, *, duration: int, connections: int, headers: dict[str, str] | None = None,
        script: Path | None = None) -> dict:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    if script:
        args += ["-s", str(script)]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def finished_job(stack: BenchStack, photo: Path) -> str:
    """One job run to the end by a worker, so the status answer is the full, realistic one."""
    stack.start_worker("worker-1")
    headers = {"Authorization": f"Bearer {stack.keys['client']}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=60, trust_env=False) as c:
        job_id = c.post("/v1/jobs", files={"photo": (photo.name, photo.read_bytes(), "image/jpeg")}).json()["id"]
        deadline = time.monotonic() + 300
        while (state := c.get(f"/v1/jobs/{job_id}").json()["state"]) not in ("succeeded", "failed"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {state} after 300 s")
            time.sleep(0.5)
        if state != "succeeded":
            raise RuntimeError(f"the warm-up job {job_id} failed: {c.get(f'/v1/jobs/{job_id}').json()['error']}")
    stack.stop_worker("worker-1")
    return job_id


def multipart_file(photo: Path, folder: Path) -> tuple[Path, str]:
    boundary = "lookalike-bench-boundary-7d3f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{photo.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + photo.read_bytes() + \
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"clips\"\r\n\r\nall\r\n--{boundary}--\r\n".encode()
    path = folder / "submit.body"
    path.write_bytes(body)
    return path, boundary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "fixtures")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--status-connections", type=int, default=8)
    ap.add_argument("--submit-connections", type=int, default=8)
    ap.add_argument("--write", type=Path, help="update this markdown file's api-load section")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("needs wrk (Debian: apt-get install wrk; `make bench-service` does it)")

    photo = photo_near(args.fixtures, 200_000)
    with BenchStack(args.fixtures, api_workers=args.api_workers) as stack, \
            tempfile.TemporaryDirectory(prefix="lookalike-load-") as tmp:
        print("running one job to read back…", file=sys.stderr)
        job_id = finished_job(stack, photo)
        auth = {"Authorization": f"Bearer {stack.keys['client']}"}
        url = f"{stack.base_url}/v1/jobs/{job_id}"
        wrk(url, duration=2, connections=args.status_connections, headers=auth)  # warm-up
        print(f"status: {args.duration} s of GET …", file=sys.stderr)
        status = wrk(url, duration=args.duration, connections=args.status_connections, headers=auth)

        body, boundary = multipart_file(photo, Path(tmp))
        script = Path(tmp) / "submit.lua"
        script.write_text(SUBMIT_LUA.format(body=body, boundary=boundary, key=stack.keys["client"]))
        print(f"submit: {args.duration} s of POST …", file=sys.stderr)
        submit = wrk(f"{stack.base_url}/v1/jobs", duration=args.duration,
                     connections=args.submit_connections, script=script)

    rows = [("status `GET /v1/jobs/{id}`", status, args.status_connections, "≥ 1000/s, p99 ≤ 25 ms"),
            (f"submit `POST /v1/jobs` ({photo.stat().st_size // 1000} KB JPEG)", submit,
             args.submit_connections, "≥ 150/s")]
    lines = [f"## API load (`python bench/api_load.py --fixtures ../shared/fixtures --duration {args.duration}`)", "",
             f"Machine: {machine()}; `lookalike api --workers {args.api_workers}` on PostgreSQL, Redis and "
             f"`weed mini` S3, all on loopback and on the same cores as the load generator (wrk, 1 thread); "
             f"{args.duration} s per run; {time.strftime('%Y-%m-%d')}.", "",
             "| request | connections | req/s | p50 ms | p90 ms | p99 ms | errors | target |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r, conns, target in rows:
        lines.append(f"| {name} | {conns} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} | "
                     f"{r['p99']:.1f} | {r['non2xx'] + r['socket_errors']} | {target} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section(args.write, "api-load", table)
    if status["non2xx"] or submit["non2xx"]:
        sys.exit("some requests were answered with an error (see the table)")


if __name__ == "__main__":
    main()

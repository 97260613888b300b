"""The visitors' web page and the operators' gallery page (plain files in services/api/web/).

How a browser visitor is trusted, without an API key (``LOOKALIKE_VISITOR_UPLOADS``, on by
default; uploads rate-limited per client address): ``POST /visit/jobs`` creates a job owned by
the ``visitor`` key id and answers two signed, expiring capabilities for that one job --

* the *owner* token (``exp``/``sig`` over ``owner:<id>``), kept by the uploading browser: read,
  follow and delete the job;
* the *share* link ``/r/<id>?exp=…&sig=…`` (signed over ``<id>``, the same signature as the
  e-mailed ``/v1/results`` link): read only, for whoever holds it, until the job expires.

Both expire with the job (``LOOKALIKE_RETENTION_HOURS``). Nothing else about visitor jobs is
reachable without an admin key. The result page for a share link is rendered here with
OpenGraph tags, so chat apps show a preview.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from lookalike.auth import Principal
from lookalike.errors import GalleryError
from lookalike.jobstore import repo
from lookalike.jobstore.models import Job
from lookalike.jobview import absolute, job_view
from lookalike.pipeline import key
from lookalike.runtime import Runtime
from lookalike.storage import signed_query, verify_signed
from services.api.deps import AdminKey, BaseUrl, RuntimeDep, get_principal
from services.api.errors import ApiError
from services.api.routes import jobs

router = APIRouter(include_in_schema=False)

WEB = Path(__file__).resolve().parents[1] / "web"
VISITOR = "visitor"
#: the assets the pages load, by name (nothing else under web/ is served)
ASSETS = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "gallery.js": "text/javascript; charset=utf-8", "icon.svg": "image/svg+xml"}
_GONE = "No such result: it was deleted or has expired."


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


def _page(name: str, **values: str) -> str:
    """A page with its ``{{name}}`` placeholders filled in (values are HTML-escaped)."""
    text = _read(name)
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", html.escape(v, quote=True))
    return text


def _hours(rt: Runtime) -> str:
    return f"{rt.settings.retention_hours:g}"


# --- capabilities ------------------------------------------------------------------------------

def _ttl(rt: Runtime) -> int:
    return int(rt.settings.retention_hours * 3600)


def owner_query(rt: Runtime, job_id: str) -> str:
    return signed_query(rt.secret, f"owner:{job_id}", _ttl(rt))


def share_url(rt: Runtime, job_id: str, base: str) -> str:
    return f"{base}/r/{job_id}?{signed_query(rt.secret, job_id, _ttl(rt))}"


def _role(rt: Runtime, job_id: str, exp: str | None, sig: str | None) -> str:
    """'owner' or 'viewer' for a valid token, else 403."""
    if verify_signed(rt.secret, f"owner:{job_id}", exp, sig):
        return "owner"
    if verify_signed(rt.secret, job_id, exp, sig):
        return "viewer"
    raise ApiError(403, "link_expired", "The link is invalid or has expired.")


def _as_owner_of(job: Job) -> Principal:
    """The principal the jobs routes check a visitor's job against (its own key id)."""
    return Principal(key_id=job.key_id or VISITOR, scopes=frozenset({"client"}))


def _load(rt: Runtime, job_id: str) -> Job | None:
    with rt.db.session() as s:
        job = repo.get_job(s, job_id)
        if job is not None:
            s.expunge(job)
        return job


def visitor_view(rt: Runtime, job: Job, base: str, role: str) -> dict:
    """The job's public JSON plus what the page shows besides: the celebrities' aligned faces
    (copied next to the job by the matcher), the share link and whether delete is allowed."""
    view = job_view(job, rt.store, base_url=base, link_ttl_s=rt.settings.link_ttl_s,
                    retention_hours=rt.settings.retention_hours)
    faces = {}
    result = job.result or {}
    clips = (job.options or {}).get("clips") or []
    for name in ("good", "bad"):
        if result.get(f"{name}_news") and name in clips:
            target = key(job.id, f"target-{name}.jpg")
            faces[name] = absolute(rt.store.url(target, rt.settings.link_ttl_s,
                                                filename=f"{name}-match.jpg"), base)
    view["page"] = {"faces": faces, "share_url": share_url(rt, job.id, base),
                    "can_delete": role == "owner", "retention_hours": rt.settings.retention_hours}
    return view


# --- pages -------------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def index(rt: RuntimeDep) -> HTMLResponse:
    return HTMLResponse(_page("index.html", hours=_hours(rt), mode="visit", job="", token="",
                              uploads="on" if rt.settings.visitor_uploads else "off",
                              title="Lookalike — which celebrity do you look like?"))


@router.get("/web/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, "not_found", "No such file.")
    return Response(_read(name), media_type=ASSETS[name],
                    headers={"Cache-Control": "public, max-age=300"})


def _og_tags(view: dict, url: str) -> str:
    result = view.get("result") or {}
    good = result.get("good_news") or {}
    artifacts = result.get("artifacts") or {}
    if view["state"] == "succeeded" and good:
        title = f"I look like {good.get('name', 'a celebrity')}!"
        desc = f"{round(100 * float(good.get('similarity', 0)))}% similar — watch my face morph into theirs."
    else:
        title = "My Lookalike result"
        desc = "Which celebrity do you look like?"
    tags = [("og:type", "website"), ("og:site_name", "Lookalike"), ("og:title", title),
            ("og:description", desc), ("og:url", url)]
    image = artifacts.get("poster_good") or artifacts.get("poster") or artifacts.get("aligned")
    if image:
        tags += [("og:image", image), ("og:image:alt", "A face halfway between mine and my look-alike's")]
    if artifacts.get("morph_good_mp4"):
        tags += [("og:video", artifacts["morph_good_mp4"]), ("og:video:type", "video/mp4")]
    lines = [f'<meta property="{p}" content="{html.escape(str(c), quote=True)}">' for p, c in tags]
    lines.append(f'<meta name="twitter:card" content="{"summary_large_image" if image else "summary"}">')
    lines.append(f'<meta name="description" content="{html.escape(desc, quote=True)}">')
    return "\n    ".join(lines)


def _message_page(status: int, heading: str, text: str, rt: Runtime) -> HTMLResponse:
    body = _page("message.html", heading=heading, text=text, hours=_hours(rt))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/r/{job_id}", response_class=HTMLResponse)
def result_page(job_id: str, request: Request, rt: RuntimeDep, base: BaseUrl,
                exp: str | None = None, sig: str | None = None) -> HTMLResponse:
    """A shared result: works for whoever holds the link until the job expires; 410 once gone."""
    job_id = job_id[:64]
    if not verify_signed(rt.secret, job_id, exp, sig):
        return _message_page(403, "This link does not work",
                             "The link is incomplete, was changed, or has expired.", rt)
    job = _load(rt, job_id)
    if job is None:
        return _message_page(410, "This result is gone",
                             "The photo and its results were deleted — by their owner, or "
                             f"automatically {_hours(rt)} hours after the upload.", rt)
    view = job_view(job, rt.store, base_url=base, link_ttl_s=rt.settings.link_ttl_s,
                    retention_hours=rt.settings.retention_hours)
    url = f"{base}/r/{job_id}?exp={exp}&sig={sig}"
    text = _page("index.html", hours=_hours(rt), mode="result", job=job_id,
                 token=f"exp={exp}&sig={sig}", uploads="off",
                 title="A Lookalike result")
    # the tags are built from escaped values; inserted after _page so they are not escaped twice
    text = text.replace("<!--og-->", _og_tags(view, url))
    return HTMLResponse(text, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@router.get("/admin", response_class=HTMLResponse)
def gallery_page() -> HTMLResponse:
    return HTMLResponse(_read("gallery.html"), headers={"Cache-Control": "no-store"})


# --- visitor API -------------------------------------------------------------------------------

def _visitor_principal(request: Request, rt: Runtime) -> str:
    """The key id a page upload is filed under: the caller's API key when it sends one, else
    ``visitor`` when visitor uploads are on (counted per client address, also when keys are off)."""
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        return get_principal(request, rt).key_id
    auth_off = bool(rt.extras.get("auth_off"))
    if not auth_off and not rt.settings.visitor_uploads:
        raise ApiError(401, "unauthorized", "Uploads from the web page are switched off on this "
                                            "server (LOOKALIKE_VISITOR_UPLOADS=false).")
    client = request.client.host if request.client else "unknown"
    limit = rt.settings.visitor_rate_limit_per_minute
    try:
        allowed, retry_after = rt.limiter.hit(f"visitor:{client}", limit)
    except Exception:  # noqa: BLE001 - Redis away: serve rather than refuse everyone
        allowed, retry_after = True, 0
    if not allowed:
        raise ApiError(429, "rate_limited", f"More than {limit} photos a minute from here; "
                                            f"wait {retry_after} s and try again.",
                       {"Retry-After": str(retry_after)})
    return get_principal(request, rt).key_id if auth_off else VISITOR


@router.post("/visit/jobs", status_code=202)
async def visitor_submit(request: Request, rt: RuntimeDep, base: BaseUrl) -> JSONResponse:
    key_id = _visitor_principal(request, rt)
    job_id = await jobs.accept_upload(request, rt, key_id, notify=False)
    owner = owner_query(rt, job_id)
    return JSONResponse({
        "id": job_id, "state": "queued", "token": owner, "share_url": share_url(rt, job_id, base),
        "links": {"self": f"{base}/visit/jobs/{job_id}?{owner}",
                  "events": f"{base}/visit/jobs/{job_id}/events?{owner}"}}, status_code=202)


@router.get("/visit/jobs/{job_id}")
def visitor_job(job_id: str, rt: RuntimeDep, base: BaseUrl, exp: str | None = None,
                sig: str | None = None) -> dict:
    job_id = job_id[:64]
    role = _role(rt, job_id, exp, sig)
    job = _load(rt, job_id)
    if job is None:
        raise ApiError(410, "gone", _GONE)
    return visitor_view(rt, job, base, role)


@router.get("/visit/jobs/{job_id}/events")
async def visitor_events(job_id: str, request: Request, rt: RuntimeDep, base: BaseUrl,
                         exp: str | None = None, sig: str | None = None) -> Response:
    job_id = job_id[:64]
    _role(rt, job_id, exp, sig)
    job = await run_in_threadpool(_load, rt, job_id)
    if job is None:
        raise ApiError(410, "gone", _GONE)
    return await jobs.job_events(job_id, request, _as_owner_of(job), rt, base)


@router.delete("/visit/jobs/{job_id}", status_code=204)
def visitor_delete(job_id: str, rt: RuntimeDep, exp: str | None = None,
                   sig: str | None = None) -> Response:
    job_id = job_id[:64]
    if _role(rt, job_id, exp, sig) != "owner":
        raise ApiError(403, "forbidden", "Only the browser that uploaded the photo can delete it.")
    with rt.db.session() as s:
        job = repo.get_job(s, job_id, include_deleted=True)
        if job is None:
            raise ApiError(410, "gone", _GONE)
        principal = _as_owner_of(job)
    return jobs.delete_job(job_id, principal, rt)


# --- operators' gallery ------------------------------------------------------------------------

@router.get("/admin/gallery/people")
def admin_people(_: AdminKey, rt: RuntimeDep) -> dict:
    """People with their categories and the row numbers of their photos (for the photo route)."""
    try:
        gallery = rt.gallery.snapshot()
    except GalleryError:
        return {"people": []}
    people = [{"id": p.id, "name": p.name, "category": p.category, "photos": gallery.photos_of(p.id)}
              for p in sorted(gallery.people.values(), key=lambda p: (p.category, p.name))]
    return {"people": people}


@router.get("/admin/gallery/photos/{row}")
def admin_photo(row: int, _: AdminKey, rt: RuntimeDep) -> Response:
    try:
        gallery = rt.gallery.snapshot()
    except GalleryError:
        raise ApiError(404, "not_found", "There is no gallery yet.") from None
    if not 0 <= row < len(gallery):
        raise ApiError(404, "not_found", f"No photo {row} in the gallery.")
    return Response(rt.gallery.crop_bytes(gallery, row), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=60"})


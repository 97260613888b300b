"""Service commands, mounted into ``lookalike`` by ``lookalike.cli``:

    lookalike serve                    the whole service on this machine, no servers (embedded)
    lookalike api                      the HTTP gateway of the distributed stack
    lookalike worker --queue encoder   a Celery worker for one or more queues (--beat: periodic tasks)
    lookalike migrate                  create / upgrade the job store's tables
    lookalike keys create|list|revoke|webhook-secret
    lookalike gallery publish          make a local gallery folder the shared (object store) one
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from lookalike.config import Settings, get_settings
from lookalike.errors import ConfigError, LookalikeError

keys_app = typer.Typer(help="API keys: create, list, revoke (only hashes are stored).", rich_markup_mode="markdown",
                       no_args_is_help=True)

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _fail(exc: LookalikeError) -> None:
    typer.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
    if exc.advice:
        typer.echo(f"  {exc.advice}", err=True)
    raise typer.Exit(exc.exit_code)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=os.environ.get("LOOKALIKE_LOG_LEVEL", level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # not its plugin list at every start


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_off(settings: Settings, host: str, embedded: bool) -> bool:
    """Whether requests go without API keys; refuses 'off' anywhere but loopback."""
    if settings.auth == "keys":
        return False
    if settings.auth == "off":
        if not is_loopback(host):
            raise ConfigError("LOOKALIKE_AUTH=off is only allowed when listening on a loopback "
                              "address; create keys with `lookalike keys create`")
        return True
    return embedded and is_loopback(host)


def _settings_for(host: str | None, port: int | None) -> Settings:
    settings = get_settings()
    update = {}
    if host:
        update["api_host"] = host
    if port:
        update["api_port"] = port
    return settings.model_copy(update=update) if update else settings


def _gallery_model(gallery_dir) -> str | None:
    """The face model recorded in a local gallery (cheap: its JSON only)."""
    import json

    try:
        return json.loads((gallery_dir / "gallery.json").read_text()).get("model")
    except (OSError, ValueError):
        return None


def _check_port(host: str, port: int) -> None:
    """Fail before anything starts (the in-process stages, migrations) when the address is taken."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              advice="Stop the other server there, or choose another --port.") from None


# --- serve (embedded) ---------------------------------------------------------------------------

def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default LOOKALIKE_API_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535,
                                                help="Port (default LOOKALIKE_API_PORT, 8000).")] = None,
) -> None:
    """Run the whole service on this machine with no servers: SQLite job store, local object
    folder, stages in threads of this process. Keys are off on loopback unless LOOKALIKE_AUTH=keys."""
    import uvicorn

    from lookalike.pipeline import resume
    from lookalike.queue import Scheduler
    from lookalike.runtime import build_runtime
    from services.api.main import create_app

    _logging()
    try:
        settings = _settings_for(host, port)
        _check_port(settings.api_host, settings.api_port)
        from lookalike.faces import get_backend

        backend = get_backend(settings.face_backend)  # the in-process encoder's model, loaded now
        if settings.renderer == "stylegan":
            from lookalike.stylegan.stage import get_models

            get_models(settings)  # likewise the StyleGAN files: a bad one stops the server here
        rt = build_runtime(settings, "embedded", migrate=True)
        rt.extras["auth_off"] = _auth_off(settings, settings.api_host, embedded=True)
    except LookalikeError as exc:
        _fail(exc)
        return
    scheduler = Scheduler(rt)

    def start() -> None:
        scheduler.start()
        resumed = resume(rt)
        if resumed:
            typer.echo(f"resuming {resumed} unfinished jobs", err=True)

    def stop() -> None:
        scheduler.stop()
        rt.close()

    url = f"http://{settings.api_host}:{settings.api_port}"
    typer.echo(f"Lookalike (embedded) on {url} — job store {settings.resolved_database_url}, "
               f"objects {rt.store.name} ({settings.resolved_storage_dir if rt.store.name == 'local' else settings.s3_bucket}), "
               f"gallery {settings.gallery_dir}", err=True)
    missing = rt.gallery.missing()
    if missing:
        typer.secho(f"No gallery: {missing}. Uploads are refused (503) until there is one.",
                    fg="yellow", err=True)
    else:
        model = _gallery_model(settings.gallery_dir)
        if model and model != backend.model_id:
            typer.secho(f"The gallery was made with the face model {model}, but this server uses "
                        f"{backend.model_id}: every match will fail until you run "
                        "`lookalike gallery reembed`.", fg="yellow", err=True)
    if rt.extras["auth_off"]:
        typer.secho("API keys are OFF: anyone who can reach this loopback address can use the API "
                    "(set LOOKALIKE_AUTH=keys to require them).", fg="yellow", err=True)
    typer.echo(f"API docs: {url}/docs", err=True)
    app = create_app(rt, on_start=start, on_stop=stop)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)


# --- api (distributed) --------------------------------------------------------------------------

def api(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default LOOKALIKE_API_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535,
                                                help="Port (default LOOKALIKE_API_PORT, 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="HTTP worker processes.")] = 1,
) -> None:
    """Run the HTTP gateway of the distributed stack (PostgreSQL, S3, Celery over Redis)."""
    import uvicorn

    from lookalike.jobstore import Database
    from lookalike.service_config import check_service

    _logging()
    try:
        settings = _settings_for(host, port)
        _check_port(settings.api_host, settings.api_port)
        check_service(settings, "distributed")
        Database(settings.resolved_database_url).migrate()
        auth_off = _auth_off(settings, settings.api_host, embedded=False)
    except LookalikeError as exc:
        _fail(exc)
        return
    os.environ["LOOKALIKE_API_HOST"] = settings.api_host
    os.environ["LOOKALIKE_API_PORT"] = str(settings.api_port)
    os.environ["LOOKALIKE__AUTH_OFF"] = "1" if auth_off else "0"
    if auth_off:
        typer.secho("API keys are OFF (LOOKALIKE_AUTH=off on loopback).", fg="yellow", err=True)
    typer.echo(f"Lookalike API on http://{settings.api_host}:{settings.api_port} "
               f"(docs at /docs), {workers} process(es)", err=True)
    uvicorn.run("services.api.main:create_app_from_env", factory=True, host=settings.api_host,
                port=settings.api_port, workers=workers, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


# --- worker -------------------------------------------------------------------------------------

def worker(
    queue: Annotated[list[str], typer.Option("--queue", "-Q",
                                             help="encoder, matcher, renderer, notify (repeat or comma-separate; 'all').")],
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", min=1, max=64,
                                                       help="Processes (default LOOKALIKE_WORKER_CONCURRENCY).")] = None,
    beat: Annotated[bool, typer.Option("--beat", help="Also run the periodic tasks (reconciler, "
                                                      "retries, retention); run exactly one such worker.")] = False,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker for the given queues (models load once per process)."""
    from lookalike.jobstore import Database
    from lookalike.queue import QUEUES, celery_app
    from lookalike.service_config import check_service
    from lookalike.worker import QUEUES_ENV

    _logging()
    names = [q.strip() for item in queue for q in item.split(",") if q.strip()]
    if "all" in names:
        names = list(QUEUES.values())
    unknown = sorted(set(names) - set(QUEUES.values()))
    if unknown or not names:
        _fail(ConfigError(f"unknown queue {', '.join(unknown) or '(none)'}: choose from "
                          f"{', '.join(QUEUES.values())}"))
        return
    try:
        settings = get_settings()
        check_service(settings, "distributed")
        if {"encoder", "renderer"} & set(names):
            from lookalike.stylegan.stage import check_models_load, check_renderer

            check_renderer(settings)     # a missing StyleGAN file stops the worker here,
            check_models_load(settings)  # and so does one that does not load
        if "encoder" in names:
            from lookalike.faces.backend import check_backend

            check_backend(settings.face_backend)  # a bad model pack or provider stops it too
        Database(settings.resolved_database_url).migrate()
    except LookalikeError as exc:
        _fail(exc)
        return
    os.environ[QUEUES_ENV] = ",".join(names)
    app = celery_app()
    argv = ["worker", "-Q", ",".join(names), "-c", str(concurrency or settings.worker_concurrency),
            "--prefetch-multiplier", "1", "-n", f"{'+'.join(names)}-{os.getpid()}@%h",
            "-l", loglevel, "--without-gossip", "--without-mingle"]
    if beat:
        schedule = Path(settings.data_dir) / f"celerybeat-{os.getpid()}"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["-B", "-s", str(schedule)]
    app.worker_main(argv)


# --- migrate ------------------------------------------------------------------------------------

def migrate() -> None:
    """Create or upgrade the job store's tables (Alembic)."""
    from lookalike.jobstore import Database

    try:
        settings = get_settings()
        Database(settings.resolved_database_url).migrate()
    except LookalikeError as exc:
        _fail(exc)
        return
    typer.echo(f"job store at head: {settings.resolved_database_url.split('@')[-1]}")


# --- keys ---------------------------------------------------------------------------------------

def _db():
    from lookalike.jobstore import Database

    settings = get_settings()
    db = Database(settings.resolved_database_url)
    db.migrate()
    return settings, db


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", "-n", help="Who the key is for.")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="client (default) and/or admin.")] = ["client"],
    rate_limit: Annotated[Optional[int], typer.Option(min=1, help="Requests per minute "
                                                                  "(default LOOKALIKE_RATE_LIMIT_PER_MINUTE).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a key; it is shown once (only its hash is stored), with its webhook secret."""
    import json

    from lookalike.auth import create_key, webhook_secret
    from lookalike.runtime import load_secret

    scopes = [x.strip() for item in scope for x in item.split(",") if x.strip()]
    try:
        settings, db = _db()
        key_id, token = create_key(db, name, scopes, rate_limit)
        secret = webhook_secret(load_secret(settings), key_id)
    except ValueError as exc:
        _fail(ConfigError(str(exc)))
        return
    except LookalikeError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps({"id": key_id, "key": token, "scopes": scopes, "webhook_secret": secret}))
        return
    typer.echo(f"key id:          {key_id}\nAPI key:         {token}\nwebhook secret:  {secret}\n"
               "Keep them: the API key is not shown again.")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Keys with their scopes and state (never the secrets)."""
    import json

    from lookalike.jobstore import repo

    try:
        _, db = _db()
        with db.session() as s:
            rows = [{"id": k.id, "name": k.name, "scopes": k.scopes.split(","),
                     "rate_limit": k.rate_limit, "created_at": k.created_at.isoformat(),
                     "revoked": k.revoked_at is not None} for k in repo.list_keys(s)]
    except LookalikeError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['id']}  {','.join(r['scopes']):<13} {'revoked' if r['revoked'] else 'active ':<8} {r['name']}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (lk_<id>_…).")]) -> None:
    """Revoke a key; the API refuses it within seconds."""
    from lookalike.jobstore import repo

    try:
        _, db = _db()
        with db.session() as s:
            done = repo.revoke_key(s, key_id)
    except LookalikeError as exc:
        _fail(exc)
        return
    if not done:
        _fail(ConfigError(f"no active key {key_id!r} (see `lookalike keys list`)"))
    typer.echo(f"revoked {key_id}")


@keys_app.command("webhook-secret")
def keys_webhook_secret(key_id: Annotated[str, typer.Argument(help="Key id, or 'anonymous' "
                                                                    "for `lookalike serve` without keys.")]) -> None:
    """The secret that webhooks of this key's jobs are signed with."""
    from lookalike.auth import webhook_secret
    from lookalike.runtime import load_secret

    try:
        typer.echo(webhook_secret(load_secret(get_settings()), key_id))
    except LookalikeError as exc:
        _fail(exc)


# --- gallery publish ----------------------------------------------------------------------------

def gallery_publish(
    gallery: Annotated[Optional[Path], typer.Option("--gallery", "-g", file_okay=False,
                                                    help="Gallery folder (default: $LOOKALIKE_DATA_DIR/gallery).")] = None,
) -> None:
    """Publish a local gallery folder to the object store: running matchers pick it up."""
    from lookalike.galleries import StoreGallerySource
    from lookalike.jobstore import Database
    from lookalike.runtime import load_secret
    from lookalike.storage import open_store

    _logging("WARNING")
    try:
        settings = get_settings()
        db = Database(settings.resolved_database_url)
        db.migrate()
        store = open_store(settings, load_secret(settings))
        source = StoreGallerySource(settings, store, db)
        photos = source.publish_folder(gallery or settings.gallery_dir)
        generation = source.version()
    except LookalikeError as exc:
        _fail(exc)
        return
    typer.echo(f"published {photos} photos as gallery generation {generation} "
               f"({store.name} store)")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(api)
    app.command()(worker)
    app.command()(migrate)
    app.add_typer(keys_app, name="keys")
    for group in app.registered_groups:
        if group.name == "gallery" and group.typer_instance is not None:
            group.typer_instance.command("publish")(gallery_publish)
            break

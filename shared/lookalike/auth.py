"""API keys and per-key rate limits.

A key reads ``lk_<id>_<secret>``: the id is public (it names the key in logs and in
``lookalike keys list``), only the SHA-256 of the secret is stored. Scopes: ``client`` (submit
and read its own jobs) and ``admin`` (curate the gallery, read any job).

Each key also has a webhook signing secret, derived from the service secret and the key id
(``whsec_…``), so nothing that can sign webhooks is stored in the database either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from lookalike.jobstore import Database
from lookalike.jobstore import repo

SCOPES = ("client", "admin")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key id (or ``anonymous`` when keys are off) and its scopes."""

    key_id: str
    scopes: frozenset[str]
    rate_limit: int | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str, scopes: list[str], rate_limit: int | None = None) -> tuple[str, str]:
    """A new key; returns (key id, the full key to hand out once)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    with db.session() as s:
        repo.add_key(s, key_id=key_id, name=name, secret_hash=hash_secret(secret),
                     scopes=",".join(sorted(set(scopes))), rate_limit=rate_limit)
    return key_id, f"lk_{key_id}_{secret}"


def parse_key(token: str) -> tuple[str, str] | None:
    if not token.startswith("lk_"):
        return None
    parts = token[3:].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def webhook_secret(service_secret: bytes, key_id: str) -> str:
    """The secret webhooks for this key's jobs are signed with."""
    digest = hmac.new(service_secret, f"webhook:{key_id}".encode(), hashlib.sha256).hexdigest()
    return f"whsec_{digest[:40]}"


class KeyCache:
    """Resolves tokens to principals; a short TTL keeps revocation prompt and lookups cheap."""

    def __init__(self, db: Database, ttl_s: float = 5.0, size: int = 4096) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.size = size
        self._items: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, token: str) -> Principal | None:
        now = time.monotonic()
        cache_key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._items.get(cache_key)
            if hit and hit[0] > now:
                return hit[1]
        principal = self._lookup(token)
        with self._lock:
            self._items[cache_key] = (now + self.ttl_s, principal)
            self._items.move_to_end(cache_key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return principal

    def _lookup(self, token: str) -> Principal | None:
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self.db.session() as s:
            key = repo.get_key(s, key_id)
            if key is None or key.revoked_at is not None:
                return None
            if not hmac.compare_digest(key.secret_hash, hash_secret(secret)):
                return None
            return Principal(key_id=key.id, scopes=frozenset(key.scopes.split(",")),
                             rate_limit=key.rate_limit)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# --- rate limits ----------------------------------------------------------------------------

class RateLimiter:
    """Fixed one-minute windows per key: in Redis when configured, else in this process."""

    def __init__(self, redis=None, prefix: str = "lookalike:rl") -> None:
        self.redis = redis
        self.prefix = prefix
        self._local: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key_id: str, limit: int, now: float | None = None) -> tuple[bool, int]:
        """Count one request; returns (allowed, seconds until the window resets)."""
        now = time.time() if now is None else now
        window = int(now // 60)
        retry_after = max(1, int(60 - (now % 60)) + 1)
        if self.redis is not None:
            name = f"{self.prefix}:{key_id}:{window}"
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(name)
            pipe.expire(name, 120)
            count = pipe.execute()[0]
        else:
            with self._lock:
                count = self._local.get((key_id, window), 0) + 1
                self._local[(key_id, window)] = count
                if len(self._local) > 10_000:
                    self._local = {k: v for k, v in self._local.items() if k[1] >= window}
        return count <= limit, retry_after

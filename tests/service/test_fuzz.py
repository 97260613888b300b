"""Fuzz the OpenAPI document against the real running API (schemathesis + Hypothesis).

Every operation of ``/openapi.json`` gets generated requests, valid ones and deliberately
invalid ones, sent over HTTP to a real stack with a real key; each answer must not be a 5xx
and must conform to the document (status code declared, content type, body schema, headers).

Bounded and deterministic: a fixed number of examples per operation and mode, derandomized
(the same requests on every run), no example database, no shrinking.

Keys of their own with a high rate limit, so the shared keys' limits are left alone and a
429 is never what is being tested. The admin run mutates the gallery (random people are
added, patched, removed), so it goes against an embedded stack of its own; on the shared
distributed stack the admin key only reads.
"""

from __future__ import annotations

import shutil
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from service_procs import free_port
from service_stacks import Stack, common_env, start_serve_stack

#: examples per operation and generation mode
MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
#: the operations that change the gallery (only on the fuzz test's own stack)
GALLERY_WRITES = ("POST /v1/gallery/people", "PATCH /v1/gallery/people/{person_id}",
                  "DELETE /v1/gallery/people/{person_id}")


def fuzz_key(stack: Stack, role: str, scopes: list[str]) -> str:
    name = f"fuzz-{role}"
    if name not in stack.keys:
        stack.create_key(name, scopes, rate_limit=1_000_000)
    return stack.keys[name]


def fuzz(stack: Stack, token: str, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Run every operation (but ``exclude``); returns one line per failing operation and mode."""
    schema = schemathesis.openapi.from_url(stack.base_url + "/openapi.json", timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert "POST /v1/jobs" in labels and "GET /v1/jobs/{job_id}" in labels, labels
    for operation in operations:
        if operation.label in exclude:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not (list(operation.body) or list(operation.query)):
                continue  # a plain string in the path is all there is: nothing can be invalid
            seen: list[str] = []

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], print_blob=False,
                      suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call(base_url=stack.base_url, headers=headers, timeout=30)
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except Exception as exc:  # noqa: BLE001 - collected, reported all together
                    seen.append(f"{operation.label} [{mode.value}] -> {response.status_code} "
                                f"{response.text[:300]!r}\n    {str(exc).strip()[:800]}\n    "
                                f"{case.as_curl_command(headers=headers)[:600]}")
                    raise

            started = time.monotonic()
            try:
                run()
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid
            except (Exception, FailureGroup) as exc:  # noqa: BLE001 - the first failure per operation and mode is enough
                failures.append(seen[0] if seen else f"{operation.label} [{mode.value}]: "
                                                     f"{type(exc).__name__}: {exc}"[:800])
            print(f"{operation.label} [{mode.value}]: {time.monotonic() - started:.1f} s")
    return failures


@pytest.fixture(scope="module")
def fuzz_stack(service_tmp, small_gallery, mailbox):
    """``lookalike serve`` of its own (its gallery is fuzzed with an admin key)."""
    data_dir = service_tmp / "fuzz"
    shutil.copytree(small_gallery, data_dir / "gallery")
    port = free_port()
    env = common_env(data_dir, port, mailbox)
    stack = start_serve_stack("fuzz", env, data_dir, service_tmp / "logs-fuzz")
    yield stack
    stack.stop()


def _report(stack: Stack, failures: list[str]) -> str:
    return "\n".join(failures) + "\n" + stack.log_tail(40)


def test_fuzz_with_a_client_key(distributed_stack):
    stack = distributed_stack
    failures = fuzz(stack, fuzz_key(stack, "client", ["client"]))
    assert not failures, _report(stack, failures)


def test_fuzz_with_an_admin_key_reading(distributed_stack):
    stack = distributed_stack
    failures = fuzz(stack, fuzz_key(stack, "admin", ["admin", "client"]), exclude=GALLERY_WRITES)
    assert not failures, _report(stack, failures)


def test_fuzz_with_an_admin_key_curating(fuzz_stack):
    stack = fuzz_stack
    failures = fuzz(stack, fuzz_key(stack, "admin", ["admin", "client"]))
    assert not failures, _report(stack, failures)
    # the gallery still answers, and the fuzzing did not break the job routes
    with stack.client("fuzz-admin") as c:
        assert c.get("/v1/gallery/people").status_code == 200
        assert c.get("/readyz").status_code == 200

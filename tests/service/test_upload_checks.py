"""Bad input is refused at the door with its code — and nothing is stored or queued."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

LIMIT = 5 * 1024 * 1024  # LOOKALIKE_MAX_UPLOAD_BYTES of the test stacks


@pytest.fixture
def nothing_left(stack):
    """Asserts that the test added no job row and no object."""
    before_jobs, before_objects = stack.job_count(), set(stack.objects("jobs/"))
    yield
    assert stack.job_count() == before_jobs
    assert set(stack.objects("jobs/")) == before_objects


@pytest.mark.parametrize("name, status, code", [
    ("zero_byte.jpg", 400, "empty_file"),
    ("not_an_image.jpg", 415, "unsupported_image"),
    ("truncated.jpg", 422, "corrupt_image"),
    ("decompression_bomb_30000.png", 413, "image_too_large"),
])
def test_bad_files_get_their_code(stack, bad_inputs, nothing_left, name, status, code):
    r = stack.submit(bad_inputs / name, name=name)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"] and error["advice"]


def test_pdf_named_jpg_is_unsupported(stack, nothing_left):
    r = stack.submit(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", name="photo.jpg")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_image"


def _chunks(total: int, size: int = 256 * 1024):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"\xff" * n


def test_oversize_chunked_upload_is_refused_while_streaming(stack, portrait, nothing_left):
    """No Content-Length: the limit is enforced on the bytes as they arrive."""
    boundary = "lookalikeboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"big.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode()
        yield portrait.read_bytes()
        yield from _chunks(LIMIT + 1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    with stack.client() as c:
        r = c.post("/v1/jobs", content=body(),
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "image_too_large"


def test_declared_oversize_is_refused_before_the_body(stack, nothing_left):
    """A Content-Length over the limit is answered at once, without sending the body."""
    url = urlsplit(stack.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: {url.netloc}\r\n"
                      f"Authorization: Bearer {stack.keys['client']}\r\n"
                      "Content-Type: multipart/form-data; boundary=x\r\n"
                      f"Content-Length: {50 * LIMIT}\r\n\r\n").encode())
        sock.sendall(b"--x\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("fields, status, code", [
    ({"top_k": "0"}, 422, "invalid_option"),
    ({"top_k": "many"}, 422, "invalid_option"),
    ({"clips": "good,dance"}, 422, "invalid_option"),
    ({"email": "not-an-address"}, 422, "invalid_option"),
    ({"webhook_url": "ftp://example.com/hook"}, 422, "invalid_webhook"),
    ({"webhook_url": "http://169.254.169.254/latest/meta-data"}, 422, "invalid_webhook"),
    ({"webhook_url": "http://10.0.0.7/hook"}, 422, "invalid_webhook"),
    ({"webhook_url": "http://[::1]:8080/hook"}, 422, "invalid_webhook"),
    ({"webhook_url": "http://127.0.0.2:9/hook"}, 422, "invalid_webhook"),  # loopback, not allow-listed
    ({"webhook_url": "http://127.0.0.1:9/a\x00b"}, 422, "invalid_webhook"),  # a NUL byte
])
def test_bad_options_are_refused(stack, portrait, nothing_left, fields, status, code):
    r = stack.submit(portrait, **fields)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_form_without_photo_or_not_multipart(stack, nothing_left):
    with stack.client() as c:
        r = c.post("/v1/jobs", data={"top_k": "3"}, files={"other": ("x.txt", b"hello")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        assert "'photo'" in r.json()["error"]["message"]  # names the field to use
        r = c.post("/v1/jobs", data={"top_k": "3"}, files={"photo2": ("", b"")})
        assert r.status_code in (400, 422) and r.json()["error"]["code"] == "invalid_request"
        r = c.post("/v1/jobs", json={"photo": "aGVsbG8="})
        assert r.status_code == 415 and r.json()["error"]["code"] == "invalid_request"
        r = c.post("/v1/jobs", content=b"--b\r\nbroken",
                   headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code in (400, 422) and r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("job_id", ["abc%00def", "..%2F..%2Fetc", "0" * 31 + "g", "A" * 32, "x" * 500])
def test_junk_job_ids_are_no_job(stack, job_id):
    with stack.client() as c:
        for method, path in (("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/events"),
                             ("DELETE", f"/v1/jobs/{job_id}")):
            r = c.request(method, path)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "not_found"

"""Reading a multipart upload as it streams in, and the checks made at the door.

The size limit holds while the body arrives (also for chunked bodies with no Content-Length):
bytes past the limit are counted and dropped, never kept, and the request is answered 413.
Nothing of a refused upload is stored or queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from lookalike.config import Settings
from lookalike.errors import EmptyFile, ImageTooLarge, LookalikeError, UnsupportedImage
from lookalike.imaging import decode_image, sniff_format

#: form fields other than files: at most this many bytes each
FIELD_LIMIT = 4096
MAX_PARTS = 24
#: after the limit is passed the rest of the body is drained (not kept) up to this many
#: bytes, so the client reads a clean 413 instead of a reset connection
DRAIN_LIMIT = 256 * 1024 * 1024


class BadRequest(LookalikeError):
    code = "invalid_request"
    http_status = 400


class NotMultipart(LookalikeError):
    code = "invalid_request"
    http_status = 415


@dataclass
class UploadedFile:
    field: str
    filename: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def file(self, name: str) -> UploadedFile | None:
        return next((f for f in self.files if f.field == name), None)


def _too_large(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"The upload is larger than the {limit / (1024 * 1024):.1f} MiB accepted.")


async def read_multipart(request: Request, *, file_limit: int, total_file_limit: int | None = None,
                         file_fields: tuple[str, ...] = ("photo",)) -> Upload:
    """Parse ``multipart/form-data`` from the request stream, keeping at most the limits."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        fields = " or ".join(repr(f) for f in file_fields)  # name this endpoint's own field
        raise NotMultipart(f"Send the form as multipart/form-data with the file in field {fields}.")
    total_file_limit = total_file_limit or file_limit
    body_limit = total_file_limit + MAX_PARTS * (FIELD_LIMIT + 1024)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > body_limit:
                raise _too_large(total_file_limit)
        except ValueError:
            raise BadRequest("The Content-Length header is not a number.") from None

    upload = Upload()
    state = {"headers": {}, "name": b"", "value": b"", "part": None, "field_buf": None,
             "field_name": None, "over": False, "files_bytes": 0, "parts": 0, "bad": None}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["parts"] += 1
        if state["parts"] > MAX_PARTS:
            state["bad"] = "Too many form fields."

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["name"].lower()] = state["value"]
        state["name"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        state["part"] = state["field_buf"] = None
        if filename is not None or name in file_fields:
            if name not in file_fields:
                wanted = " or ".join(repr(f) for f in file_fields)
                state["bad"] = state["bad"] or f"Unexpected file field {name!r}: send the photo in the field {wanted}."
                return
            part = UploadedFile(field=name, filename=(filename or b"").decode("utf-8", "replace")[:200])
            upload.files.append(part)
            state["part"] = part
        else:
            state["field_name"] = name
            state["field_buf"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        size = end - start
        part = state["part"]
        if part is not None:
            state["files_bytes"] += size
            if (len(part.data) + size > file_limit or state["files_bytes"] > total_file_limit):
                state["over"] = True
            if not state["over"]:
                part.data += data[start:end]
            return
        buf = state["field_buf"]
        if buf is not None:
            if len(buf) + size > FIELD_LIMIT:
                state["bad"] = state["bad"] or f"The form field {state['field_name']!r} is too long."
            else:
                buf += data[start:end]

    def on_part_end() -> None:
        if state["field_buf"] is not None and state["field_name"]:
            upload.fields[state["field_name"]] = state["field_buf"].decode("utf-8", "replace")
        state["part"] = state["field_buf"] = None

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                state["over"] = True
            if state["over"]:
                # keep nothing; drain so the client can read the answer
                upload.files.clear()
                if received > body_limit + DRAIN_LIMIT:
                    break
                continue
            try:
                parser.write(chunk)
            except Exception:  # noqa: BLE001 - python-multipart raises its own error kinds
                raise BadRequest("The multipart body is malformed.") from None
        if not state["over"]:
            try:
                parser.finalize()
            except Exception:  # noqa: BLE001
                raise BadRequest("The multipart body is malformed or incomplete.") from None
    except ClientDisconnect:
        raise BadRequest("The upload was interrupted.") from None
    if state["over"]:
        upload.files.clear()
        raise _too_large(total_file_limit)
    if state["bad"]:
        raise BadRequest(state["bad"])
    return upload


def check_photo(data: bytes | bytearray, settings: Settings) -> str:
    """The door's checks (no pixel kept): size, format by magic bytes, header dimensions and a
    fast integrity pass (JPEGs decode at 1/8 scale). Returns the format or raises the typed
    error with its code (empty_file, unsupported_image, image_too_large, corrupt_image)."""
    data = bytes(data)
    if not data:
        raise EmptyFile("The file is empty (0 bytes).")
    if len(data) > settings.max_upload_bytes:
        raise _too_large(settings.max_upload_bytes)
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage("The file is not a photo we can read; send a JPEG, PNG, WebP, "
                               "HEIC/HEIF, GIF, BMP or TIFF image.")
    decode_image(data, max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes,
                 background=tuple(settings.background_rgb), max_side=64)
    return fmt

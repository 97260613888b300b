"""Typed errors with the stable codes of DESIGN.md.

Every failure a user can cause maps to one code, one HTTP status (for the gateway) and one
process exit status (for the CLI), so the three front doors report the same thing.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class: ``code`` is the stable machine-readable name, ``str(e)`` the human message."""

    code = "internal"
    http_status = 500
    exit_code = 1
    advice = ""

    def __init__(self, message: str, *, advice: str | None = None) -> None:
        super().__init__(message)
        if advice is not None:
            self.advice = advice

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.advice:
            body["advice"] = self.advice
        return body


class InputError(LookalikeError):
    """The caller's photo cannot be used; retrying the same bytes will not help."""


class EmptyFile(InputError):
    code = "empty_file"
    http_status = 400
    exit_code = 10
    advice = "The file is empty. Choose a photo and try again."


class UnsupportedImage(InputError):
    code = "unsupported_image"
    http_status = 415
    exit_code = 11
    advice = "Send a JPEG, PNG, WebP, HEIC/HEIF, GIF, BMP or TIFF photo."


class CorruptImage(InputError):
    code = "corrupt_image"
    http_status = 422
    exit_code = 12
    advice = "The photo could not be read completely. Take or export it again."


class ImageTooLarge(InputError):
    code = "image_too_large"
    http_status = 413
    exit_code = 13
    advice = "Send a smaller photo (a normal phone photo is fine)."


class NoFace(InputError):
    code = "no_face"
    http_status = 422
    exit_code = 14
    advice = "Face the camera in good light, one person, face not covered."


class FaceTooSmall(InputError):
    code = "face_too_small"
    http_status = 422
    exit_code = 15
    advice = "Move closer: the face should fill a good part of the photo."


class GalleryError(LookalikeError):
    """The gallery is missing, empty, or was built with another face model."""

    code = "gallery"
    http_status = 503
    exit_code = 3


class ConfigError(LookalikeError):
    """A setting or a file named by a setting is wrong; raised at start-up."""

    code = "config"
    exit_code = 4


ERROR_CODES: dict[str, type[LookalikeError]] = {
    cls.code: cls
    for cls in (EmptyFile, UnsupportedImage, CorruptImage, ImageTooLarge, NoFace, FaceTooSmall)
}

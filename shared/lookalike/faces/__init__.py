"""Face analysis in a few plain verbs; callers never see dlib or ONNX types.

    detect_faces(rgb)  -> [Detection]      boxes in photo pixels, largest first
    analyze_face(rgb)  -> FaceAnalysis     chosen face: landmarks, aligned crop, embedding
    landmarks68(rgb, box) -> (68, 2)
    align_face(rgb, landmarks, size) -> (crop, Alignment)
    get_backend()      -> FaceBackend      the configured model, loaded once per process
"""

from lookalike.faces.align import Alignment, align_face, eye_centres
from lookalike.faces.analyze import analyze_face, detect_faces
from lookalike.faces.backend import FaceBackend, get_backend
from lookalike.faces.landmarks import landmarks68
from lookalike.faces.types import Box, Detection, FaceAnalysis

__all__ = [
    "Alignment", "Box", "Detection", "FaceAnalysis", "FaceBackend", "align_face",
    "analyze_face", "detect_faces", "eye_centres", "get_backend", "landmarks68",
]

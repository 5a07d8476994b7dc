"""Facial landmarks: detection (dlib HOG/CNN, optional FAN) and landmark files (.pts, text, .npy, .json).

All landmarks are float [68, 2] (iBUG-68 order) or [5, 2] pixels in redafit's corner convention
((0, 0) = top-left corner of the top-left pixel), NaN rows = unknown.
"""

from redafit.landmarks.detect import (
    Detector,
    FaceBox,
    FaceFollower,
    detect_faces,
    detect_landmarks,
    landmarks_in_box,
)
from redafit.landmarks.files import (
    FIVE_FROM_68,
    five_from_68,
    inter_ocular,
    landmark_error_iod,
    read_landmarks,
    write_landmarks,
)

__all__ = ["Detector", "FaceBox", "FaceFollower", "detect_faces", "detect_landmarks", "landmarks_in_box",
           "read_landmarks", "write_landmarks", "FIVE_FROM_68", "five_from_68", "inter_ocular", "landmark_error_iod"]

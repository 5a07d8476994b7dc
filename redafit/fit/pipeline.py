"""File-level pipeline shared by ``redafit fit``, ``rig``, ``track`` and ``eval``: read an image and its
landmarks (from a file or a detector), fit, and write the requested outputs atomically."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from redafit.errors import InputError, LandmarkFileError
from redafit.fit.config import FitConfig
from redafit.render.camera import FocalSpec

log = logging.getLogger("redafit")

LANDMARK_SUFFIXES = (".pts", ".5pt.txt", ".txt", ".npy", ".json")


@dataclass(frozen=True)
class InputOptions:
    """How to read images and find landmarks.

    Attributes:
        detector: ``dlib`` (HOG), ``dlib-cnn`` or ``fan``.
        face_index: which detected face (left to right); None = the largest.
        max_side: images larger than this are downscaled first (outputs are in the downscaled frame).
        confirmed: ``face_index`` is a face already confirmed (``fit --all-faces``): no warnings about the photo's
            faces (the detector's other faces, an unconfirmed face picked).
        box: the face's box in the loaded image when it was found already (``fit --all-faces``): its landmarks are
            predicted in it, without detecting the faces again.
        focal: how the camera's focal length is chosen (:class:`~redafit.render.camera.FocalSpec`; by default the
            photo's EXIF 35 mm-equivalent focal length when it was not cropped since, else 1.6 x the longer side).
    """

    detector: str = "dlib"
    face_index: int | None = None
    max_side: int = 4096
    focal: FocalSpec = FocalSpec()
    confirmed: bool = False  # face_index names a face already confirmed by the CNN detector (fit --all-faces)
    box: object = None  # redafit.landmarks.FaceBox of face_index, found already (fit --all-faces): not detected again


@dataclass
class LoadedInput:
    path: Path
    image: np.ndarray  # [H, W, 3] float32 RGB in [0, 1]
    meta: object  # redafit.io.images.ImageMeta
    landmarks: np.ndarray  # [68|5, 2] pixels in the loaded image's frame
    landmark_source: str  # "file:<path>" or "detector:<name>"
    seconds_detect: float = 0.0
    intrinsics: object = None  # redafit.render.camera.Intrinsics of the loaded image (InputOptions.focal)
    focal_source: str = ""  # where its focal length came from (FocalSpec.resolve)


def find_landmark_file(image: Path, folder: Path) -> Path | None:
    """The landmark file for ``image`` inside ``folder`` (same stem, any supported suffix), or None."""
    from redafit.io.images import photo_stem

    for suffix in LANDMARK_SUFFIXES:
        p = folder / (photo_stem(image) + suffix)
        if p.is_file():
            return p
    return None


def load_input(image_path, landmarks=None, opts: InputOptions | None = None) -> LoadedInput:
    """Read the image (EXIF-rotated, RGB float) and its landmarks.

    ``landmarks``: None (detect), a file path, a folder holding ``<stem>.pts|.txt|.npy|.json``, or an array
    [68|5, 2]. Landmark files and arrays are in the pixel frame of the upright image as stored in the file (after
    EXIF rotation); when the image is downscaled on load the landmarks are scaled with it. The camera
    (``intrinsics``) follows ``opts.focal``, with the photo's EXIF for ``auto``.
    """
    from redafit.io.images import load_image, photo_stem

    opts = opts or InputOptions()
    path = Path(image_path)
    image, meta = load_image(path, max_side=opts.max_side)
    K, focal_source = FocalSpec.parse(opts.focal).intrinsics(image.shape[1], image.shape[0], meta.scale, meta.camera)
    log.info("%s: focal length %.0f px (%s)", path.name, K.fx, focal_source)
    t0 = time.perf_counter()
    if landmarks is None:
        from redafit.landmarks import detect_landmarks
        from redafit.landmarks.detect import landmarks_in_box

        if opts.box is not None:
            lm = landmarks_in_box(image, opts.box, opts.detector)
        else:
            lm = detect_landmarks(image, detector=opts.detector, face_index=opts.face_index, name=path.name,
                                  warn_many=not opts.confirmed, turned=True)
        source = f"detector:{opts.detector}"
        return LoadedInput(path, image, meta, np.asarray(lm, np.float32), source, time.perf_counter() - t0, K,
                           focal_source)
    if not isinstance(landmarks, (str, Path)):  # an array (or nested list), in the file's pixels as a file's are
        try:
            lm = np.asarray(landmarks, np.float32)
        except (TypeError, ValueError):
            raise LandmarkFileError(f"landmarks: expected a file, a folder or an array [68|5, 2], got "
                                    f"{type(landmarks).__name__}") from None
        lm, source = lm * np.float32(meta.scale), "array"
    else:
        from redafit.landmarks import read_landmarks

        lpath = Path(landmarks)
        if lpath.is_dir():
            found = find_landmark_file(path, lpath)
            if found is None:
                raise LandmarkFileError(f"no landmark file for {path.name} in {lpath} "
                                        f"(looked for {photo_stem(path)}{{{','.join(LANDMARK_SUFFIXES)}}})")
            lpath = found
        lm = read_landmarks(lpath)
        source = f"file:{lpath}"
        lm = np.asarray(lm, np.float32) * np.float32(meta.scale)
    lm = np.asarray(lm, np.float32)
    finite = lm[np.isfinite(lm).all(1)]
    h, w = image.shape[:2]
    if len(finite) and (finite.max(0) < 0).any() or len(finite) and (finite.min(0) > [w, h]).any():
        if source.startswith("file:"):  # the landmark file of another photo, or of this one at another size
            raise LandmarkFileError(f"{source[5:]}: its landmarks lie outside {path.name} ({w}x{h})")
        raise InputError(f"{path.name}: the landmarks lie outside the image ({w}x{h})")
    return LoadedInput(path, image, meta, lm, source, intrinsics=K, focal_source=focal_source)


def focal_source(inp: LoadedInput, result) -> str:
    """Where the focal length of ``result`` (a fit of ``inp``) came from: the input's camera
    (:attr:`LoadedInput.focal_source`), or ``FitConfig.focal`` when the config named its own."""
    return inp.focal_source if result.intrinsics == inp.intrinsics else "FitConfig.focal"


def fit_loaded(inp: LoadedInput, model, config: FitConfig, progress=None, depth=None, parsing=None):
    from redafit.fit.api import fit_image

    log.info("%s: %s landmarks from %s", inp.path.name, len(inp.landmarks), inp.landmark_source)
    # the loaded camera (InputOptions.focal) unless the config names a focal length of its own
    K = inp.intrinsics if config.focal is None else None
    return fit_image(inp.image, inp.landmarks, model, config, intrinsics=K, progress=progress,
                     depth=depth, parsing=parsing)


def write_outputs(inp: LoadedInput, result, model, mesh_path=None, params_path=None, overlay_path=None,
                  texture_size: int = 1024, caps: bool = True, frame: str = "camera",
                  neutral: bool = False, maps_dir=None, texture: str = "photo") -> list[Path]:
    """Write the requested outputs, all or none: they replace their targets together once every one is written
    (:func:`redafit.io.atomic.atomic_group`), so an error or an interrupt leaves no file half-written and no
    incomplete set (a mesh without its parameters). ``frame`` and ``neutral``: the mesh's
    (:func:`redafit.fit.outputs.save_mesh`), also recorded in the parameters as ``mesh_frame`` and
    ``mesh_expression`` (``"fitted"`` or ``"neutral"``). ``maps_dir``: the photo-aligned maps of the fitted face
    (:func:`redafit.render.maps.save_maps`, the mesh with its caps as ``caps`` says, fitted expression).
    ``texture``: ``"photo"`` or ``"albedo"`` (the fitted shading evened out; recorded as ``mesh_texture`` unless the
    mesh is a ``.npz``, which holds no colours)."""
    from redafit.fit import outputs
    from redafit.io.atomic import atomic_group, make_folder

    written: list[Path] = []
    with atomic_group():  # the folders made here go again if the group fails
        for f in (mesh_path, params_path, overlay_path):
            if f is not None:
                make_folder(Path(f).parent)
        if mesh_path is not None:
            written += outputs.save_mesh(mesh_path, result, model, inp.image, texture_size, caps=caps, frame=frame,
                                         neutral=neutral, texture=texture)
        if params_path is not None:
            extra = {"image": str(inp.path), "image_size": [int(inp.image.shape[1]), int(inp.image.shape[0])],
                     "image_scale": float(inp.meta.scale), "landmark_source": inp.landmark_source,
                     "focal_source": focal_source(inp, result),
                     "mesh_frame": frame,
                     "mesh_expression": "neutral" if neutral else "fitted"}
            if mesh_path is not None and Path(mesh_path).suffix.lower() != ".npz":  # a .npz holds no colours
                extra["mesh_texture"] = texture
            written.append(outputs.save_params(params_path, result, extra))
        if overlay_path is not None:
            written.append(outputs.save_overlay(overlay_path, inp.image, result, model))
        if maps_dir is not None:
            from redafit.render.maps import render_maps, save_maps

            written += save_maps(maps_dir, render_maps(result, model, caps=caps, texture_size=texture_size,
                                                       image=inp.image))
    return written


@dataclass
class PhotoFit:
    """A photo fitted by :func:`fit_photo`: what was read (``input``: the photo as fitted, its landmarks and
    camera), the fit (``result``, a :class:`~redafit.fit.FitResult`) and the model it was fitted with."""

    input: LoadedInput
    result: object  # redafit.fit.FitResult
    model: object  # redafit.model.FaceModel

    def save(self, mesh=None, params=None, overlay=None, maps=None, texture_size: int = 1024, caps: bool = True,
             frame: str = "camera", neutral: bool = False, texture: str = "photo") -> list[Path]:
        """Write what ``redafit fit`` writes, all together or none (:func:`write_outputs`): the ``mesh``
        (.obj/.ply/.glb/.npz; ``texture_size``, ``caps``, ``frame``, ``neutral``, ``texture`` as its options),
        the ``params`` JSON, the ``overlay`` PNG and the ``maps`` folder. Returns the files written."""
        from redafit.errors import UsageError
        from redafit.io.meshes import mesh_files

        files = [*(mesh_files(mesh) if mesh is not None else ()), params, overlay]
        if maps is not None:
            from redafit.render.maps import MAP_FILES

            files += [Path(maps) / name for name in MAP_FILES]
        files = [Path(f).resolve() for f in files if f is not None]
        if len(set(files)) < len(files) or self.input.path.resolve() in files:
            raise UsageError("PhotoFit.save: two outputs, or an output and the photo, are one file: "
                             + ", ".join(sorted({str(f) for f in files if files.count(f) > 1
                                                  or f == self.input.path.resolve()})))
        return write_outputs(self.input, self.result, self.model, mesh, params, overlay, texture_size, caps, frame,
                             neutral, maps_dir=maps, texture=texture)


def fit_photo(photo, landmarks=None, model="ict", config="full", *, detector: str = "dlib",
              face_index: int | None = None, focal="auto", max_side: int = 4096, depth=None, parsing=None,
              device=None, progress=None) -> PhotoFit:
    """Fit a photo file as ``redafit fit`` does, in one call: the photo read upright (EXIF) and downscaled beyond
    ``max_side``, its landmarks from ``landmarks`` (a file, a folder of ``<stem>.*`` files or an array [68|5, 2];
    None: detected, ``detector`` and ``face_index`` as the command's options), the camera from ``focal`` (``auto``:
    the photo's EXIF lens, else 1.6 x the longer side; ``"26mm"``, ``"1200"`` px, ``"1.2x"``), then ``config``
    (a preset's name or a :class:`FitConfig`) with ``model`` (an installed name, a path or a loaded model, on
    ``device``). Landmark arrays, like files, are in the photo file's pixels (scaled with the photo when
    ``max_side`` downscales it). ``depth`` and ``parsing``: a registered depth map's or parsing map's file, or
    an array (depth in mm, registered to the photo at any resolution of its shape; class ids at the loaded
    photo's size). ``.save(...)`` writes the outputs::

        fit = fit_photo("photo.jpg")
        fit.save("face.obj", params="face.json", overlay="check.png")
    """
    from redafit.fit.api import check_config
    from redafit.model.store import load_model

    config = check_config(config)
    face_model = load_model(model, device=device)
    inp = load_input(photo, landmarks, InputOptions(detector=detector, face_index=face_index, max_side=max_side,
                                                    focal=focal))
    size = (inp.image.shape[1], inp.image.shape[0])
    if depth is not None:  # a file, or an array in mm registered to the photo (at any resolution of its shape)
        from redafit.io.depth import load_depth, registered_depth

        depth = registered_depth(depth, size, "depth") if isinstance(depth, np.ndarray) else \
            load_depth(depth, size=size)
    if parsing is not None:
        from redafit.parsing.maps import parsing_map_for

        if not isinstance(parsing, np.ndarray):
            parsing = parsing_map_for(inp.path, parsing, inp.image)
    if (depth is not None or parsing is not None) and not config.attributes:
        log.warning("fit_photo: depth and parsing maps are used by the attribute stages (the full or fast "
                    "preset); ignored here")
    result = fit_loaded(inp, face_model, config, progress=progress, depth=depth, parsing=parsing)
    return PhotoFit(inp, result, face_model)

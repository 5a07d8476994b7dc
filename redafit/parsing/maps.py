"""Parsing maps computed outside redafit (``redafit fit --parsing FILE``).

A parsing map gives every pixel of a photo one face-parsing class, in the class order of ``assets/regions.json``
(CelebAMask-HQ's 19 classes: 0 background, 1 skin, 2-3 brows, 4-5 eyes, 6 glasses, 7-8 ears, 9 earring, 10 nose,
11 mouth, 12-13 lips, 14-15 neck, 16 cloth, 17 hair, 18 hat) - what common BiSeNet face-parsing scripts save as
a grey-level PNG. Use it to run a parsing network on a GPU box or in another framework once, to correct the
parsing by hand, or to give the fit a known parsing (the synthetic benchmark's ``parsing.png``).

Accepted files: ``.png`` / ``.tif`` / ``.bmp`` 8- or 16-bit single channel (a grey image saved as 3 equal channels
is accepted too; a colour-coded picture is not a label map), or ``.npy`` integer [H, W]. The map must be
registered to the photo: the same pixel grid, or the same aspect so that it can be resampled (nearest) onto it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from redafit.errors import InputError


def n_classes() -> int:
    from redafit.parsing.regions import load_region_spec

    return len(load_region_spec()["network_classes"]["names"])


def check_parsing_map(classes, where: str = "parsing map") -> np.ndarray:
    """Validate an [H, W] class map -> int64 array (:class:`~redafit.errors.InputError` if not one)."""
    a = np.asarray(classes)
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"{where}: expected a 2-D map of class ids, got shape {list(a.shape)}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise InputError(f"{where}: expected integer class ids, got {a.dtype} values")
    a = a.astype(np.int64)
    C = n_classes()
    if a.min() < 0 or a.max() >= C:
        raise InputError(f"{where}: class ids must lie in 0..{C - 1} (the classes of assets/regions.json), got "
                         f"{int(a.min())}..{int(a.max())}")
    return a


PARSING_SUFFIXES = (".png", ".npy", ".tif", ".tiff", ".bmp")


def find_parsing_map(image, where, required: bool = True) -> Path | None:
    """The parsing map for ``image``: ``where`` itself when it is a file, else ``<stem><suffix>`` in the folder
    ``where`` (:data:`PARSING_SUFFIXES`); when there is none, :class:`~redafit.errors.InputError`, or None if
    not ``required``."""
    from redafit.io.images import photo_stem

    where, image = Path(where), Path(image)
    if not where.is_dir():
        return where
    stem = photo_stem(image)
    for suffix in PARSING_SUFFIXES:
        p = where / (stem + suffix)
        if p.is_file() and p.resolve() != image.resolve():
            return p
    if not required:
        return None
    raise InputError(f"no parsing map for {image.name} in {where} (looked for {stem}"
                     f"{{{','.join(PARSING_SUFFIXES)}}})")


def load_parsing_map(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a parsing map -> int64 [H, W] class ids; resampled (nearest) to ``size`` (W, H) when given."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"parsing map not found: {path}")
    ext = path.suffix.lower()
    if ext == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"cannot read parsing map {path}: {e}") from None
    elif ext in (".png", ".tif", ".tiff", ".bmp"):
        import cv2

        from redafit.io.images import read_image_file

        a = read_image_file(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if a is None:
            raise InputError(f"cannot read parsing map {path}: not a readable image")
        if a.ndim == 3:
            if a.shape[2] == 4:
                a = a[..., :3]
            if not (a == a[..., :1]).all():
                raise InputError(f"parsing map {path}: expected a single-channel image of class ids, got a colour "
                                 "picture (save the label array itself: cv2.imwrite(path, labels.astype('uint8')))")
            a = a[..., 0]
    else:
        raise InputError(f"parsing map {path}: unsupported format {ext or '(none)'} (use a grey-level .png of class "
                         "ids or an integer .npy)")
    a = check_parsing_map(a, f"parsing map {path}")
    if size is not None and (a.shape[1], a.shape[0]) != tuple(size):
        W, H = size
        if abs(a.shape[1] / a.shape[0] - W / H) > 0.02 * W / H:
            raise InputError(f"parsing map {path}: {a.shape[1]}x{a.shape[0]} does not match the image's aspect "
                             f"({W}x{H})")
        import cv2

        a = cv2.resize(a.astype(np.uint8), (int(W), int(H)), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return a


def parsing_map_for(image_path, where, image: np.ndarray) -> np.ndarray:
    """The parsing map given for a photo (``redafit fit/rig --parsing FILE|FOLDER``): found beside
    ``image_path`` as :func:`find_parsing_map` does, read and resampled to the loaded ``image`` ([H, W, 3])."""
    return load_parsing_map(find_parsing_map(image_path, where), size=(image.shape[1], image.shape[0]))


def save_parsing_map(path, classes) -> None:
    """Write an [H, W] class map as an 8-bit grey PNG, atomically."""
    from redafit.io.images import write_image_file

    write_image_file(path, check_parsing_map(classes).astype(np.uint8))


__all__ = ["PARSING_SUFFIXES", "check_parsing_map", "find_parsing_map", "load_parsing_map", "n_classes",
           "parsing_map_for", "save_parsing_map"]

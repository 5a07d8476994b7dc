"""Evaluation datasets: adapters that turn a dataset folder into a list of :class:`Case` objects.

Registry: :data:`DATASETS` maps a name to an adapter class; :func:`open_dataset` builds one. Every adapter
checks its root and raises :class:`~redafit.errors.DatasetError` (exit code 11, one line) when the root is
missing or holds nothing in the expected layout. The licensed datasets (MICC Florence, NoW, BU-3DFE) are not
distributed with redafit; the layouts each adapter expects are documented on its class.

Scans are returned in millimetres: ``unit="auto"`` guesses the file's unit from the size of the scan (a
bounding-box diagonal under 2 is metres, under 80 centimetres, otherwise millimetres); pass ``unit`` to fix it.

Mesh files: ``.obj`` and VRML ``.wrl`` (IndexedFaceSet) are read by redafit itself; ``.ply``, ``.off``,
``.stl`` through trimesh. 3D landmark files: MeshLab ``.pp`` (PickedPoints XML), ``.bnd`` (BU-3DFE: index x y
z), or any whitespace/comma text with 3 numbers (the last 3 columns) per line.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from redafit.errors import DatasetError, UsageError
from redafit.io.images import IMAGE_EXTS

MESH_EXTS = (".obj", ".wrl", ".ply", ".off", ".stl")
LANDMARK_2D_EXTS = (".pts", ".npy", ".txt", ".json")


# ---------------------------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------------------------
def _read_obj(path: Path):
    verts, faces = [], []
    with open(path, "r", errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line.split()[1:4])
            elif line.startswith("f "):
                idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                for k in range(1, len(idx) - 1):  # fan-triangulate polygons
                    faces.append((idx[0], idx[k], idx[k + 1]))
    v = np.asarray(verts, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f):
        f = np.where(f > 0, f - 1, len(v) + f)  # OBJ: 1-based, negative = relative
    return v, f


_WRL_POINT = re.compile(r"point\s*\[([^\]]*)\]", re.DOTALL)
_WRL_INDEX = re.compile(r"coordIndex\s*\[([^\]]*)\]", re.DOTALL)


def _read_wrl(path: Path):
    """VRML 2.0 IndexedFaceSet(s): every ``point [...]`` / ``coordIndex [...]`` pair, concatenated."""
    text = Path(path).read_text(errors="replace")
    pts = _WRL_POINT.findall(text)
    idx = _WRL_INDEX.findall(text)
    if not pts:
        raise DatasetError(f"{path}: no 'point [...]' block found (expected a VRML IndexedFaceSet)")
    vs, fs, off = [], [], 0
    for k, block in enumerate(pts):
        v = np.asarray(block.replace(",", " ").split(), np.float64).reshape(-1, 3)
        if k < len(idx):
            ids = np.asarray(idx[k].replace(",", " ").split(), np.int64)
            poly, faces = [], []
            for i in ids:
                if i < 0:
                    faces += [(poly[0], poly[j], poly[j + 1]) for j in range(1, len(poly) - 1)]
                    poly = []
                else:
                    poly.append(int(i))
            faces += [(poly[0], poly[j], poly[j + 1]) for j in range(1, len(poly) - 1)]
            fs.append(np.asarray(faces, np.int64).reshape(-1, 3) + off)
        vs.append(v)
        off += len(v)
    return np.concatenate(vs), (np.concatenate(fs) if fs else np.zeros((0, 3), np.int64))


def unit_scale(vertices: np.ndarray, unit: str = "auto") -> float:
    """Factor from ``unit`` ("mm", "cm", "m", or "auto": guessed from the size of ``vertices`` [N, 3]) to mm."""
    scale = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
    if unit == "auto":
        diag = float(np.linalg.norm(np.ptp(vertices, axis=0))) if len(vertices) else 1000.0
        unit = "m" if diag < 2.0 else "cm" if diag < 80.0 else "mm"
    if unit not in scale:
        raise DatasetError(f"unknown unit {unit!r} (expected mm, cm, m or auto)")
    return scale[unit]


def load_mesh(path):
    """Read a scan or mesh file -> (vertices [N, 3] float64 in the file's units, faces [F, 3] int64)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"mesh file not found: {path}")
    ext = path.suffix.lower()
    try:
        if ext == ".obj":
            v, f = _read_obj(path)
        elif ext == ".wrl":
            v, f = _read_wrl(path)
        elif ext in (".ply", ".off", ".stl"):
            import trimesh

            m = trimesh.load(str(path), process=False, force="mesh")
            v, f = np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64).reshape(-1, 3)
        else:
            raise DatasetError(f"{path}: unsupported mesh format {ext!r} (expected one of {', '.join(MESH_EXTS)})")
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{path}: cannot read mesh ({type(e).__name__}: {e})") from e
    if len(v) < 3:
        raise DatasetError(f"{path}: mesh has {len(v)} vertices")
    return v, f


def read_points3d(path) -> np.ndarray:
    """3D landmarks [K, 3] (file units) from a MeshLab .pp, a BU-3DFE .bnd or a plain text file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"landmark file not found: {path}")
    try:
        if path.suffix.lower() == ".pp":
            root = ET.parse(path).getroot()
            pts = [[float(p.get(a)) for a in ("x", "y", "z")] for p in root.iter("point")]
            return np.asarray(pts, np.float64).reshape(-1, 3)
        if path.suffix.lower() == ".npy":
            return np.load(path).astype(np.float64).reshape(-1, 3)
        rows = []
        for line in path.read_text(errors="replace").splitlines():
            nums = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", line)
            if len(nums) >= 3:
                rows.append([float(x) for x in nums[-3:]])
        return np.asarray(rows, np.float64).reshape(-1, 3)
    except Exception as e:
        raise DatasetError(f"{path}: cannot read 3D landmarks ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class GroundTruth:
    """A case's ground truth in millimetres."""

    vertices: np.ndarray  # [N, 3]
    faces: np.ndarray  # [F, 3] (may be empty: a point cloud)
    nose_tip: np.ndarray | None  # [3]
    landmarks: np.ndarray | None  # [K, 3]
    landmark_ids: tuple | None  # iBUG-68 index of each landmark


@dataclass
class Case:
    """One evaluation case: an image to fit and the ground-truth shape to compare with.

    Either paths (read lazily, so cases are cheap and picklable) or in-memory arrays (the synthetic dataset).
    ``scan_landmarks`` [K, 3] (3D landmarks on the scan, iBUG-68 indices in ``scan_landmark_ids``) and
    ``nose_tip`` [3] (the crop centre; estimated from the scan when absent) are in the scan file's units when
    the scan comes from ``scan_path`` (scaled with it), in mm for in-memory scans.
    """

    id: str
    image_path: Path | None = None
    scan_path: Path | None = None
    landmarks_path: Path | None = None  # 2D image landmarks (68 or 5 points)
    scan_landmarks: np.ndarray | None = None  # [K, 3]
    scan_landmarks_path: Path | None = None  # alternative: a 3D landmark file
    scan_landmark_ids: tuple | None = None  # iBUG-68 index of each scan landmark
    nose_tip: np.ndarray | None = None  # [3]
    nose_tip_path: Path | None = None  # alternative: a file with "x y z"
    unit: str = "auto"
    protocol: str = "micc"  # which metric protocol applies: "micc" or "now"
    # in-memory alternatives (synthetic data)
    image: np.ndarray | None = field(default=None, repr=False)  # [H, W, 3] float32
    landmarks: np.ndarray | None = field(default=None, repr=False)  # [68, 2] px
    scan_vertices: np.ndarray | None = field(default=None, repr=False)  # [N, 3] mm
    scan_faces: np.ndarray | None = field(default=None, repr=False)  # [F, 3]
    intrinsics: object = None  # redafit.render.camera.Intrinsics when known
    # how the fits choose the focal length when ``intrinsics`` is not known: ``redafit fit --focal``'s forms
    # (redafit.render.camera.FocalSpec); "" is its default, "auto" (the photo's EXIF, else 1.6 x the longer side)
    focal: str = ""
    meta: dict = field(default_factory=dict)
    # a parsing map of the image (class ids, redafit.parsing.maps), for methods that fit with a given parsing
    parsing_path: Path | None = None
    parsing: np.ndarray | None = field(default=None, repr=False)
    # a depth map registered to the image (mm, redafit.io.depth), for methods that fit with it (RGB-D)
    depth_path: Path | None = None
    depth: np.ndarray | None = field(default=None, repr=False)

    def load_ground_truth(self) -> GroundTruth:
        """The scan, its nose tip and landmarks, all in mm."""
        if self.scan_vertices is not None:
            v = np.asarray(self.scan_vertices, np.float64)
            f = np.asarray(self.scan_faces if self.scan_faces is not None else np.zeros((0, 3)), np.int64)
            k = 1.0
        elif self.scan_path is not None:
            v, f = load_mesh(self.scan_path)
            k = unit_scale(v, self.unit)
            v = v * k
        else:
            raise DatasetError(f"case {self.id}: no ground-truth scan")
        lm = self.scan_landmarks
        if lm is None and self.scan_landmarks_path is not None:
            lm = read_points3d(self.scan_landmarks_path)
        nose = self.nose_tip
        if nose is None and self.nose_tip_path is not None:
            pts = read_points3d(self.nose_tip_path)
            if len(pts) == 0:
                raise DatasetError(f"case {self.id}: no point in {self.nose_tip_path}")
            nose = pts[0]
        ids = self.scan_landmark_ids
        if nose is None and lm is not None and ids is not None and 30 in ids:
            nose = np.asarray(lm)[list(ids).index(30)]
        return GroundTruth(v, f, None if nose is None else np.asarray(nose, np.float64).reshape(3) * k,
                           None if lm is None else np.asarray(lm, np.float64).reshape(-1, 3) * k, ids)

    def load_image(self) -> np.ndarray:
        """[H, W, 3] float32 RGB in [0, 1]."""
        return self.load_image_camera()[0]

    def load_image_camera(self) -> tuple:
        """(the image [H, W, 3] float32 RGB in [0, 1], the :class:`~redafit.render.camera.Intrinsics` a fit of it
        takes): the case's own ``intrinsics`` where known (the synthetic cases), else chosen by ``focal`` as
        ``redafit fit`` chooses it for the photo (None where the fitter is not installed)."""
        if self.image is not None:
            return self.image, self._camera(self.image)
        if self.image_path is None or not Path(self.image_path).is_file():
            raise DatasetError(f"case {self.id}: image not found: {self.image_path}")
        try:
            from redafit.io.images import load_image
        except ImportError:
            load_image = None
        if load_image is not None:
            image, meta = load_image(self.image_path)
            return image, self._camera(image, meta)
        import cv2

        from redafit.io.images import read_image_file

        im = read_image_file(self.image_path, cv2.IMREAD_COLOR)
        if im is None:
            raise DatasetError(f"case {self.id}: cannot decode image {self.image_path}")
        return cv2.cvtColor(im, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0, self.intrinsics

    def _camera(self, image: np.ndarray, meta=None):
        """The case's ``intrinsics``, else those ``focal`` gives ``image`` (with its
        :class:`~redafit.io.images.ImageMeta`'s scale and EXIF camera when read from a file)."""
        if self.intrinsics is not None:
            return self.intrinsics
        from redafit.render.camera import FocalSpec

        h, w = image.shape[:2]
        scale, camera = (meta.scale, meta.camera) if meta is not None else (1.0, None)
        return FocalSpec.parse(self.focal or "auto").intrinsics(w, h, scale, camera)[0]

    def load_parsing(self, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """[H, W] parsing class ids of the image (:mod:`redafit.parsing.maps`), or None when the case has none;
        a file is resampled to ``size`` (W, H; the image's) when given."""
        if self.parsing is not None:
            return self.parsing
        if self.parsing_path is None:
            return None
        from redafit.parsing.maps import load_parsing_map

        return load_parsing_map(self.parsing_path, size=size)

    def load_depth(self, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """[H, W] depth (mm, 0 = unknown) registered to the image (:func:`redafit.io.depth.load_depth`), or None when
        the case has none; a file is resampled to ``size`` (W, H; the image's) when given."""
        if self.depth is not None:
            return self.depth
        if self.depth_path is None:
            return None
        from redafit.io.depth import load_depth

        return load_depth(self.depth_path, size=size)

    @property
    def has_landmarks(self) -> bool:
        """Whether the case brings its own image landmarks (else a fit runs a detector)."""
        return self.landmarks is not None or self.landmarks_path is not None

    def load_landmarks(self) -> np.ndarray | None:
        """[68, 2] px image landmarks, or None when the case has none (the caller may run a detector)."""
        if self.landmarks is not None:
            return self.landmarks
        if self.landmarks_path is None:
            return None
        from redafit.landmarks import read_landmarks

        return read_landmarks(self.landmarks_path)


def _sibling_landmarks(image: Path) -> Path | None:
    for ext in LANDMARK_2D_EXTS:
        p = image.with_suffix(ext)
        if p.is_file():
            return p
    return None


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


DATASET_TITLES = {"micc": "the MICC Florence 2D/3D Face Dataset", "now": "the NoW benchmark's final_release_version",
                  "bu3dfe": "BU-3DFE"}


def _check_root(name: str, root) -> Path:
    if root is None:
        raise DatasetError(f"--dataset {name} needs --root DIR: the folder of {DATASET_TITLES.get(name, name)}, "
                           "which its authors license on request and redafit cannot download (the layout it reads: "
                           "README, redafit eval; --dataset synthetic needs no files)")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{name} dataset root not found: {root}")
    return root


# ---------------------------------------------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------------------------------------------
class Dataset:
    """Base adapter: ``cases()`` -> list of :class:`Case` (sorted, deterministic)."""

    name = "base"

    def cases(self) -> list[Case]:  # pragma: no cover - interface
        raise NotImplementedError


class MiccDataset(Dataset):
    """MICC Florence 2D/3D Face Dataset (Bagdanov et al. 2011), as redafit expects it under ``ROOT``::

        ROOT/
          subject_01/
            Model/frontal1/obj/<name>.obj     ground-truth frontal scan (3dMD, mm); .mtl and texture beside it
            Model/frontal1/vrml/<name>.wrl    used when there is no .obj
            images/<any>.jpg|png              evaluation images of this subject (optional)
            images/<any>.pts                  68 landmarks per image, same stem (optional: else a detector runs)
            nose_tip.txt                      "x y z" of the scan's nose tip, scan units (optional)
          subject_02/ ...

    Images: every file in ``images/`` is one case (the ReDA protocol fits frames/photos of each subject: put
    the ones you select there). Without ``images/``, the frontal scan's texture images in
    ``Model/frontal1/obj/`` (the .jpg/.png/.bmp files beside the OBJ) are the cases. A subject with no scan is
    skipped; a root with no subject at all is an error. Nose tip: ``nose_tip.txt``, else estimated from the scan
    (max z near the middle: MICC's frontal scans look along +z).
    """

    name = "micc"

    def __init__(self, root, scan: str = "frontal1", unit: str = "auto"):
        self.root = _check_root(self.name, root)
        self.scan = scan
        self.unit = unit

    def _scan_of(self, subject: Path) -> Path | None:
        base = subject / "Model" / self.scan
        for sub, ext in (("obj", ".obj"), ("vrml", ".wrl")):
            files = sorted((base / sub).glob(f"*{ext}")) if (base / sub).is_dir() else []
            if files:
                return files[0]
        files = sorted(p for p in base.glob("*") if p.suffix.lower() in (".obj", ".wrl")) if base.is_dir() else []
        return files[0] if files else None

    def cases(self) -> list[Case]:
        out = []
        subjects = sorted(p for p in self.root.iterdir() if p.is_dir())
        for subj in subjects:
            scan = self._scan_of(subj)
            if scan is None:
                continue
            images = _images_in(subj / "images") or _images_in(scan.parent)
            nose_file = subj / "nose_tip.txt"
            for im in images:
                out.append(Case(id=f"{subj.name}/{im.stem}", image_path=im, scan_path=scan,
                                landmarks_path=_sibling_landmarks(im), unit=self.unit, protocol="micc",
                                nose_tip_path=nose_file if nose_file.is_file() else None,
                                meta={"subject": subj.name}))
        if not out:
            raise DatasetError(f"micc: no subject with Model/{self.scan}/(obj|vrml) scan and images under {self.root}")
        return out


class NowDataset(Dataset):
    """NoW benchmark (Sanyal et al. 2019), validation layout as downloaded, under ``ROOT``::

        ROOT/
          imagepathsvalidation.txt                         one image path per line: <subject>/<challenge>/<file>.jpg
          iphone_pictures/<subject>/<challenge>/<file>.jpg challenges: multiview_neutral, multiview_expressions,
                                                           multiview_occlusions, selfie
          scans/<subject>/<scan>.obj                       one ground-truth scan per subject (the first *.obj)
          scans_lmks_onlypp/<subject>/<scan>.pp            7 MeshLab picked points on the scan: right eye outer
                                                           corner, right eye inner, left eye inner, left eye
                                                           outer, nose tip, right and left mouth corners
          detected_face/<subject>/<challenge>/<file>.npy   (optional) face boxes from NoW; not used

    2D landmarks: a file with the image's stem and a 68-point extension (.pts/.npy/.txt/.json) beside the image,
    else None (the runner then needs a detector). Without the image list, every image under iphone_pictures is
    used. The NoW protocol applies: similarity alignment on the 7 landmarks, refined on scan-to-mesh distance.
    """

    name = "now"
    LIST_FILES = ("imagepathsvalidation.txt", "imagepathstest.txt")

    def __init__(self, root, unit: str = "auto", challenge: str | None = None):
        self.root = _check_root(self.name, root)
        self.unit = unit
        self.challenge = challenge
        for sub in ("iphone_pictures", "scans", "scans_lmks_onlypp"):
            if not (self.root / sub).is_dir():
                raise DatasetError(f"now: {self.root} has no '{sub}/' folder (expected the NoW validation layout)")

    def _image_list(self) -> list[Path]:
        for name in self.LIST_FILES:
            lst = self.root / name
            if lst.is_file():
                rel = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
                return [self.root / "iphone_pictures" / r if not (self.root / r).is_file() else self.root / r
                        for r in rel]
        return sorted(p for p in (self.root / "iphone_pictures").rglob("*") if p.suffix.lower() in IMAGE_EXTS)

    def cases(self) -> list[Case]:
        from redafit.eval.metrics import NOW_LANDMARKS_68

        out = []
        scans: dict = {}
        for im in self._image_list():
            challenge, subject = im.parent.name, im.parent.parent.name
            if self.challenge and challenge != self.challenge:
                continue
            if subject not in scans:
                objs = sorted((self.root / "scans" / subject).glob("*.obj"))
                pps = sorted((self.root / "scans_lmks_onlypp" / subject).glob("*.pp"))
                if not objs or not pps:
                    raise DatasetError(f"now: subject {subject} has no scans/{subject}/*.obj or "
                                       f"scans_lmks_onlypp/{subject}/*.pp")
                lm = read_points3d(pps[0])
                if len(lm) != 7:
                    raise DatasetError(f"now: {pps[0]} holds {len(lm)} points, expected 7")
                scans[subject] = (objs[0], lm)
            scan, lm = scans[subject]
            out.append(Case(id=f"{subject}/{challenge}/{im.stem}", image_path=im, scan_path=scan,
                            landmarks_path=_sibling_landmarks(im), scan_landmarks=lm,
                            scan_landmark_ids=NOW_LANDMARKS_68, unit=self.unit, protocol="now",
                            meta={"subject": subject, "challenge": challenge}))
        if not out:
            raise DatasetError(f"now: no images found under {self.root / 'iphone_pictures'}")
        return out


class Bu3dfeDataset(Dataset):
    """BU-3DFE (Yin et al. 2006), under ``ROOT``::

        ROOT/
          F0001/
            F0001_NE00WH_F3D.wrl     cropped face scan (VRML, mm); the ground truth
            F0001_NE00WH_F2D.bmp     the frontal texture photograph: the image that is fitted
            F0001_NE00WH_F3D.bnd     83 scan landmarks "index x y z" (optional; not used for alignment)
            F0001_NE00WH_F2D.pts     68 image landmarks, same stem as the image (optional)
            F0001_AN01WH_F3D.wrl ... other expressions and levels
          M0001/ ...

    ``expressions`` filters by the 4-letter expression/level code (e.g. ("NE00",) for neutral only; default: all).
    Every ``*_F3D.wrl`` with a ``*_F2D`` image beside it is one case. Nose tip: estimated from the scan.
    """

    name = "bu3dfe"

    def __init__(self, root, expressions: tuple | None = None, unit: str = "auto"):
        self.root = _check_root(self.name, root)
        self.expressions = tuple(expressions) if expressions else None
        self.unit = unit

    def cases(self) -> list[Case]:
        out = []
        for scan in sorted(self.root.glob("*/*_F3D.wrl")):
            stem = scan.name[: -len("_F3D.wrl")]
            parts = stem.split("_")
            if self.expressions and (len(parts) < 2 or parts[1][:4] not in self.expressions):
                continue
            image = next((scan.parent / f"{stem}_F2D{e}" for e in IMAGE_EXTS
                          if (scan.parent / f"{stem}_F2D{e}").is_file()), None)
            if image is None:
                continue
            out.append(Case(id=f"{scan.parent.name}/{stem}", image_path=image, scan_path=scan,
                            landmarks_path=_sibling_landmarks(image), unit=self.unit, protocol="micc",
                            meta={"subject": scan.parent.name}))
        if not out:
            raise DatasetError(f"bu3dfe: no <subject>/<name>_F3D.wrl with a <name>_F2D image under {self.root}")
        return out


class ManifestDataset(Dataset):
    """A CSV manifest: one case per row. Columns (header required):

    * ``image`` (required): path of the image to fit;
    * ``scan`` (required): ground-truth mesh (.obj/.wrl/.ply/.off/.stl);
    * ``landmarks`` (optional): 68-point 2D landmark file for the image;
    * ``nose_tip`` (optional): "x y z" of the scan's nose tip in scan units, or a path to a file holding it;
    * ``scan_landmarks`` (optional): 3D landmark file (.pp/.txt) with 7 NoW points (switches the case to the
      NoW protocol) or 68 iBUG points (initialises ICP);
    * ``parsing`` (optional): a parsing map of the image (CelebAMask-HQ class ids, :mod:`redafit.parsing.maps`),
      used by methods that fit with a given parsing (``redafit eval --given-parsing``);
    * ``depth`` (optional): a depth map registered to the image (16-bit mm PNG, or as ``redafit fit --depth``
      reads), used by methods that fit with it (``redafit eval --given-depth``, RGB-D);
    * ``focal`` (optional): the camera's focal length in ``redafit fit --focal``'s forms (``1200`` pixels,
      ``26mm`` 35 mm-equivalent, ``1.6x`` the longer side; default ``auto``: the image's EXIF, else 1.6x);
    * ``id`` (optional): the case id (default: the image's stem); ``unit`` (optional): mm, cm, m or auto.

    Relative paths are relative to the CSV file's folder.
    """

    name = "manifest"

    def __init__(self, manifest, unit: str = "auto"):
        self.path = Path(manifest)
        if not self.path.is_file():
            raise DatasetError(f"manifest not found: {self.path}")
        self.unit = unit

    def cases(self) -> list[Case]:
        from redafit.eval.metrics import NOW_LANDMARKS_68

        base = self.path.parent
        rel = lambda s: (Path(s) if Path(s).is_absolute() else base / s) if s else None
        try:
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                header = reader.fieldnames or []
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            raise DatasetError(f"manifest {self.path}: cannot read CSV ({e})") from e
        if not {"image", "scan"} <= set(header):
            raise DatasetError(f"manifest {self.path}: needs a header with at least the columns image, scan")
        if not rows:
            raise DatasetError(f"manifest {self.path}: no cases (a header and no rows)")
        out, seen = [], set()
        for n, row in enumerate(rows, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            image, scan = rel(row.get("image")), rel(row.get("scan"))
            if image is None or scan is None:
                raise DatasetError(f"manifest {self.path}, line {n}: empty image or scan")
            if not scan.is_file():
                raise DatasetError(f"manifest {self.path}, line {n}: scan not found: {scan}")
            unit = row.get("unit") or self.unit
            nose, nose_path = None, None
            if row.get("nose_tip"):
                nums = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", row["nose_tip"])
                if rel(row["nose_tip"]).is_file():
                    nose_path = rel(row["nose_tip"])
                elif len(nums) == 3:
                    nose = np.asarray([float(x) for x in nums])
                else:
                    raise DatasetError(f"manifest {self.path}, line {n}: bad nose_tip {row['nose_tip']!r}")
            slm, sids, protocol = None, None, "micc"
            if row.get("scan_landmarks"):
                slm = read_points3d(rel(row["scan_landmarks"]))
                if len(slm) == 7:
                    sids, protocol = NOW_LANDMARKS_68, "now"
                elif len(slm) == 68:
                    sids = tuple(range(68))
                else:
                    raise DatasetError(f"manifest {self.path}, line {n}: scan landmarks must be 7 or 68 points")
            parsing = rel(row.get("parsing"))
            if parsing is not None and not parsing.is_file():
                raise DatasetError(f"manifest {self.path}, line {n}: parsing map not found: {parsing}")
            depth = rel(row.get("depth"))
            if depth is not None and not depth.is_file():
                raise DatasetError(f"manifest {self.path}, line {n}: depth map not found: {depth}")
            focal = row.get("focal") or ""
            if focal:
                from redafit.render.camera import FocalSpec

                try:
                    FocalSpec.parse(focal)
                except UsageError:
                    raise DatasetError(f"manifest {self.path}, line {n}: bad focal {focal!r} (expected auto, pixels "
                                       f"such as 1200, a 35 mm-equivalent length such as 26mm, or 1.6x)") from None
            cid = row.get("id") or image.stem
            if cid in seen:
                cid = f"{cid}_{n}"
            seen.add(cid)
            out.append(Case(id=cid, image_path=image, scan_path=scan, landmarks_path=rel(row.get("landmarks")),
                            scan_landmarks=slm, scan_landmark_ids=sids, nose_tip=nose, nose_tip_path=nose_path,
                            unit=unit, protocol=protocol, parsing_path=parsing, depth_path=depth, focal=focal))
        return out


DATASETS: dict = {"micc": MiccDataset, "now": NowDataset, "bu3dfe": Bu3dfeDataset, "manifest": ManifestDataset}


def open_dataset(name: str, root=None, manifest=None, **kwargs) -> Dataset:
    """An adapter by name (``micc``, ``now``, ``bu3dfe``) on ``root``, or the manifest adapter on ``manifest``."""
    if manifest is not None:
        return ManifestDataset(manifest, **kwargs)
    if name not in DATASETS or name == "manifest":
        known = ", ".join(k for k in DATASETS if k != "manifest")
        raise DatasetError(f"unknown dataset {name!r} (known: {known}, synthetic, or --manifest FILE.csv)")
    return DATASETS[name](root, **kwargs)

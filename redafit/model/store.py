"""Where face models live, how they are installed, and how they are loaded by name or path.

* :func:`model_dir` — the model folder: ``$REDAFIT_MODEL_DIR``, else ``$XDG_CACHE_HOME/redafit/models``, else
  ``~/.cache/redafit/models``. An installed model is a folder ``<model_dir>/<name>/`` with ``model.npz``
  (redafit's native format, mm) and ``info.json`` (summary, source, licence, checksums).
* :data:`KNOWN_MODELS` — the models redafit knows how to get. ``ict`` (MIT) and ``sfm`` (non-commercial) are
  downloaded from their public upstream sources and converted; ``bfm2009``, ``bfm2017`` and ``flame`` need a
  registration with their authors and are installed only from a local copy (``--from DIR``).
* :func:`install_model` — download (or take from ``src_dir``), convert, write atomically.
* :func:`load_model` — an installed name or a path to any supported file/folder (format auto-detected);
  loaded models are cached in-process, keyed by the resolved path and its modification time.

Checksums: a :class:`RemoteFile` with ``sha256`` set is verified after download (mismatch = error). Upstream
files whose digest could not be pinned when this table was written have ``sha256=None``: they are accepted,
their digest is logged and recorded in ``info.json`` (so it can be pinned), unless the environment sets
``REDAFIT_REQUIRE_CHECKSUM=1``, which refuses unpinned downloads.
"""

from __future__ import annotations

import copy
import datetime
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redafit.errors import ModelError, OutputError
from redafit.io import jsonsafe

if TYPE_CHECKING:  # torch is imported by the functions that load a model, not by `redafit models list`
    from redafit.model.face_model import FaceModel

log = logging.getLogger("redafit")

ENV_MODEL_DIR = "REDAFIT_MODEL_DIR"
ENV_REQUIRE_CHECKSUM = "REDAFIT_REQUIRE_CHECKSUM"
MODEL_FILE = "model.npz"
INFO_FILE = "info.json"
DEFAULT_MODEL = "ict"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: ``url``, pinned ``sha256`` (None = not pinned, see the module docstring), ``name``."""

    url: str
    sha256: str | None
    name: str


@dataclass(frozen=True)
class KnownModel:
    """A model redafit knows: where it comes from, its licence, and where ``--from DIR`` looks for it."""

    name: str
    title: str
    format: str  # loader name in redafit.model.formats
    licence: str  # one-line summary
    homepage: str
    files: tuple[RemoteFile, ...] = ()  # empty = registration required: install only with --from
    from_candidates: tuple[str, ...] = (".",)  # paths tried under --from DIR, in order
    archive_folder: str = ""  # for an archive download: the folder inside it holding the model files

    @property
    def downloadable(self) -> bool:
        return bool(self.files)

    def install_hint(self) -> str:
        if self.downloadable:
            return f"redafit models install {self.name} [--from DIR]"
        return f"redafit models install {self.name} --from DIR (download it from {self.homepage} after registering)"


_ICT_COMMIT = "da5f95a"
_EOS_COMMIT = "ce984207a51c2edd2e7568a64fec9b98ef61aeed"
_EOS_RAW = f"https://raw.githubusercontent.com/patrikhuber/eos/{_EOS_COMMIT}/share"

KNOWN_MODELS: dict[str, KnownModel] = {
    "ict": KnownModel(
        name="ict",
        title="ICT Face Model Light, face area (100 identity modes, 53 ARKit expressions, UVs)",
        format="ict",
        licence="MIT (ICT-FaceKit, USC Institute for Creative Technologies)",
        homepage="https://github.com/ICT-VGL/ICT-FaceKit",
        # The whole repository archive at the pinned commit (~0.5 GB; only FaceXModel/ is extracted). Its
        # digest could not be computed offline when this entry was written: sha256=None (see module docstring).
        files=(RemoteFile(f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{_ICT_COMMIT}.zip", None,
                          "ICT-FaceKit.zip"),),
        from_candidates=("ict-face/ict_face.npz", "ict_face.npz", "ict-face", "ICT-FaceKit/FaceXModel", "FaceXModel",
                         "ict-face/raw", "raw", "."),
        archive_folder="FaceXModel",
    ),
    "sfm": KnownModel(
        name="sfm",
        title="Surrey Face Model 3448, shape only (63 modes, 6 expression blendshapes, UVs)",
        format="sfm",
        licence="non-commercial use only (University of Surrey; commercial use: cvssp.org/facemodel)",
        homepage="https://github.com/patrikhuber/eos",
        files=(
            RemoteFile(f"{_EOS_RAW}/sfm_shape_3448.bin",
                       "43750338ae533e7fb981e924b6f67ebde3d292f15ec4fc886ae5af14308ad980", "sfm_shape_3448.bin"),
            RemoteFile(f"{_EOS_RAW}/expression_blendshapes_3448.bin",
                       "a77c81712fc5e8b08a1be4cd2824d51514e5bde6578109ae5240dfb3489efd43",
                       "expression_blendshapes_3448.bin"),
            RemoteFile(f"{_EOS_RAW}/ibug_to_sfm.txt",
                       "810810c457184526c7d54305ecbc5da764e2431b5e66025d921a7d424aebfac9", "ibug_to_sfm.txt"),
            RemoteFile(f"{_EOS_RAW}/sfm_model_contours.json",
                       "c9e69bfa995ab19ac6b27abb07729eb0520a00bb192be12426ca6bce76f3fded", "sfm_model_contours.json"),
        ),
        from_candidates=("sfm", "eos/share", "share", "."),
    ),
    "bfm2009": KnownModel(
        name="bfm2009",
        title="Basel Face Model 2009 (199 identity modes, colour model)",
        format="bfm2009",
        licence="non-commercial research only; registration required; no redistribution",
        homepage="https://faces.dmi.unibas.ch/bfm/",
        from_candidates=("bfm2009", "PublicMM1", "BFM", "."),
    ),
    "bfm2017": KnownModel(
        name="bfm2017",
        title="Basel Face Model 2017/2019 (identity, expression and colour models; needs h5py)",
        format="bfm2017",
        licence="non-commercial research only; registration required; no redistribution",
        homepage="https://faces.dmi.unibas.ch/bfm/bfm2017.html",
        from_candidates=("bfm2017", "bfm2019", "BFM2017", "."),
    ),
    "flame": KnownModel(
        name="flame",
        title="FLAME (300 identity + 100 expression modes; head with neck and eyes)",
        format="flame",
        licence="non-commercial scientific research only; registration required; no redistribution",
        homepage="https://flame.is.tue.mpg.de",
        from_candidates=("flame", "FLAME2020", "FLAME2023", "."),
    ),
}


# -- locations -----------------------------------------------------------------------------------------------------
def model_dir() -> Path:
    """The folder holding installed models (``$REDAFIT_MODEL_DIR`` or the XDG cache; not created here)."""
    env = os.environ.get(ENV_MODEL_DIR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "redafit" / "models"


def model_path(name: str) -> Path:
    """``<model_dir>/<name>/model.npz`` (whether or not it exists)."""
    return model_dir() / name / MODEL_FILE


def is_installed(name: str) -> bool:
    return model_path(name).is_file()


def installed_models() -> dict[str, dict]:
    """Installed models: name -> the contents of its ``info.json`` (``{}`` when missing or unreadable)."""
    root = model_dir()
    out: dict[str, dict] = {}
    if not root.is_dir():
        return out
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not (sub / MODEL_FILE).is_file():
            continue
        try:
            out[sub.name] = json.loads((sub / INFO_FILE).read_text())
        except (OSError, ValueError):
            out[sub.name] = {}
    return out


# -- loading -------------------------------------------------------------------------------------------------------
def _looks_like_name(s: str) -> bool:
    return bool(_NAME_RE.match(s))


def _not_installed(name: str) -> ModelError:
    known = KNOWN_MODELS.get(name)
    if known is None:
        names = ", ".join(KNOWN_MODELS)
        return ModelError(f"unknown model '{name}' (known: {names}; or give a path to a model file or folder)")
    if known.downloadable:
        return ModelError(f"model '{name}' is not installed; run: redafit models install {name} [--from DIR]")
    return ModelError(f"model '{name}' is not installed; it needs a registration at {known.homepage}; "
                      f"then run: redafit models install {name} --from DIR")


def _stamp(path: Path) -> tuple:
    """What invalidates the cache: modification times and sizes of the file (or the files directly in a folder)."""
    if path.is_dir():
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in path.iterdir() if p.is_file()))
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, stamp: tuple) -> FaceModel:
    from redafit.model.formats import load_file

    return load_file(path)


def clear_cache() -> None:
    """Forget the in-process cache of loaded models."""
    _load_cached.cache_clear()


def copy_model(model: FaceModel, device=None) -> FaceModel:
    """A new FaceModel with its own buffers (cloned) and a copy of its metadata, on ``device`` (default: the
    model's device)."""
    import torch

    from redafit.model.face_model import FaceModel

    dev = torch.device(device) if device is not None else model.mean.device
    t = lambda x: x.detach().cpu().clone()  # the constructor takes CPU arrays
    return FaceModel(
        mean=t(model.mean), id_basis=t(model.id_basis), exp_basis=t(model.exp_basis), triangles=t(model.triangles),
        uv=t(model.uv), uv_triangles=t(model.uv_triangles), landmark_ids=t(model.landmark_ids),
        contour_right=t(model.contour_right), contour_left=t(model.contour_left),
        expression_names=list(model.expression_names),
        albedo_mean=t(model.albedo_mean) if model.has_albedo else None,
        albedo_basis=t(model.albedo_basis) if model.has_albedo else None,
        info=copy.deepcopy(model.info),
    ).to(dev)


def resolve_model_path(name_or_path) -> Path:
    """The file or folder a model name or path refers to (:class:`ModelError` if there is none)."""
    s = str(name_or_path)
    if isinstance(name_or_path, str) and _looks_like_name(s):
        p = model_path(s)
        if p.is_file():
            return p
        if not Path(s).exists():  # an existing file or folder of that name is taken as a path (./name)
            raise _not_installed(s)
    p = Path(s).expanduser()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    return p.resolve()


def load_model(name_or_path, device=None) -> FaceModel:
    """Load a face model (mm, model frame) by installed name (``"ict"``) or by path (file or folder, any format).

    A bare name (letters, digits, ``-``, ``_``) is an installed model's name; when no model of that name is installed
    but a file or folder of that name exists, it is that path (``./name`` is always a path).
    Returns a fresh :class:`FaceModel` each call (its own buffers), on ``device`` (default CPU); the parsed file is
    cached in-process. Raises :class:`ModelError` (exit code 7) when the model is missing or malformed.
    """
    from redafit.model.face_model import FaceModel

    if isinstance(name_or_path, FaceModel):  # itself, or a copy on another device (the caller's model not moved)
        import torch

        if device is None or name_or_path.mean.device == torch.device(device):
            return name_or_path
        return copy_model(name_or_path, device)
    path = resolve_model_path(name_or_path)
    try:
        stamp = _stamp(path)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    return copy_model(_load_cached(str(path), stamp), device)


# -- installing ----------------------------------------------------------------------------------------------------
def _find_source(known: KnownModel, src_dir: Path) -> Path:
    from redafit.model.formats import get_loader

    if not src_dir.exists():
        raise ModelError(f"--from {src_dir}: no such file or folder")
    loader = get_loader(known.format)
    cands = [src_dir] if src_dir.is_file() else [src_dir / c for c in known.from_candidates]
    for c in cands:
        try:
            if c.exists() and loader.detect(c):
                return c
        except OSError:
            continue
    tried = ", ".join(known.from_candidates)
    raise ModelError(f"no {known.name} model files found under {src_dir} (looked for: {tried})")


def _load_source(known: KnownModel, src: Path) -> FaceModel:
    from redafit.model.formats import ict, load_file

    if known.format == "ict" and ict._npz_path(src) is None:
        folder = ict._obj_dir(src)
        if folder is not None:  # the upstream OBJ layout: all 100 identity and 53 expression shapes needed
            return ict.convert_obj_dir(folder, require_complete=True)
    return load_file(src, format=known.format)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(remote: RemoteFile, dest: Path, hint: str = "") -> str:
    """Download ``remote`` to ``dest`` (via ``dest.part``), verify its sha256; returns the digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    log.info("downloading %s", remote.url)
    try:
        req = urllib.request.Request(remote.url, headers={"User-Agent": "redafit"})
        with urllib.request.urlopen(req, timeout=_DOWNLOAD_TIMEOUT_S) as r, open(part, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download {remote.url} ({reason}){hint}") from None
    digest = h.hexdigest()
    if remote.sha256 is None:
        if os.environ.get(ENV_REQUIRE_CHECKSUM, "") not in ("", "0"):
            part.unlink(missing_ok=True)
            raise ModelError(f"{remote.url} has no pinned checksum and {ENV_REQUIRE_CHECKSUM} is set{hint}")
        log.warning("%s: no pinned checksum; sha256 = %s (recorded in info.json)", remote.name, digest)
    elif digest != remote.sha256.lower():
        part.unlink(missing_ok=True)
        raise ModelError(f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, got {digest}")
    os.replace(part, dest)
    return digest


def _extract_folder(archive: Path, folder: str, dest: Path) -> Path:
    """Extract the files under ``<top>/<folder>/`` (and the top-level LICENSE) of a GitHub zip into ``dest``."""
    try:
        with zipfile.ZipFile(archive) as z:
            n = 0
            for info in z.infolist():
                parts = info.filename.split("/")
                if info.is_dir() or len(parts) < 2 or ".." in parts:
                    continue
                if parts[1] == folder and len(parts) == 3 and parts[2].endswith((".obj", ".json")):
                    target = dest / folder / parts[2]
                elif len(parts) == 2 and parts[1] in ("LICENSE", "LICENSE.md", "LICENSE.txt"):
                    target = dest / "LICENSE"
                else:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                n += 1
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"{archive}: cannot extract the archive ({e})") from None
    if n == 0:
        raise ModelError(f"{archive}: no '{folder}/' folder in the archive")
    return dest / folder


def _fetch(known: KnownModel, work: Path) -> tuple[Path, dict]:
    """Download the model's files into ``work``; returns (the path to load, {file name: sha256})."""
    if not known.downloadable:
        raise ModelError(f"model '{known.name}' cannot be downloaded automatically (registration required at "
                         f"{known.homepage}); download it there, then run: redafit models install {known.name} "
                         f"--from DIR")
    hint = f"; without internet access, get the files yourself and run: redafit models install {known.name} --from DIR"
    digests = {}
    for rf in known.files:
        digests[rf.name] = download(rf, work / rf.name, hint)
    if known.archive_folder:
        src = _extract_folder(work / known.files[0].name, known.archive_folder, work / "extracted")
        (work / known.files[0].name).unlink()
        return src, digests
    return work, digests


def _write_installed(model: FaceModel, known: KnownModel, dest: Path, origin: str, digests: dict) -> None:
    from redafit import __version__
    from redafit.model.formats import native

    model.info.name = known.name
    licence_text = model.info.extra.get("licence_text", "")
    model.info.extra = {k: v for k, v in model.info.extra.items() if k != "file"}
    native.save(model, dest / MODEL_FILE)
    info = {
        "name": known.name,
        "title": known.title,
        "format": known.format,
        "installed_from": origin,
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "redafit_version": __version__,
        "sha256": digests,
        "model_sha256": _sha256(dest / MODEL_FILE),
        "licence_summary": known.licence,
        "licence_text": licence_text,
        "homepage": known.homepage,
        "summary": model.summary(),
    }
    (dest / INFO_FILE).write_text(jsonsafe.dumps(info, indent=2) + "\n")


# files trained for an installed model and kept beside it (the rig's init network, `redafit models train-init`)
TRAINED_FILES = ("initnet.pt", "initnet.json")  # weights, config (redafit.rig.initnet)


def _keep_trained_files(old: Path, new: Path, name: str) -> None:
    """Carry the files trained for the model at ``old`` over to the one built at ``new`` when the model itself is
    the same (``install --force`` from the same source); drop them, saying so, when it changed."""
    trained = [f for f in TRAINED_FILES if (old / f).is_file()]
    if not trained:
        return
    try:
        same = (json.loads((old / INFO_FILE).read_text())["model_sha256"]
                == json.loads((new / INFO_FILE).read_text())["model_sha256"])
    except (OSError, ValueError, KeyError):
        same = False
    if same:
        for f in trained:
            shutil.copy2(old / f, new / f)
        log.info("kept %s (trained for this same model)", ", ".join(trained))
    else:
        log.warning("model '%s' changed: the rig init network trained for the old one is removed; retrain it with "
                    "`redafit models train-init --model %s`", name, name)


def install_model(name: str, src_dir=None, force: bool = False) -> Path:
    """Install the known model ``name`` into ``<model_dir>/<name>/`` (``model.npz`` + ``info.json``).

    With ``src_dir``: take the files from that local folder (or file), e.g. ``../shared/data/models`` holding
    ``ict-face/ict_face.npz`` or ``sfm/``, an ICT-FaceKit checkout, a folder with ``01_MorphableModel.mat`` …
    Without: download from the upstream source (``ict``, ``sfm``), verify checksums and convert.
    An already installed model is kept unless ``force``. The folder appears atomically (built beside it, then
    renamed into place). Returns the path of ``model.npz``.
    """
    known = KNOWN_MODELS.get(name)
    if known is None:
        raise ModelError(f"unknown model '{name}' (known: {', '.join(KNOWN_MODELS)})")
    target = model_dir() / name
    if (target / MODEL_FILE).is_file() and not force:
        log.info("model '%s' is already installed at %s (use --force to reinstall)", name, target)
        return target / MODEL_FILE
    root = model_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    except OSError as e:
        raise OutputError(f"cannot create the model folder {root}: {e}") from None
    try:
        build = work / "model"
        build.mkdir()
        if src_dir is not None:
            src = _find_source(known, Path(src_dir).expanduser().resolve())
            log.info("installing %s from %s", name, src)
            model = _load_source(known, src)
            origin, digests = str(src), {}
        else:
            fetched, digests = _fetch(known, work / "download")
            model = _load_source(known, fetched)
            origin = known.files[0].url if len(known.files) == 1 else known.homepage
        _write_installed(model, known, build, origin, digests)
        _keep_trained_files(target, build, name)
        old = None
        if target.exists():
            old = work / "old"
            os.replace(target, old)
        os.replace(build, target)
    except OSError as e:
        raise OutputError(f"cannot install model '{name}' into {target}: {e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    clear_cache()
    log.info("installed %s at %s", name, target)
    return target / MODEL_FILE


__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "KnownModel",
    "RemoteFile",
    "clear_cache",
    "copy_model",
    "download",
    "install_model",
    "installed_models",
    "is_installed",
    "load_model",
    "model_dir",
    "model_path",
    "resolve_model_path",
]

"""File input/output: images (EXIF, modes, bit depth), meshes (OBJ+MTL+PNG, PLY, NPZ, glTF), atomic writes."""

from redafit.io.atomic import atomic_path, atomic_write
from redafit.io.images import ImageMeta, load_image, save_image
from redafit.io.meshes import read_obj, write_glb, write_mesh

__all__ = ["atomic_path", "atomic_write", "ImageMeta", "load_image", "save_image", "read_obj", "write_glb",
           "write_mesh"]

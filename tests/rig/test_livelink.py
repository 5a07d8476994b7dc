"""`livelink.csv`: a track's frames as ARKit blendshape curves in Live Link Face's CSV layout."""


import logging
import re

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
    np.testing.assert_allclose(X[:, 52] * 180, [-10, -10, 0, 10, 20], atol=1e-9)  # HeadYaw: -yaw / 180
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
    with caplog.at_level(logging.WARNING, logger="redafit"):  # an in-process `redafit -q` before may have raised it
        written = write_track(result(emotions), tmp_path)
    assert [f.name for f in written] == ["params.jsonl", "track.json"]
    assert not (tmp_path / "livelink.csv").exists()
    assert "removed" in caplog.text


def _take(rows, header=livelink.HEADER) -> str:
    return "\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n"


def test_read_take_of_the_app(tmp_path):
    """A take as the app records it: time-of-day timecodes at 25 fps crossing seconds, camelCase names read as
    well, head angles in degrees / 180 about ARKit's face axes (yaw and roll the other way round from the
    records'); the rig's one-sided pairs both take ARKit's one curve."""
    n = 30
    rows = []
    for k in range(n):
        s, ff = divmod(10 + k, 25)
        vals = np.zeros(61)
        vals[livelink.SHAPES.index("JawOpen")] = k / n
        vals[livelink.SHAPES.index("BrowInnerUp")] = 0.25
        vals[52:55] = [-20.0 / 180, -5.0 / 180, -6.0 / 180]  # degrees / 180, ARKit's signs
        rows.append([f"14:03:{52 + s:02d}:{ff:02d}.{k * 7 % 1000:03d}", 61, *(f"{v:.8f}" for v in vals)])
    header = list(livelink.HEADER)
    header[2] = "eyeBlinkLeft"
    path = tmp_path / "take.csv"
    path.write_text(_take(rows, header))
    names = ["jawOpen", "browInnerUp_L", "browInnerUp_R", "eyeBlink_L", "smile"]
    recs, rate = livelink.read_take(path, names)
    assert rate == 25 and len(recs) == n
    t = np.array([r["time_s"] for r in recs])
    k = np.arange(n)
    np.testing.assert_allclose(t, (k + k * 7 % 1000 / 1000) / 25, atol=1e-6)  # from the first frame's time
    assert recs[12]["expression"] == {"jawOpen": pytest.approx(0.4), "browInnerUp_L": 0.25, "browInnerUp_R": 0.25,
                                      "eyeBlink_L": 0.0}
    pose = recs[0]["pose"]
    assert pose["yaw_deg"] == pytest.approx(20.0) and pose["pitch_deg"] == pytest.approx(-5.0)
    import torch

    from redafit.render.camera import pose_rotation, rotation_to_euler

    e = rotation_to_euler(pose_rotation(torch.tensor([pose["axis_angle"]], dtype=torch.float64)))[0]
    np.testing.assert_allclose(e.numpy(), [20.0, -5.0, 6.0], atol=1e-6)
    assert pose["translation_mm"] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n", "not a Live Link Face CSV"),
    ("Timecode,BlendShapeCount,Foo\n00:00:00:00.000,1,0.5\n", "none of the header's columns"),
    ("Timecode,BlendShapeCount,JawOpen\n", "no frames"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,0.5,0.7\n", ":2: 4 values, the header has 3"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,0\n", "none of its 1 frames has the curves' values"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00.000,1,0.5\n", ":2: timecode '00:00:00.000' is not"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,nan\n", ":2: JawOpen is 'nan'"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,x\n", ":2: could not convert"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:01.000,1,0\n00:00:00:01.000,1,0\n", ":3: timecode 00:00:00:01.000 "
     "does not follow"),
    ("Timecode,BlendShapeCount,TongueOut\n00:00:00:00.000,1,0.5\n", "drives the rig's expressions"),
    ("Timecode,BlendShapeCount,JawOpen\n0_0:00:00:00.000,1,0.5\n", ":2: timecode '0_0:00:00:00.000' is not"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1," + "1" * 200_000 + "\n", ":2: field larger"),
    ("Timecode,BlendShapeCount,JawOpen,HeadYaw\n00:00:00:00.000,2,0.5,0\n00:00:00:01.000,2,0.5,1e300\n",
     ":3: a head angle of 1e+300 is beyond 360 degrees"),
])
def test_read_take_refuses_malformed_files(tmp_path, text, message):
    from redafit.errors import InputError

    path = tmp_path / "take.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)):
        livelink.read_take(path, ["jawOpen"])


def test_a_written_track_reads_back(tmp_path):
    """livelink_csv then read_take: the curves and the times come back (a take over a second: its own rate)."""
    names = ["jawOpen", "eyeBlink_L", "cheekPuff_L", "cheekPuff_R"]
    recs = [{"frame": k, "time_s": round(k / 12, 4), "ok": True,
             "expression": {"jawOpen": k / 40, "eyeBlink_L": 0.5, "cheekPuff_L": 0.2, "cheekPuff_R": 0.4},
             "pose": {"yaw_deg": 30.0 - k, "pitch_deg": 4.0, "roll_deg": -2.0}} for k in range(30)]
    path = tmp_path / "livelink.csv"
    path.write_text(livelink.livelink_csv(recs, names, fps=12))
    back, rate = livelink.read_take(path, names)
    assert rate == 12
    np.testing.assert_allclose([r["time_s"] for r in back], np.arange(30) / 12, atol=1e-9)
    for a, b in zip(recs, back):
        assert b["expression"]["jawOpen"] == pytest.approx(a["expression"]["jawOpen"], abs=1e-6)
        assert b["expression"]["cheekPuff_L"] == b["expression"]["cheekPuff_R"] == pytest.approx(0.3)
        assert b["pose"]["yaw_deg"] == pytest.approx(a["pose"]["yaw_deg"], abs=1e-4)


def test_read_take_leaves_out_rows_without_values_and_reads_degrees(tmp_path, caplog):
    """Rows the app wrote without a face (BlendShapeCount 0, no values) are left out, the others keep their row
    index and time; head angles beyond 1 (a half turn) are a take written in degrees."""
    rows = ["00:00:00:00.000,3,0.1,20.0,-4.0", "00:00:00:01.000,0", "00:00:00:02.000,0,,,",
            "00:00:00:03.000,3,0.4,-30.0,2.0"]
    path = tmp_path / "take.csv"
    path.write_text("Timecode,BlendShapeCount,JawOpen,HeadYaw,HeadPitch\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="redafit"):
        recs, rate = livelink.read_take(path, ["jawOpen"])
    assert "2 of 4 frames have no values" in caplog.text
    assert rate == livelink.DEFAULT_RATE and [r["frame"] for r in recs] == [0, 3]
    np.testing.assert_allclose([r["time_s"] for r in recs], [0, 3 / 60])
    assert [r["expression"]["jawOpen"] for r in recs] == [0.1, 0.4]
    assert recs[1]["pose"]["yaw_deg"] == 30.0 and recs[0]["pose"]["pitch_deg"] == -4.0  # HeadYaw -30 degrees


def test_read_take_without_a_count_column(tmp_path):
    """Some tools write the layout without BlendShapeCount: a first curve of 0 is then a value, not a missing
    frame."""
    path = tmp_path / "take.csv"
    path.write_text("Timecode,JawOpen,EyeBlinkLeft\n00:00:00:00.000,0,0.5\n00:00:00:01.000,0.25,0\n")
    recs, _ = livelink.read_take(path, ["jawOpen", "eyeBlink_L"])
    assert [r["expression"] for r in recs] == [{"jawOpen": 0.0, "eyeBlink_L": 0.5},
                                               {"jawOpen": 0.25, "eyeBlink_L": 0.0}]


def test_read_take_lines_may_end_in_a_carriage_return(tmp_path):
    """Old Mac line endings (CR only) read as LF and CRLF do (csv refused them: "new-line character seen in
    unquoted field", an unexpected error, exit 1)."""
    text = "Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,0.5\n00:00:00:01.000,1,0.25\n"
    for ending in ("\r", "\r\n"):
        path = tmp_path / "take.csv"
        path.write_bytes(text.replace("\n", ending).encode())
        recs, _ = livelink.read_take(path, ["jawOpen"])
        assert [r["expression"]["jawOpen"] for r in recs] == [0.5, 0.25]


def _seconds(n: int, rate: int, typo_at: int | None = None) -> list[str]:
    rows = []
    for k in range(n):
        s, ff = divmod(k, rate)
        rows.append(f"00:00:{s:02d}:{99 if k == typo_at else ff:02d}.000,1,{k / n:.4f}")
    return rows


def test_the_takes_rate_is_its_whole_seconds_and_a_frame_number_beyond_it_is_an_error(tmp_path):
    """The rate is counted in the take's whole seconds, so one mistyped frame number (99 in a 30 fps take) is an
    error naming its own line, not a 100 fps take (nor an error blamed on the next line)."""
    from redafit.errors import InputError

    path = tmp_path / "take.csv"
    path.write_text("Timecode,BlendShapeCount,JawOpen\n" + "\n".join(_seconds(100, 30)) + "\n")
    assert livelink.read_take(path, ["jawOpen"])[1] == 30
    for typo in (40, 99):  # mid-take; the last row
        path.write_text("Timecode,BlendShapeCount,JawOpen\n" + "\n".join(_seconds(100, 30, typo)) + "\n")
        with pytest.raises(InputError, match=f":{typo + 2}: timecode 00:00:0{typo // 30}:99.000 counts frame 99, "
                                             "but the take has 30 frames a second"):
            livelink.read_take(path, ["jawOpen"])


def test_a_short_tracks_csv_plays_at_the_tracks_rate(tmp_path):
    """A track under a second (6 frames at 10 fps) cannot tell its rate from its timecodes: its livelink.csv was
    read at Live Link Face's 60 fps, 6 times too fast; track.json beside it gives the track's."""
    names = ["jawOpen"]
    recs = [{"frame": k, "time_s": k / 10, "ok": True, "expression": {"jawOpen": k / 6},
             "pose": {"yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0}} for k in range(6)]
    path = tmp_path / livelink.FILE
    path.write_text(livelink.livelink_csv(recs, names, fps=10))
    (tmp_path / "track.json").write_text('{"fps": 10.0}')
    back, rate = livelink.read_take(path, names)
    assert rate == 10 and back[-1]["time_s"] == pytest.approx(0.5)
    (tmp_path / "track.json").unlink()
    assert livelink.read_take(path, names)[1] == livelink.DEFAULT_RATE  # the app's own take: its default


def test_weights_outside_0_1_are_clipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "take.csv"
    path.write_text("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,-5\n00:00:00:01.000,1,1e300\n"
                    "00:00:00:02.000,1,0.5\n")
    with caplog.at_level(logging.WARNING, logger="redafit"):
        recs, _ = livelink.read_take(path, ["jawOpen"])
    assert [r["expression"]["jawOpen"] for r in recs] == [0.0, 1.0, 0.5]
    assert "2 blendshape weights outside 0-1" in caplog.text

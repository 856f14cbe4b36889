"""Timelines (``mbgf predict --timeline``, ``mbgf embed --timeline``, ``Predictor.timeline``) on generated
videos: the windows' places and frames as planned by hand, every frame decoded once, a window's
probabilities equal to ``predict`` on a file holding only that window's frames, the top class switching
where the video's content does, the JSON/CSV/PNG outputs, and search returning where a hit is."""

import csv
import io
import json
import shutil

import av
import numpy as np
import pytest
import torch

from mbgf_cli.data.windows import DecodeStats, decode_windows, plan_windows
from mbgf_cli.inference import Predictor
from tests.predict_support import CLASS_NAMES, FRAMES, colour_checkpoint, colour_frames
from tests.test_train_support import run_cli
from tests.videos import frame_index, write_text_as_video, write_video


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return colour_checkpoint(tmp_path_factory)


def write_lossless(path, frames: np.ndarray, fps: int = 8):
    """H.264 at qp 0, every frame a keyframe: a frame decodes to the same pixels in any file holding it."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "g": "1", "bf": "0", "preset": "ultrafast", "threads": "1"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def red_then_blue(seconds_each: int = 4, fps: int = 8) -> np.ndarray:
    """The colour model's "something red" for the first half, "something blue" for the second."""
    red = [colour_frames(0, seed=100 + i) for i in range(seconds_each * fps // 8)]
    blue = [colour_frames(2, seed=200 + i) for i in range(seconds_each * fps // 8)]
    return np.concatenate(red + blue)


# --------------------------------------------------------------------------------------------------
# Planning and decoding
# --------------------------------------------------------------------------------------------------


def test_windows_start_every_stride_and_the_last_one_ends_at_the_video_end():
    # 10 s at 8 fps, 2 s windows every 1 s: starts 0..8, the last ends at 10 s.
    windows = plan_windows(80, 8.0, 2.0, 1.0, frames=4)
    assert [(w.start, w.end) for w in windows] == [(float(s), float(s + 2)) for s in range(9)]
    # TSN segment centres of the window's 16 frames: 4 segments of 4, centre offset 2.
    assert windows[0].indices == (2, 6, 10, 14) and windows[3].indices == (26, 30, 34, 38)
    # A stride that does not reach the end: one more window, ending at the end.
    assert [(w.start, w.end) for w in plan_windows(80, 8.0, 2.0, 3.0, 4)] == [(0, 2), (3, 5), (6, 8), (8, 10)]
    # Shorter than one window: one window over the whole video, its frames repeated in order.
    (short,) = plan_windows(3, 8.0, 2.0, 1.0, 4)
    assert (short.start, short.end, short.indices) == (0.0, 3 / 8, (0, 0, 1, 2))


def test_each_frame_is_decoded_once_and_only_the_open_windows_frames_are_held(tmp_path):
    video = write_video(tmp_path / "index.mp4", num_frames=64, size=(32, 32), fps=8)
    windows = plan_windows(64, 8.0, 2.0, 0.5, frames=4)  # windows overlap 4 times over
    stats = DecodeStats()
    seen = [(window, [frame_index(f, 64) for f in frames])
            for window, frames in decode_windows(str(video), windows, lambda rgb: rgb, stats)]
    assert [w for w, _ in seen] == windows
    assert all(list(w.indices) == found for w, found in seen)  # the very frames planned
    # One pass: each frame out of the decoder once, up to the last one a window samples.
    assert stats.decoded == max(i for w in windows for i in w.indices) + 1 == 63
    assert stats.converted == len({i for w in windows for i in w.indices})  # converted only when sampled
    assert stats.peak_held <= 4 * 4 + 4  # the frames of the windows open at one time, not the video


def test_the_timeline_reads_each_frame_once_through_predictor(colour, tmp_path):
    _, checkpoint = colour
    video = write_lossless(tmp_path / "long.mp4", red_then_blue())
    stats = DecodeStats()
    timeline = Predictor.from_checkpoint(checkpoint, amp="off").timeline(video, window=1.0, stride=0.25, stats=stats)
    windows = plan_windows(64, 8.0, 1.0, 0.25, FRAMES)
    assert timeline.spans == [(w.start, w.end) for w in windows] and len(windows) == 29
    assert stats.decoded == max(windows[-1].indices) + 1 and stats.converted == len({i for w in windows
                                                                                     for i in w.indices})


def test_a_container_that_overstates_its_frames_is_planned_again_with_the_frames_there_are(colour, tmp_path,
                                                                                        monkeypatch):
    import mbgf_cli.inference.timeline

    _, checkpoint = colour
    video = write_video(tmp_path / "v.mp4", frames=red_then_blue(2), fps=8)  # 32 frames
    predictor = Predictor.from_checkpoint(checkpoint, amp="off")
    honest = predictor.timeline(video, window=1.0, stride=1.0)
    monkeypatch.setattr(mbgf_cli.inference.timeline, "video_length", lambda path: (40, 8.0))  # a stale count
    stats = DecodeStats()
    replanned = predictor.timeline(video, window=1.0, stride=1.0, stats=stats)
    assert replanned.spans == honest.spans == [(float(s), float(s + 1)) for s in range(4)]
    assert torch.equal(replanned.probs, honest.probs) and stats.decoded == 32 + 32  # the short pass, then one more


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crops", [1, 3])
def test_a_windows_probabilities_are_predicts_on_the_window_cut_into_its_own_file(colour, tmp_path, crops):
    _, checkpoint = colour
    frames = red_then_blue()
    frames = np.concatenate([frames, frames[:, :, ::-1]], axis=2)  # 32 x 128: three crops differ
    video = write_lossless(tmp_path / "long.mp4", frames)
    predictor = Predictor.from_checkpoint(checkpoint, amp="off")
    timeline = predictor.timeline(video, window=1.5, stride=1.0, crops=crops, batch_size=3)
    assert [end for _, end in timeline.spans] == [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.0]
    cuts = []
    for w, (start, end) in enumerate(timeline.spans):
        first, stop = round(start * 8), round(end * 8)
        cuts.append(str(write_lossless(tmp_path / f"window{w}.mp4", frames[first:stop])))
    direct = predictor.predict(cuts, views=(1, crops), decoder="pyav", workers=0)
    assert direct.videos == cuts
    assert torch.allclose(timeline.probs, direct.probs, atol=1e-6)


def test_the_top_class_switches_where_the_video_does(colour, tmp_path, capsys):
    _, checkpoint = colour
    video = write_video(tmp_path / "long.mp4", frames=red_then_blue(), fps=8)
    code, stdout, stderr = run_cli(["predict", video, "-c", checkpoint, "--timeline", "--window", "1", "--stride",
                                    "0.5", "--json"], capsys)
    assert code == 0, stderr
    (found,) = json.loads(stdout)["videos"]
    for window in found["windows"]:
        if window["end"] <= 4:
            assert window["top"][0]["label"] == "something red"
        elif window["start"] >= 4:
            assert window["top"][0]["label"] == "something blue"
    assert len(found["windows"]) == 15 and found["windows"][-1]["end"] == 8.0


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------


def test_json_csv_and_plot_outputs(colour, tmp_path, capsys):
    _, checkpoint = colour
    video = write_video(tmp_path / "long.mp4", frames=red_then_blue(2), fps=8)
    broken = write_text_as_video(tmp_path / "broken.mp4")
    table, plot = tmp_path / "out" / "t.csv", tmp_path / "t.png"
    code, stdout, stderr = run_cli(["predict", video, broken, "-c", checkpoint, "--timeline", "--window", "2",
                                    "--stride", "1", "-k", "2", "--json", "--csv", table, "--plot", plot], capsys)
    assert code == 0, stderr
    out = json.loads(stdout)
    assert set(out) == {"videos", "skipped"} and out["skipped"] == [str(broken)]
    (found,) = out["videos"]
    assert set(found) == {"video", "windows"} and found["video"] == str(video)
    assert [(w["start"], w["end"]) for w in found["windows"]] == [(0, 2), (1, 3), (2, 4)]
    for window in found["windows"]:
        assert set(window) == {"start", "end", "top"} and len(window["top"]) == 2
        assert all(set(r) == {"id", "label", "probability"} and r["label"] == CLASS_NAMES[r["id"]]
                   for r in window["top"])
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert list(rows[0]) == ["video", "start", "end", "rank", "id", "label", "probability"] and len(rows) == 6
    assert [(float(r["start"]), int(r["rank"]), r["label"], float(r["probability"])) for r in rows[:2]] == \
        [(0.0, 1, found["windows"][0]["top"][0]["label"], found["windows"][0]["top"][0]["probability"]),
         (0.0, 2, found["windows"][0]["top"][1]["label"], found["windows"][0]["top"][1]["probability"])]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The rich table: a row per window.
    code, stdout, stderr = run_cli(["predict", video, "-c", checkpoint, "--timeline", "-k", "1"], capsys)
    assert code == 0 and "something red" in stdout and "something blue" in stdout and "3.00" in stdout


def test_bad_timeline_options_are_one_line_before_any_work(colour, tmp_path, capsys):
    _, checkpoint = colour
    video = write_video(tmp_path / "v.mp4", frames=red_then_blue(1), fps=8)
    (tmp_path / "folder.png").mkdir()
    cases = [(["--timeline", "--window", "0"], "--window must be above 0, not 0"),
             (["--timeline", "--stride", "-1"], "--stride must be above 0, not -1"),
             (["--window", "2"], "--window goes with --timeline"),
             (["--timeline", "--views", "2x1"], "each window is one clip"),
             (["--timeline", "--decoder", "decord"], "--timeline decodes each video once"),
             (["--timeline", "--plot", tmp_path / "chart.jpg"], "give a .png file name"),
             (["--timeline", "--plot", tmp_path / "folder.png"], "is a folder")]
    for extra, message in cases:
        code, stdout, stderr = run_cli(["predict", video, "-c", checkpoint, *extra], capsys)
        assert code != 0 and message in stderr and "Traceback" not in stderr, (extra, stderr)
    assert not (tmp_path / "chart.jpg").exists()


def test_predictor_timeline_json_is_the_demo_pages_contract(colour, tmp_path):
    _, checkpoint = colour
    video = write_video(tmp_path / "short.mp4", frames=colour_frames(1, seed=5), fps=8)  # 1 s: one window
    predictor = Predictor.from_checkpoint(checkpoint, amp="off")
    out = predictor.timeline(video, classes=None, window=2.0, stride=1.0, top_k=5).to_json()
    assert out["video"] == str(video) and len(out["windows"]) == 1
    (window,) = out["windows"]
    assert (window["start"], window["end"]) == (0.0, 1.0) and window["top"][0]["label"] == "something green"
    assert len(window["top"]) == 3  # top-5 of 3 classes
    with pytest.raises(Exception, match="cannot read video"):
        predictor.timeline(write_text_as_video(tmp_path / "bad.mp4"))


# --------------------------------------------------------------------------------------------------
# embed --timeline and search
# --------------------------------------------------------------------------------------------------


def test_embed_timeline_stores_window_vectors_and_search_returns_start_and_end(colour, tmp_path, capsys):
    _, checkpoint = colour
    video = write_lossless(tmp_path / "long.mp4", red_then_blue())
    output = tmp_path / "long.safetensors"
    code, stdout, stderr = run_cli(["embed", video, "-c", checkpoint, "--timeline", "--window", "2", "--stride", "2",
                                    "-o", output, "--amp", "off", "--json"], capsys)
    assert code == 0, stderr
    assert json.loads(stdout)["windows"] == 4 and json.loads(stdout)["videos"] == 1

    # The vectors are embed's own on each window cut into a file of its own.
    from mbgf_cli.embeddings import read_embeddings

    stored = read_embeddings(output)
    assert stored.windows == [[0, 2], [2, 4], [4, 6], [6, 8]] and stored.videos == [str(video)] * 4
    frames = red_then_blue()
    cuts = [str(write_lossless(tmp_path / f"w{k}.mp4", frames[16 * k:16 * (k + 1)])) for k in range(4)]
    direct = Predictor.from_checkpoint(checkpoint, amp="off").embed(cuts, decoder="pyav", workers=0)
    assert torch.allclose(stored.vectors, direct.vectors, atol=1e-5)

    out = json.loads(run_cli(["search", output, "something blue", "-k", "4", "--json"], capsys)[1])
    assert [(r["video"], r["start"], r["end"]) for r in out["results"]][0][0] == str(video)
    assert {(r["start"], r["end"]) for r in out["results"][:2]} == {(4, 6), (6, 8)}  # the blue half first
    code, stdout, _ = run_cli(["search", output, "--like", video, "-k", "2"], capsys)
    assert code == 0 and "start" in stdout

    # The same command: up to date; other windows: refused, the file kept.
    before = output.read_bytes()
    code, stdout, stderr = run_cli(["embed", video, "-c", checkpoint, "--timeline", "--window", "2", "--stride", "2",
                                    "-o", output, "--amp", "off"], capsys)
    assert code == 0 and "up to date" in stdout
    code, _, stderr = run_cli(["embed", video, "-c", checkpoint, "--timeline", "-o", output], capsys)
    assert code != 0 and "other windows" in stderr and output.read_bytes() == before

    # The video changed since (its content stamps): made again, as a fresh run would.
    write_lossless(video, red_then_blue()[::-1])
    code, stdout, stderr = run_cli(["embed", video, "-c", checkpoint, "--timeline", "--window", "2", "--stride", "2",
                                    "-o", output, "--amp", "off", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["up_to_date"] is False, stderr
    remade = read_embeddings(output)
    assert remade.windows == stored.windows and remade.meta["content"] != stored.meta["content"]
    assert not torch.allclose(remade.vectors, stored.vectors, atol=1e-3)


def test_plain_embed_files_still_search_without_windows(colour, tmp_path, capsys):
    root, checkpoint = colour
    output = tmp_path / "plain.safetensors"
    assert run_cli(["embed", root / "val.txt", "-c", checkpoint, "-o", output, "--workers", "0"], capsys)[0] == 0
    out = json.loads(run_cli(["search", output, "something red", "-k", "2", "--json"], capsys)[1])
    assert all(set(r) == {"rank", "video", "similarity"} for r in out["results"])


# --------------------------------------------------------------------------------------------------
# The README section, command by command as written
# --------------------------------------------------------------------------------------------------

README_LONG_VIDEO = '''\
import numpy as np
from mbgf_cli.data import synthetic

rng = np.random.default_rng(7)  # three actions of 2 s each, one after another
parts = [synthetic.render(kind, rng, 32, 64) for kind in ("vertical", "grow", "brighten")]
synthetic.encode("long.mp4", np.concatenate(parts), fps=16)
'''

README_COMMANDS = [
    "mbgf predict long.mp4 --checkpoint runs/synthetic-tiny-clip-mbgf/best --timeline --window 2 --stride 1 --top-k 2",
    "mbgf predict long.mp4 -c runs/synthetic-tiny-clip-mbgf/best --timeline --json --csv long.csv --plot long.png",
    "mbgf embed long.mp4 -c runs/synthetic-tiny-clip-mbgf/best --timeline -o long.safetensors",
    'mbgf search long.safetensors "something growing" --top-k 3',
]

README_PYTHON = '''\
from mbgf_cli.inference import Predictor

predictor = Predictor.from_checkpoint("runs/synthetic-tiny-clip-mbgf/best")
timeline = predictor.timeline("long.mp4", window=2.0, stride=1.0, top_k=3)
timeline.spans, timeline.probs, timeline.to_json()["windows"][0]
'''


def test_readme_timeline_section_as_written(colour, tmp_path, monkeypatch, capsys):
    import shlex

    _, checkpoint = colour
    monkeypatch.chdir(tmp_path)
    shutil.copytree(checkpoint, tmp_path / "runs" / "synthetic-tiny-clip-mbgf" / "best")
    exec(compile(README_LONG_VIDEO, "README", "exec"), {})
    outputs = []
    for command in README_COMMANDS:
        args = shlex.split(command)
        assert args[0] == "mbgf"
        code, stdout, stderr = run_cli(args[1:], capsys)
        assert code == 0, (command, stderr)
        outputs.append(stdout)
    assert "4.00" in outputs[0] and "6.00" in outputs[0]  # five windows over 6 s: the last ends at 6
    assert [(w["start"], w["end"]) for w in json.loads(outputs[1])["videos"][0]["windows"]] == \
        [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
    assert (tmp_path / "long.csv").is_file() and (tmp_path / "long.png").read_bytes()[:4] == b"\x89PNG"
    assert "5 windows" in outputs[2] and "start" in outputs[3]
    scope = {}
    exec(compile(README_PYTHON, "README", "exec"), scope)
    assert scope["timeline"].probs.shape == (5, len(CLASS_NAMES))

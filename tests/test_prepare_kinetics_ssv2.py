"""`mbgf prepare-data k600` and `ssv2` end to end on tiny files in the published formats, and the
Kinetics CSV refusals that name the file, the line or the missing column."""

import json
import shlex

import av
import numpy as np
import pytest
from typer.testing import CliRunner
from videos import write_video

from mbgf_cli.app import app
from mbgf_cli.data import read_labels, read_video_list
from mbgf_cli.errors import UserError
from tests.test_prepare_data import invoke

runner = CliRunner()
HEADER = "label,youtube_id,time_start,time_end,split\n"
# The README's lines (notes/protocols-readme.md), run as written.
README_SSV2 = "mbgf prepare-data ssv2 --annotations labels --videos 20bn-something-something-v2 -o data/ssv2 --check"
README_K600 = "mbgf prepare-data k600 --annotations kinetics600 --videos k600 -o data/k600"




def refusal(*args) -> str:
    """The one-line message of a refused command (mbgf prints a UserError as that line)."""
    result = runner.invoke(app, ["prepare-data", *map(str, args)])
    assert isinstance(result.exception, UserError), result.output
    return " ".join(str(result.exception).split())


def write_webm(path, num_frames=8, size=(32, 32)):
    """A VP9 webm, as Something-Something v2 ships its videos."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=12)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for t in range(num_frames):
            frame = np.full((*size, 3), 20 + 25 * t, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def ssv2(tmp_path):
    ann, videos = tmp_path / "labels", tmp_path / "20bn-something-something-v2"
    ann.mkdir()
    # labels.json: template -> id (a string), in the release's format; not in id order on purpose.
    (ann / "labels.json").write_text(json.dumps({
        "Attaching something to something": "1",
        "Approaching something with your camera": "0",
        "Bending something so that it deforms": "2",
    }))

    def entry(video_id, template, *things):
        label = template
        for thing in things:
            label = label.replace("[something]", thing, 1)
        return {"id": video_id, "label": label, "template": template, "placeholders": list(things)}

    (ann / "train.json").write_text(json.dumps([
        entry("78687", "Attaching [something] to [something]", "magnet", "fridge"),
        entry("42326", "Approaching [something] with your camera", "cup"),
        entry("100904", "Bending [something] so that it deforms", "spoon"),
    ]))
    (ann / "validation.json").write_text(json.dumps([
        entry("74225", "Bending [something] so that it deforms", "straw"),
        entry("116154", "Approaching [something] with your camera", "lamp"),  # not downloaded
    ]))
    (ann / "test.json").write_text(json.dumps([{"id": "1420"}]))
    for video_id in ("78687", "42326", "100904", "74225"):
        write_webm(videos / f"{video_id}.webm")
    return ann, videos


def test_ssv2_end_to_end_with_check(tmp_path, ssv2, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "data" / "ssv2"
    printed = " ".join(invoke(*shlex.split(README_SSV2)[2:]).output.split())
    assert "3 classes; lists in data/ssv2/train.txt and data/ssv2/val.txt" in printed
    assert "1 missing videos listed in data/ssv2/missing.txt" in printed
    assert (out / "rejected.txt").read_text() == ""  # --check decoded every listed webm
    assert read_labels(out / "labels.csv") == ["Approaching something with your camera",
                                               "Attaching something to something",
                                               "Bending something so that it deforms"]
    assert read_video_list(out / "train.txt", 3) == [("78687.webm", 1), ("42326.webm", 0), ("100904.webm", 2)]
    assert read_video_list(out / "val.txt", 3) == [("74225.webm", 2)]
    assert "validation.json:entry 2 116154.webm" in (out / "missing.txt").read_text()
    with av.open(str(out / "videos" / "74225.webm")) as container:  # the listed video, through the link
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_ssv2_template_not_in_labels_names_the_entry(tmp_path, ssv2):
    ann, videos = ssv2
    entries = json.loads((ann / "train.json").read_text())
    entries[1]["template"] = "Dropping [something]"
    (ann / "train.json").write_text(json.dumps(entries))
    message = refusal("ssv2", "--annotations", ann, "--videos", videos, "--output", tmp_path / "o")
    assert message.endswith("train.json: entry 2 (id 42326): template 'Dropping [something]' is not a class of labels.json")
    assert not (tmp_path / "o").exists()


def test_k600_uses_the_shipped_ids(tmp_path, monkeypatch):
    ann, videos = tmp_path / "kinetics600", tmp_path / "k600"
    ann.mkdir()
    (ann / "train.csv").write_text(HEADER + "acting in play,aaaaaaaaaaa,5,15,train\nabseiling,bbbbbbbbbbb,0,10,train\n")
    (ann / "validate.csv").write_text(HEADER + "zumba,ccccccccccc,30,40,validate\n")
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\nddddddddddd,0,10,test\n")
    write_video(videos / "train" / "aaaaaaaaaaa_000005_000015.mp4")
    write_video(videos / "train" / "bbbbbbbbbbb_000000_000010.mp4")
    write_video(videos / "val" / "ccccccccccc_000030_000040.mp4")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "data" / "k600"
    printed = " ".join(invoke(*shlex.split(README_K600)[2:]).output.split())
    assert "600 classes" in printed and "note: class ids: the shipped Kinetics-600 list" in printed
    names = read_labels(out / "labels.csv")
    assert names[:2] == ["abseiling", "acting in play"] and names[-1] == "zumba"
    assert read_video_list(out / "train.txt", 600) == [("train/aaaaaaaaaaa_000005_000015.mp4", 1),
                                                       ("train/bbbbbbbbbbb_000000_000010.mp4", 0)]
    assert read_video_list(out / "val.txt", 600) == [("val/ccccccccccc_000030_000040.mp4", 599)]


@pytest.mark.parametrize("command", ["k400", "k600"])
def test_kinetics_csv_with_a_renamed_column_names_it_and_the_columns_found(tmp_path, command):
    ann, videos = tmp_path / "ann", tmp_path / "v"
    ann.mkdir()
    (ann / "train.csv").write_text("label,video_id,time_start,time_end,split\nabseiling,a,0,10,train\n")
    write_video(videos / "a_000000_000010.mp4")
    message = refusal(command, "--annotations", ann, "--videos", videos, "--output", tmp_path / "o")
    assert message == (f"{ann / 'train.csv'}:1: no column 'youtube_id' (the Kinetics header is "
                       "label,youtube_id,time_start,time_end,split); the columns found are label, video_id, "
                       "time_start, time_end, split")
    assert not (tmp_path / "o").exists()


def test_kinetics_csv_bad_row_names_its_line(tmp_path):
    ann, videos = tmp_path / "ann", tmp_path / "v"
    ann.mkdir()
    (ann / "train.csv").write_text(HEADER + "abseiling,a,0,10,train\n\nabseiling,b,zero,10,train\n")
    write_video(videos / "a_000000_000010.mp4")
    message = refusal("k400", "--annotations", ann, "--videos", videos, "--output", tmp_path / "o")
    assert message == f"{ann / 'train.csv'}:4: time_start/time_end must be numbers"

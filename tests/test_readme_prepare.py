"""The README's prepare-data lines for UCF101, HMDB51 and Kinetics-400, run as written on tiny stand-ins
laid out under the README's names (official annotation formats, as tests/test_prepare_data.py writes
them); the Kinetics-400 stand-in is then evaluated by the README's eval and predict lines: a tiny mbgf checkpoint
at runs/k400/best and a tiny X-CLIP file named xclip_b16_8f.pth; and ``mbgf train --config`` replays a tiny
run made on it with one option changed."""

import json
import shutil
from pathlib import Path

import pytest
import reference_models as ref

from mbgf_cli.data.annotations import read_labels, read_video_list
from tests.readme_support import readme_words, tiny_synthetic_checkpoint
from tests.test_interop import DIMS, save_xclip_checkpoint, xclip_config
from tests.test_train_support import run_cli
from tests.videos import write_video

LABELS = Path(__file__).resolve().parents[1] / "labels"
# A tiny model, one epoch of one step: the run the README's replay line starts from.
TINY_TRAIN = ["--model", "tiny", "--frames", "4", "--input-size", "32", "--batch-size", "2", "--total-batch", "2",
              "--epochs", "1", "--warmup-epochs", "0", "--workers", "0", "--no-plot"]
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run_line(capsys, line: str, *extra: str) -> str:
    code, stdout, stderr = run_cli([*readme_words(line), *extra], capsys)
    assert code == 0, stderr
    return stdout


def test_readme_prepare_data_ucf101(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 YoYo\r\n")
    (splits / "trainlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                                             b"YoYo/v_YoYo_g08_c01.avi 2\r\n")
    (splits / "testlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nYoYo/v_YoYo_g01_c01.avi\r\n")
    for name in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "YoYo/v_YoYo_g08_c01", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01",
                 "YoYo/v_YoYo_g01_c01"):
        write_video(tmp_path / "UCF-101" / f"{name}.avi", num_frames=4)
    run_line(capsys, "mbgf prepare-data ucf101 --splits ucfTrainTestlist --videos UCF-101 --split 1 -o data/ucf101")
    out = tmp_path / "data" / "ucf101"
    assert read_labels(out / "labels.csv") == ["Apply Eye Makeup", "Yo Yo"]
    assert read_video_list(out / "val.txt", 2) == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0),
                                                   ("YoYo/v_YoYo_g01_c01.avi", 1)]


def test_readme_prepare_data_hmdb51(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for name in ("brush_hair", "wave"):
        (splits / f"{name}_test_split1.txt").write_text(f"{name}_a.avi 1 \n{name}_b.avi 2 \n")
        for v in "ab":
            write_video(tmp_path / "hmdb51" / name / f"{name}_{v}.avi", num_frames=4)
    run_line(capsys, "mbgf prepare-data hmdb51 --splits testTrainMulti_7030_splits --videos hmdb51 --split 1 "
                     "-o data/hmdb51")
    out = tmp_path / "data" / "hmdb51"
    assert read_labels(out / "labels.csv") == ["brush hair", "wave"]
    assert read_video_list(out / "train.txt", 2) == [("brush_hair/brush_hair_a.avi", 0), ("wave/wave_a.avi", 1)]
    assert read_video_list(out / "val.txt", 2) == [("brush_hair/brush_hair_b.avi", 0), ("wave/wave_b.avi", 1)]


def k400_stand_in(root, capsys) -> tuple[str, ...]:
    """The README's Kinetics-400 prepare-data line run in ``root`` (the current folder) on two classes, one
    train video each (a third one missing) and two val videos; returns the val videos' names."""
    annotations = root / "kinetics400"
    annotations.mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (annotations / "train.csv").write_text(header + "abseiling,--07WQ2iBlw,1,11,train\n"
                                           "air drumming,gone0000001,0,10,train\nair drumming,bbbbbbbbbbb,0,10,train\n")
    (annotations / "validate.csv").write_text(header + "abseiling,abc_DEF-123,100,110,val\n"
                                              "air drumming,-0oCh1tLbT4,16,26,val\n")
    (annotations / "test.csv").write_text("youtube_id,time_start,time_end,split\nxyz,0,10,test\n")
    write_video(root / "k400_videos" / "train" / "abseiling" / "--07WQ2iBlw_000001_000011.mp4")
    write_video(root / "k400_videos" / "train" / "air_drumming" / "bbbbbbbbbbb_000000_000010.mp4")
    val_names = ("abc_DEF-123_000100_000110", "-0oCh1tLbT4_000016_000026")
    for name in val_names:
        write_video(root / "k400_videos" / "val" / f"{name}.mp4", num_frames=8, size=(32, 32))
    run_line(capsys, "mbgf prepare-data k400 --annotations kinetics400 --videos k400_videos -o data/k400")
    return val_names


def test_readme_prepare_data_k400_then_eval_a_checkpoint_and_a_published_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    val_names = k400_stand_in(tmp_path, capsys)
    out = tmp_path / "data" / "k400"
    names = read_labels(out / "labels.csv")
    assert len(names) == 400 and "gone0000001_000000_000010" in (out / "missing.txt").read_text()
    assert len(read_video_list(out / "train.txt", 400)) == 2 and len(read_video_list(out / "val.txt", 400)) == 2

    tiny_synthetic_checkpoint(tmp_path / "runs" / "k400" / "best", names=names)
    result = json.loads(run_line(capsys, "mbgf eval --checkpoint runs/k400/best --dataset k400 --root data/k400 "
                                         "--views 4x3", "--json"))
    assert result["videos"] == 2 and result["views"] == "4x3"

    save_xclip_checkpoint(ref.random_xclip_state_dict(DIMS, frames=8, seed=20), tmp_path / "xclip_b16_8f.pth",
                          xclip_config(frames=8))
    result = json.loads(run_line(capsys, "mbgf eval --checkpoint xclip_b16_8f.pth --dataset k400 --root data/k400",
                                 "--json"))
    assert result["videos"] == 2 and 0 <= result["top1"] <= 1

    (tmp_path / "labels").mkdir()
    shutil.copy(LABELS / "kinetics_400_labels.csv", tmp_path / "labels")
    (tmp_path / "list.txt").write_text("".join(f"k400_videos/val/{name}.mp4\n" for name in val_names))
    run_line(capsys, "mbgf predict list.txt -c xclip_b16_8f.pth --labels labels/kinetics_400_labels.csv --views 4x3 "
                     "--csv top5.csv")
    rows = (tmp_path / "top5.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 5 and all(f"k400_videos/val/{name}.mp4" in "".join(rows) for name in val_names)


def test_readme_train_config_replays_a_run_with_one_option_changed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    k400_stand_in(tmp_path, capsys)
    code, _, stderr = run_cli(["train", "--dataset", "k400", "--root", "data/k400", "-o", "runs/k400", *TINY_TRAIN],
                              capsys)
    assert code == 0, stderr
    run_line(capsys, "mbgf train --config runs/k400/config.json --lr 4e-6 -o runs/k400-lr4e-6")
    original = json.loads((tmp_path / "runs" / "k400" / "config.json").read_text())
    replay = json.loads((tmp_path / "runs" / "k400-lr4e-6" / "config.json").read_text())
    assert replay["lr"] == 4e-6 and replay["out"] == "runs/k400-lr4e-6"
    assert {k: v for k, v in replay.items() if k not in ("lr", "out")} == \
        {k: v for k, v in original.items() if k not in ("lr", "out")}
    assert (tmp_path / "runs" / "k400-lr4e-6" / "best" / "model.safetensors").is_file()

"""The published HMDB51 lists end to end on generated data: an HMDB51-like download (the videos the
published lists name, one val video per class, the official split-file format) prepared with `mbgf
prepare-data hmdb51`, then `mbgf fewshot --split-file` on ViFi-CLIP's `train1_few_shot_2.txt` and
`mbgf base2novel --dataset hmdb51` on its published base/novel halves and 16-shot list (seed 1)."""

import json
import shlex
import shutil
from pathlib import Path

import pytest
from videos import write_video

import labels
from mbgf_cli import app as app_module
from mbgf_cli.data import read_labels, read_video_list

DATA = Path(__file__).parent / "data"
# The README's lines (notes/protocols-readme.md), run as written with a tiny model for one epoch.
README_FEWSHOT = "mbgf fewshot --dataset hmdb51 --root data/hmdb51 --split-file hmdb_splits/train1_few_shot_2.txt"
README_B2N = "mbgf base2novel --dataset hmdb51 --root data/hmdb51 --variants clip clip+mbgf"
TINY = ["--model", "tiny", "--frames", "4", "--input-size", "48", "--workers", "0", "--epochs", "1",
        "--batch-size", "8", "--total-batch", "8"]


def run_mbgf(*args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        app_module.main([str(a) for a in args])
    return exit_info.value.code


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    base = tmp_path_factory.mktemp("hmdb")
    names = read_labels(labels.label_file("hmdb51"))
    folders = [n.replace(" ", "_") for n in names]
    base_names = read_labels(labels.protocol_file("base2novel/hmdb_51_base_labels.csv"))
    train = {}  # video -> class folder
    for line in (DATA / "vificlip" / "hmdb_train1_few_shot_2.txt").read_text().splitlines():
        video, label = line.split()
        train[video] = folders[int(label)]
    for line in labels.protocol_file("base2novel/hmdb_fs_base_s1_train.txt").read_text().splitlines():
        video, label = line.split()
        train[video] = base_names[int(label)].replace(" ", "_")
    splits, raw = base / "testTrainMulti_7030_splits", base / "hmdb51_org"
    splits.mkdir()
    for folder in folders:
        videos = [v for v, f in train.items() if f == folder]
        lines = [f"{v} 1" for v in videos] + [f"val_{folder}_0.avi 2", f"unused_{folder}.avi 0"]
        (splits / f"{folder}_test_split1.txt").write_text("\n".join(lines) + "\n")
        for video in [*videos, f"val_{folder}_0.avi"]:
            write_video(raw / folder / video, num_frames=4, size=(32, 32))
    assert run_mbgf("prepare-data", "hmdb51", "--splits", splits, "--videos", raw, "-o", base / "data" / "hmdb51",
                    "--workers", 1) == 0
    # HMDB51 names some videos '#...': videos, not comments.
    assert "ride_bike/#437_How_To_Ride_A_Bike_ride_bike_f_cm_np1_ba_med_1.avi 30" in (
        base / "data" / "hmdb51" / "train.txt").read_text().splitlines()
    return base


def test_fewshot_on_vificlips_published_list(hmdb, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(hmdb)
    (hmdb / "hmdb_splits").mkdir()
    shutil.copy(DATA / "vificlip" / "hmdb_train1_few_shot_2.txt", hmdb / "hmdb_splits" / "train1_few_shot_2.txt")
    out = hmdb / "runs" / "fewshot-hmdb51"
    capsys.readouterr()
    assert run_mbgf(*shlex.split(README_FEWSHOT)[1:], "--variants", "clip", *TINY, "--json") == 0, \
        capsys.readouterr().err
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert (run["shots"], run["seed"], run["videos"]) == (2, "vificlip1", 51)
    trained = read_video_list(out / "splits" / "K2_seedvificlip1.txt", 51)
    published = [line.split() for line in (DATA / "vificlip" / "hmdb_train1_few_shot_2.txt").read_text().splitlines()]
    assert [(Path(p).name, c) for p, c in trained] == [(v, int(c)) for v, c in published]


def test_base2novel_on_the_published_hmdb51_halves(hmdb, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(hmdb)
    out = hmdb / "runs" / "base2novel-hmdb51"
    capsys.readouterr()
    assert run_mbgf(*shlex.split(README_B2N)[1:], "--seeds", 1, *TINY, "--json") == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == {"base": 26, "novel": 25}
    assert len(read_video_list(out / "splits" / "K16_seed1.txt", 26)) == 416
    assert read_labels(out / "lists" / "novel_val_labels.csv") == read_labels(
        labels.protocol_file("base2novel/hmdb_51_novel_labels.csv"))
    assert [(r["variant"], r["seed"]) for r in report["runs"]] == [("clip", "1"), ("clip+mbgf", "1")]
    assert all(json.loads((Path(r["run_dir"]) / "novel.json").read_text())["videos"] == 25 for r in report["runs"])

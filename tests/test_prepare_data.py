"""`mbgf prepare-data`: every subcommand on a tiny fake official split set, and --check, --resize, --pack."""

import json
import subprocess
import sys
import tarfile

import pytest
from typer.testing import CliRunner
from videos import write_image_as_video, write_text_as_video, write_truncated, write_video

from mbgf_cli.app import app
from mbgf_cli.data import VideoDataset, open_source, read_labels, read_video_list
from mbgf_cli.data.readers import open_video

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, ["prepare-data", *map(str, args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def listed(out, name, num_classes):
    return read_video_list(out / name, num_classes)


# ---- UCF101


@pytest.fixture
def ucf(tmp_path):
    splits, videos = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101"
    splits.mkdir()
    # The official files: CRLF line ends, 1-based ids, the HandstandPushups / v_HandStandPushups spelling.
    (splits / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n")
    (splits / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        b"HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
        b"YoYo/v_YoYo_g08_c01.avi 3\r\n"
        b"YoYo/v_YoYo_g09_c01.avi 3\r\n"
    )
    (splits / "testlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nHandstandPushups/v_HandStandPushups_g01_c01.avi\r\nYoYo/v_YoYo_g01_c01.avi\r\n"
    )
    for rel in ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "handstandpushups/v_HandStandPushups_g08_c01.avi",
                "YoYo/v_YoYo_g08_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                "HandstandPushups/v_HandStandPushups_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]:
        write_video(videos / rel, num_frames=8, size=(32, 64))
    return splits, videos


def test_ucf101(tmp_path, ucf):
    splits, videos = ucf
    out = tmp_path / "out"
    result = invoke("ucf101", "--splits", splits, "--videos", videos, "--out", out, "--workers", 1)
    assert read_labels(out / "labels.csv") == ["Apply Eye Makeup", "Handstand Pushups", "Yo Yo"]
    train = listed(out, "train.txt", 3)
    assert train == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                     ("handstandpushups/v_HandStandPushups_g08_c01.avi", 1), ("YoYo/v_YoYo_g08_c01.avi", 2)]
    assert [label for _, label in listed(out, "val.txt", 3)] == [0, 1, 2]
    assert "testlist" not in (out / "missing.txt").read_text()
    assert (out / "missing.txt").read_text().startswith(f"{splits / 'trainlist01.txt'}:4 YoYo/v_YoYo_g09_c01.avi")
    assert (out / "videos").resolve() == videos.resolve()
    assert "missing" in result.output and "train" in result.output
    ds = VideoDataset(out, "train.txt", 3, frames=4, input_size=32)
    assert ds[1][0].shape == (4, 3, 32, 32) and ds.failures() == []


def test_ucf101_errors_name_file_and_line(tmp_path, ucf):
    splits, videos = ucf
    (splits / "trainlist02.txt").write_text("ApplyEyeMakeup/v_a.avi 7\n")
    (splits / "testlist02.txt").write_text("")
    with pytest.raises(Exception) as e:
        invoke("ucf101", "--splits", splits, "--videos", videos, "--out", tmp_path / "o", "--split", 2)
    assert f"{splits / 'trainlist02.txt'}:1: label '7' out of range 1..3" in str(e.value)
    # Through the real entry point: one line on stderr, exit status 2, no traceback.
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n3 YoYo\n")
    proc = subprocess.run([sys.executable, "-m", "mbgf_cli", "prepare-data", "ucf101", "--splits", str(splits),
                           "--videos", str(videos), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{splits / 'classInd.txt'}:2: class ids must run 1, 2, 3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_repeated_annotations_are_listed_once(tmp_path, ucf):
    splits, videos = ucf
    with open(splits / "trainlist01.txt", "ab") as f:
        f.write(b"YoYo/v_YoYo_g08_c01.avi 3\r\n")
    with open(splits / "testlist01.txt", "ab") as f:
        f.write(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\r\n")  # a train video again, in test
    summary = json.loads(invoke("ucf101", "--splits", splits, "--videos", videos, "-o", tmp_path / "out", "--workers",
                                1, "--json").stdout)
    train, val = listed(tmp_path / "out", "train.txt", 3), listed(tmp_path / "out", "val.txt", 3)
    assert (len(train), len(val)) == (3, 3) and not {rel for rel, _ in train} & {rel for rel, _ in val}
    assert f"{splits / 'trainlist01.txt'}:5 repeats {splits / 'trainlist01.txt'}:3 (YoYo/v_YoYo_g08_c01.avi); " \
        "listed once" in summary["notes"]
    assert any(note.startswith(f"{splits / 'testlist01.txt'}:4 repeats") for note in summary["notes"])


# ---- HMDB51


def test_hmdb51(tmp_path):
    splits, videos = tmp_path / "testTrainMulti_7030_splits", tmp_path / "hmdb51_org"
    splits.mkdir()
    for cls in ("brush_hair", "wave", "climb_stairs"):
        (splits / f"{cls}_test_split1.txt").write_text(f"{cls}_a.avi 1 \n{cls}_b.avi 2 \n{cls}_c.avi 0 \n")
        (splits / f"{cls}_test_split2.txt").write_text(f"{cls}_a.avi 2 \n{cls}_b.avi 1 \n{cls}_c.avi 1 \n")
        for v in "abc":
            write_video(videos / cls / f"{cls}_{v}.avi", num_frames=8)
    out = tmp_path / "out"
    invoke("hmdb51", "--splits", splits, "--videos", videos, "--out", out, "--split", 1, "--workers", 1)
    names = read_labels(out / "labels.csv")
    assert names == ["brush hair", "climb stairs", "wave"]  # a subset of the classes: sorted
    assert listed(out, "train.txt", 3) == [("brush_hair/brush_hair_a.avi", 0), ("climb_stairs/climb_stairs_a.avi", 1),
                                           ("wave/wave_a.avi", 2)]
    assert sorted(listed(out, "val.txt", 3)) == [("brush_hair/brush_hair_b.avi", 0),
                                                 ("climb_stairs/climb_stairs_b.avi", 1), ("wave/wave_b.avi", 2)]
    out2 = tmp_path / "out2"
    invoke("hmdb51", "--splits", splits, "--videos", videos, "--out", out2, "--split", 2, "--workers", 1)
    assert len(listed(out2, "train.txt", 3)) == 6 and len(listed(out2, "val.txt", 3)) == 3
    (splits / "wave_test_split3.txt").write_text("wave_a.avi 5\n")
    with pytest.raises(Exception, match=r"wave_test_split3.txt:1: expected '<video>.avi <0\|1\|2>'"):
        invoke("hmdb51", "--splits", splits, "--videos", videos, "--out", tmp_path / "o3", "--split", 3)


# ---- Kinetics-400


def test_k400_with_shipped_ids_and_missing_report(tmp_path):
    ann, videos = tmp_path / "annotations", tmp_path / "k400"
    ann.mkdir()
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,--07WQ2iBlw,1,11,train\n"
        '"air drumming",-0oCh1tLbT4,16,26,train\n'
        "air drumming,gone0000001,0,10,train\n"
    )
    (ann / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc_DEF-123,100,110,val\n")
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\nxyz,0,10,test\n")
    write_video(videos / "train" / "abseiling" / "--07WQ2iBlw_000001_000011.mp4")
    write_video(videos / "train" / "air_drumming" / "-0oCh1tLbT4_000016_000026.mkv")
    write_video(videos / "val" / "abc_DEF-123_000100_000110.mp4")
    out = tmp_path / "out"
    result = invoke("k400", "--annotations", ann, "--videos", videos, "--out", out, "--workers", 1, "--json")
    summary = json.loads(result.stdout)
    assert summary["missing"] == {"train": 1, "val": 0} and summary["classes"] == 400
    names = read_labels(out / "labels.csv")
    assert names[0] == "abseiling" and names[1] == "air drumming" and len(names) == 400
    assert listed(out, "train.txt", 400) == [("train/abseiling/--07WQ2iBlw_000001_000011.mp4", 0),
                                             ("train/air_drumming/-0oCh1tLbT4_000016_000026.mkv", 1)]
    assert listed(out, "val.txt", 400) == [("val/abc_DEF-123_000100_000110.mp4", 0)]
    assert "gone0000001_000000_000010" in (out / "missing.txt").read_text()


def test_k400_other_label_names_are_sorted(tmp_path):
    ann, videos = tmp_path / "ann", tmp_path / "v"
    ann.mkdir()
    (ann / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nzeta,a,0,10,train\nalpha,b,0,10,train\n")
    write_video(videos / "a_000000_000010.mp4")
    write_video(videos / "b_000000_000010.mp4")
    invoke("k400", "--annotations", ann, "--videos", videos, "--out", tmp_path / "o", "--workers", 1)
    assert read_labels(tmp_path / "o" / "labels.csv") == ["alpha", "zeta"]
    assert listed(tmp_path / "o", "train.txt", 2) == [("a_000000_000010.mp4", 1), ("b_000000_000010.mp4", 0)]


# ---- one folder per class, and the shared options


@pytest.fixture
def class_folders(tmp_path):
    videos = tmp_path / "my_videos"
    for i in range(5):
        write_video(videos / "pouring_water" / f"p{i}.mp4", num_frames=8, size=(32, 64))
    for i in range(3):
        write_video(videos / "opening_door" / "sub" / f"o{i}.mp4", num_frames=8, size=(32, 64))
    (videos / "opening_door" / "notes.txt").write_text("not a video")
    return videos


def test_folder_split_is_per_class_and_deterministic(tmp_path, class_folders):
    invoke("folder", "--videos", class_folders, "--out", tmp_path / "a", "--val-fraction", 0.4, "--seed", 1)
    invoke("folder", "--videos", class_folders, "--out", tmp_path / "b", "--val-fraction", 0.4, "--seed", 1)
    invoke("folder", "--videos", class_folders, "--out", tmp_path / "c", "--val-fraction", 0.4, "--seed", 2)
    assert read_labels(tmp_path / "a" / "labels.csv") == ["opening door", "pouring water"]
    train, val = listed(tmp_path / "a", "train.txt", 2), listed(tmp_path / "a", "val.txt", 2)
    assert len(train) == 5 and len(val) == 3
    assert sorted(label for _, label in val) == [0, 1, 1]  # round(3 * .4) = 1 and round(5 * .4) = 2
    assert all(rel.startswith("opening_door/sub/") for rel, label in train + val if label == 0)
    assert (tmp_path / "a" / "val.txt").read_text() == (tmp_path / "b" / "val.txt").read_text()
    assert len(listed(tmp_path / "c", "val.txt", 2)) == 3


def test_folder_split_depends_on_the_seed_and_not_on_other_classes(tmp_path):
    from mbgf_cli.data.official import read_folder

    for i in range(20):  # listing needs no decoding: empty files will do
        (tmp_path / "v" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "v" / "a" / f"{i:02d}.mp4").touch()
    vals = {seed: sorted(read_folder(tmp_path / "v", 0.25, seed).val) for seed in range(3)}
    assert all(len(v) == 5 for v in vals.values()) and len({tuple(v) for v in vals.values()}) == 3
    (tmp_path / "v" / "b").mkdir()
    (tmp_path / "v" / "b" / "x.mp4").touch()
    with_b = read_folder(tmp_path / "v", 0.25, 0)
    assert sorted(rel for rel, label in with_b.val if label == 0) == [rel for rel, _ in vals[0]]


def test_check_rejects_unreadable_videos_with_reasons(tmp_path, class_folders):
    write_truncated(class_folders / "pouring_water" / "cut.mp4")
    write_text_as_video(class_folders / "opening_door" / "page.mp4")
    out = tmp_path / "out"
    result = invoke("folder", "--videos", class_folders, "--out", out, "--check", "--workers", 2)
    assert "2 videos rejected" in result.output and "cannot open" in result.output
    rejected = (out / "rejected.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in rejected] == ["opening_door/page.mp4", "pouring_water/cut.mp4"]
    every = [rel for rel, _ in listed(out, "train.txt", 2) + listed(out, "val.txt", 2)]
    assert len(every) == 8 and "pouring_water/cut.mp4" not in every
    # Idempotent: the same command again changes nothing (results come from the check cache).
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}
    again = invoke("folder", "--videos", class_folders, "--out", out, "--check", "--workers", 2, "--json")
    assert json.loads(again.stdout)["rejected"] == 2
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file() and p.name in before}
    assert {k: v for k, v in after.items() if not k.startswith(".")} == {k: v for k, v in before.items() if not k.startswith(".")}


def test_resize_and_pack_tar(tmp_path, class_folders):
    write_truncated(class_folders / "pouring_water" / "cut.mp4")
    out = tmp_path / "out"
    result = invoke("folder", "--videos", class_folders, "--out", out, "--resize", 16, "--pack", "tar", "--workers", 2,
                    "--json")
    summary = json.loads(result.stdout)
    assert summary["rejected"] == 1 and summary["packed"] and summary["train"] + summary["val"] == 8
    assert not (out / "videos").exists() and (out / "videos.tar").is_file()
    with tarfile.open(out / "videos.tar") as tar:
        assert all(m.isfile() and not m.name.startswith(("/", "..")) for m in tar)
    source = open_source(out)
    rel = listed(out, "train.txt", 2)[0][0]
    frames = open_video(source.read(rel)).get([0, 7])
    assert frames.shape == (2, 16, 32, 3)  # 32x64 -> short side 16
    ds = VideoDataset(out, "val.txt", 2, frames=4, input_size=16, train=False)
    assert ds[0][0].shape == (1, 4, 3, 16, 16) and ds.failures() == []
    # Re-running finds the complete tar and neither re-encodes nor repacks.
    stamp = (out / "videos.tar").stat().st_mtime_ns
    again = json.loads(invoke("folder", "--videos", class_folders, "--out", out, "--resize", 16, "--pack", "tar",
                              "--json").stdout)
    assert not again["packed"] and again["rejected"] == 1 and (out / "videos.tar").stat().st_mtime_ns == stamp
    assert not (out / "videos").exists()


def test_synthetic_subcommand_with_check_and_pack(tmp_path):
    out = tmp_path / "syn"
    args = ["synthetic", "--out", out, "--videos-per-class", 1, "--frames", 8, "--size", 64, "--val-fraction", 0,
            "--class-set", "b", "--workers", 1]
    summary = json.loads(invoke(*args, "--check", "--pack", "tar", "--json").stdout)
    assert summary["classes"] == 12 and summary["train"] == 12 and summary["val"] == 0 and summary["rejected"] == 0
    assert read_labels(out / "labels.csv")[4] == "something rotating clockwise"
    assert (out / "videos.tar").is_file() and not (out / "videos").exists()
    again = json.loads(invoke(*args, "--check", "--pack", "tar", "--json").stdout)
    assert again["generated"] == 0 and not again["packed"]
    ds = VideoDataset(out, "train.txt", 12, frames=4, input_size=32, flip=False)
    assert ds[11][0].shape == (4, 3, 32, 32)


def test_bad_options(tmp_path, class_folders):
    with pytest.raises(Exception, match="--pack must be one of tar, not 'zip'"):
        invoke("folder", "--videos", class_folders, "--out", tmp_path / "o", "--pack", "zip")
    with pytest.raises(Exception, match="no such videos folder"):
        invoke("folder", "--videos", tmp_path / "nowhere", "--out", tmp_path / "o")


# ---- nothing lost, nothing silently wrong (issue 15)


def snapshot(folder):
    """Every entry under ``folder``: path -> (kind, bytes or link target, mtime), to prove nothing changed."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[rel] = ("link", str(path.readlink()))
        elif path.is_file():
            found[rel] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
        else:
            found[rel] = ("dir",)
    return found


def test_pack_never_touches_the_users_videos_folder(tmp_path, class_folders):
    # Issue 15, item 1: `--videos D/videos --out D --check --pack tar` deleted D/videos, with its
    # non-video files and the rejected videos.
    dataset = tmp_path / "D"
    dataset.mkdir()
    videos = class_folders.rename(dataset / "videos")
    write_truncated(videos / "pouring_water" / "cut.mp4")
    (videos / "README.txt").write_text("my notes")
    before = snapshot(videos)
    summary = json.loads(invoke("folder", "--videos", videos, "--out", dataset, "--check", "--pack", "tar",
                                "--workers", 1, "--json").stdout)
    assert snapshot(videos) == before
    assert summary["packed"] and summary["rejected"] == 1 and summary["train"] + summary["val"] == 8
    listed_videos = sorted(rel for rel, _ in listed(dataset, "train.txt", 2) + listed(dataset, "val.txt", 2))
    assert open_source(dataset / "videos.tar").names() == listed_videos
    # Again, with the tar in place: still nothing of the user's is touched, nothing is repacked.
    again = json.loads(invoke("folder", "--videos", videos, "--out", dataset, "--check", "--pack", "tar",
                              "--workers", 1, "--json").stdout)
    assert snapshot(videos) == before and not again["packed"]
    # Re-encoding into the folder the videos come from would write into the user's folder: refused first.
    proc = subprocess.run([sys.executable, "-m", "mbgf_cli", "prepare-data", "folder", "--videos", str(videos),
                           "--output", str(dataset), "--resize", "16", "--pack", "tar"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{videos}" in proc.stderr and "--resize" in proc.stderr
    assert snapshot(videos) == before


def test_pack_keeps_a_videos_link_the_user_made(tmp_path, class_folders):
    dataset = tmp_path / "D"
    dataset.mkdir()
    (dataset / "videos").symlink_to(class_folders, target_is_directory=True)
    invoke("folder", "--videos", dataset / "videos", "--out", dataset, "--pack", "tar", "--workers", 1)
    assert (dataset / "videos").is_symlink() and (dataset / "videos.tar").is_file()


def test_files_the_user_made_in_the_output_are_not_written_over(tmp_path, class_folders):
    dataset = tmp_path / "D"
    dataset.mkdir()
    (dataset / "train.txt").write_text("my/own.mp4 0\n")
    before = snapshot(dataset)
    with pytest.raises(Exception, match=f"{dataset / 'train.txt'}: already there and not written by prepare-data"):
        invoke("folder", "--videos", class_folders, "--output", dataset)
    assert snapshot(dataset) == before
    # Nor are videos: the synthetic dataset is not generated into someone's videos folder.
    (dataset / "train.txt").unlink()
    write_video(dataset / "videos" / "mine.mp4")
    before = snapshot(dataset)
    with pytest.raises(Exception, match="mine.mp4, which is no video of this synthetic dataset"):
        invoke("synthetic", "-o", dataset, "--videos-per-class", 1, "--size", 64, "--val-fraction", 0)
    assert snapshot(dataset) == before


@pytest.mark.parametrize("extra", [[], ["--pack", "tar"], ["--resize", "16"]])
def test_preparing_a_folder_into_itself_twice_finds_the_same_classes(tmp_path, class_folders, extra):
    # Issue 15, item 5: the second run found its own `videos` link as a class and listed every video again.
    first = json.loads(invoke("folder", "--videos", class_folders, "--out", class_folders, "--workers", 1, *extra,
                              "--json").stdout)
    lists = {name: (class_folders / name).read_text() for name in ("train.txt", "val.txt", "labels.csv")}
    second = json.loads(invoke("folder", "--videos", class_folders, "--out", class_folders, "--workers", 1, *extra,
                               "--json").stdout)
    assert read_labels(class_folders / "labels.csv") == ["opening door", "pouring water"]
    assert {name: (class_folders / name).read_text() for name in lists} == lists
    assert (first["classes"], first["train"], first["val"]) == (second["classes"], second["train"], second["val"]) == (2, 6, 2)


def test_folder_split_is_made_after_check(tmp_path, class_folders):
    # Issue 15, item 11: the split came before --check dropped videos, so val.txt could come out empty.
    from mbgf_cli.data.official import read_folder

    plan = read_folder(class_folders, 0.25, 0)
    bad = [rel for rel, _ in plan.val]
    for rel in bad:
        write_truncated(class_folders / rel)
    summary = json.loads(invoke("folder", "--videos", class_folders, "--out", tmp_path / "out", "--check",
                                "--val-fraction", 0.25, "--workers", 1, "--json").stdout)
    assert summary["rejected"] == len(bad)
    # The lists are those of the same folder without the rejected videos.
    clean = tmp_path / "clean"
    import shutil

    shutil.copytree(class_folders, clean)
    for rel in bad:
        (clean / rel).unlink()
    invoke("folder", "--videos", clean, "--out", tmp_path / "clean_out", "--val-fraction", 0.25, "--workers", 1)
    for name in ("train.txt", "val.txt"):
        assert (tmp_path / "out" / name).read_text() == (tmp_path / "clean_out" / name).read_text()
    assert len(listed(tmp_path / "out", "val.txt", 2)) == 2


def test_an_empty_split_is_refused(tmp_path):
    videos = tmp_path / "v"
    for cls in ("a", "b"):
        write_video(videos / cls / "good.mp4")
        write_truncated(videos / cls / "cut.mp4")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "mbgf_cli", "prepare-data", "folder", "--videos", str(videos),
                           "-o", str(out), "--check", "--workers", "1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "val.txt" in proc.stderr and "--val-fraction" in proc.stderr
    assert not (out / "train.txt").exists() and not (out / "val.txt").exists()
    assert (out / "rejected.txt").read_text().count("cut.mp4") == 2  # what --check found is kept


def test_a_file_name_with_a_line_break_is_refused_before_anything_is_written(tmp_path, class_folders):
    from mbgf_cli.data.official import read_folder

    # Put the odd name where the split sends it to val.txt, the list written second.
    for seed in range(20):
        (class_folders / "opening_door" / "sub" / "o0.mp4").rename(class_folders / "opening_door" / "sub" / "o\n0.mp4")
        if any("\n" in rel for rel, _ in read_folder(class_folders, 0.5, seed).val):
            break
        (class_folders / "opening_door" / "sub" / "o\n0.mp4").rename(class_folders / "opening_door" / "sub" / "o0.mp4")
    out = tmp_path / "out"
    with pytest.raises(Exception) as e:
        invoke("folder", "--videos", class_folders, "--out", out, "--val-fraction", 0.5, "--seed", seed)
    assert "opening_door/sub/o\\n0.mp4" in str(e.value) and "line break" in str(e.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_check_rejects_a_still_image_named_like_a_video(tmp_path, class_folders):
    write_image_as_video(class_folders / "pouring_water" / "photo.mp4")
    out = tmp_path / "out"
    invoke("folder", "--videos", class_folders, "--out", out, "--check", "--workers", 1)
    rejected = dict(line.split("\t") for line in (out / "rejected.txt").read_text().splitlines())
    assert list(rejected) == ["pouring_water/photo.mp4"] and rejected["pouring_water/photo.mp4"].startswith("still image")


def test_resize_is_bit_reproducible(tmp_path):
    # Issue 15, item 11: two clean runs of --resize gave different bytes for a few files: x264's
    # lookahead read memory left over from earlier work of the process. Each video is re-encoded after
    # two different preludes (noise, a flat grey) and must come out the same; as the old difference
    # showed up in only some runs, the settings x264 records in each file are checked as well.
    import numpy as np

    from mbgf_cli.data import synthetic
    from mbgf_cli.data.video_jobs import resize_video

    options = synthetic.SyntheticOptions(size=112, frames=32)
    sources = []
    (tmp_path / "src").mkdir()
    for class_index in range(12):
        sources.append(tmp_path / "src" / f"{class_index}.mp4")
        synthetic.make_video((str(sources[-1]), options, class_index, class_index))
    noise = np.random.default_rng(0).integers(0, 256, (32, 112, 112, 3), dtype=np.uint8)
    preludes = {"noise": write_video(tmp_path / "noise.mp4", frames=noise),
                "flat": write_video(tmp_path / "flat.mp4", frames=np.full_like(noise, 128))}
    differ = []
    for size in (32, 16):
        for source in sources:
            outputs = []
            for name, prelude in preludes.items():
                resize_video(prelude, tmp_path / "prelude.mp4", size)
                outputs.append(resize_video(source, tmp_path / name / f"{size}-{source.name}", size) or
                               (tmp_path / name / f"{size}-{source.name}").read_bytes())
            if outputs[0] != outputs[1]:
                differ.append(f"{size}-{source.name}")
    assert differ == []
    written = outputs[0].split(b"options: ", 1)[1].split(b"\x00", 1)[0].decode().split()
    settings = dict(option.split("=", 1) for option in written)  # x264 leaves out rc_lookahead when it is 0
    assert (settings["threads"], settings.get("rc_lookahead", "0"), settings["mbtree"], settings["scenecut"]) == \
        ("1", "0", "0", "0")


@pytest.mark.parametrize("size_args", [["--size", 100000], ["--frames", 10**9]])
def test_synthetic_sizes_beyond_memory_are_one_line_before_anything_is_written(tmp_path, size_args, capsys):
    """issue 21: --size / --frames whose videos could not be drawn in memory are refused up front."""
    from tests.test_train_support import run_cli

    code, _, stderr = run_cli(["prepare-data", "synthetic", "-o", tmp_path / "syn", "--videos-per-class", 1,
                               "--workers", 1, *size_args], capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert f"{size_args[0]} {size_args[1]}" in stderr and "GiB" in stderr
    assert not (tmp_path / "syn").exists()

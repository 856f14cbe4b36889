"""The published protocol files (counts checked against the published ones), ViFi-CLIP's lists read
against a dataset's own paths, and the Kinetics-600 zero-shot and base-to-novel protocols end to end on
the synthetic stand-in (a tiny model trained one epoch on class set a; set b plays the new classes)."""

import json
import shlex
import shutil
from pathlib import Path

import pytest

import labels
from mbgf_cli import app as app_module
from mbgf_cli import inference, training
from mbgf_cli.data import read_labels, read_video_list, synthetic, write_labels, write_video_list
from mbgf_cli.errors import UserError
from mbgf_cli.protocols import base2novel, classes, published

DATA = Path(__file__).parent / "data"
TINY = ["--frames", "4", "--input-size", "48", "--workers", "0", "--epochs", "1"]
# The README's lines (notes/protocols-readme.md), run as written in a folder laid out as they say.
README_K600 = "mbgf k600-zeroshot --root data/k600 -c runs/k400/best"
README_K600_STAND_IN = "mbgf k600-zeroshot --dataset synthetic --root data/synthetic-b -c runs/synthetic-tiny-clip-mbgf/best"
README_B2N_STAND_IN = "mbgf base2novel --dataset synthetic --root data/synthetic-b --shots 2 --epochs 1"


def run_mbgf(*args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        app_module.main([str(a) for a in args])
    return exit_info.value.code


# ---- the shipped class lists


def test_k600_zeroshot_classes_and_published_splits():
    k400 = read_labels(labels.label_file("k400"))
    k600 = read_labels(labels.label_file("k600"))
    renamed = dict(line.split(",", 1) for line in labels.protocol_file(
        "k600_zeroshot/kinetics_400_renamed_in_600.csv").read_text().splitlines()[1:])
    new = classes.k600_zeroshot_classes()
    assert (len(k400), len(k600), len(renamed), len(new)) == (400, 600, 12, 220)
    # The 220: in Kinetics-600, not in Kinetics-400 under its name or under the name K600 gave it.
    assert new == [n for n in k600 if n not in k400 and n not in renamed.values()]
    assert set(renamed) <= set(k400) and set(renamed.values()) <= set(k600)
    splits = classes.k600_published_splits()
    assert [len(s) for s in splits] == [160, 160, 160] and all(set(s) <= set(new) for s in splits)
    assert len({tuple(s) for s in splits}) == 3


@pytest.mark.parametrize("dataset, base, novel, shots_lines", [
    ("hmdb51", 26, 25, 416), ("ucf101", 51, 50, 816), ("k400", 200, 200, 3200), ("ssv2", 87, 87, 1392)])
def test_base_and_novel_halves_cover_the_classes_once(dataset, base, novel, shots_lines):
    names = read_labels(labels.label_file(dataset))
    base_ids, novel_ids = classes.base_novel(dataset, names)
    assert (len(base_ids), len(novel_ids)) == (base, novel)
    assert sorted(base_ids + novel_ids) == list(range(len(names)))
    stem = classes.BASE2NOVEL_FILES[dataset][1]
    for seed in (1, 2, 3):
        lines = labels.protocol_file(f"base2novel/{stem}_fs_base_s{seed}_train.txt").read_text().splitlines()
        assert len(lines) == shots_lines == 16 * base  # 16 videos per base class


def test_seeded_splits_are_reproducible_subsets():
    names = synthetic.class_names("b")
    first, again = classes.seeded_splits(names, 9, (0, 1, 2)), classes.seeded_splits(names, 9, (0, 1, 2))
    assert first == again and all(len(s) == 9 and set(s) <= set(names) for s in first)
    assert len({tuple(s) for s in first}) == 3


# ---- ViFi-CLIP's lists against a dataset's own paths


def hmdb_like_train_list(tmp_path, list_file):
    """A train list in mbgf's HMDB51 layout (class folders) holding every video of a published list."""
    names = read_labels(labels.label_file("hmdb51"))
    lines = [line.split() for line in list_file.read_text().splitlines() if line.strip()]
    entries = [(f"{names[int(label)].replace(' ', '_')}/{video}", int(label)) for video, label in lines]
    entries.append(("brush_hair/another_video.avi", 0))
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{p} {c}\n" for p, c in entries))
    return train, names


def test_vificlip_fewshot_list_is_rewritten_in_the_datasets_paths(tmp_path):
    vifi = tmp_path / "train1_few_shot_2.txt"
    shutil.copy(DATA / "vificlip" / "hmdb_train1_few_shot_2.txt", vifi)
    train, names = hmdb_like_train_list(tmp_path, vifi)
    [written] = published.dataset_split_files([str(vifi)], train, len(names), tmp_path / "out")
    assert Path(written).name == "K2_seedvificlip1.txt"
    entries = read_video_list(written, len(names))
    assert len(entries) == 102 and entries[0] == (
        "brush_hair/Brunette_Foxyanya_ultra_silky_long_hair_brushing_hairjob_brush_hair_h_cm_np2_ri_goo_6.avi", 0)
    assert all(path.startswith(names[label].replace(" ", "_") + "/") for path, label in entries)


def test_vificlip_list_with_another_class_order_is_refused(tmp_path):
    vifi = tmp_path / "train1_few_shot_2.txt"
    shutil.copy(DATA / "vificlip" / "hmdb_train1_few_shot_2.txt", vifi)
    train, names = hmdb_like_train_list(tmp_path, vifi)
    train.write_text(train.read_text().replace("cartwheel/Bayer__Meisterin_Teresa_Stadler_cartwheel_f_cm_np1_le_med_0"
                                               ".avi 1", "cartwheel/Bayer__Meisterin_Teresa_Stadler_cartwheel_f_cm_np1"
                                               "_le_med_0.avi 2"))
    with pytest.raises(UserError, match=r"train1_few_shot_2.txt:3: .* has label 1 here but 2 in"):
        published.dataset_split_files([str(vifi)], train, len(names), tmp_path / "out")


def test_base2novel_training_lists_are_the_published_videos(tmp_path):
    names = read_labels(labels.label_file("hmdb51"))
    base_ids, _ = classes.base_novel("hmdb51", names)
    base_names = read_labels(labels.protocol_file("base2novel/hmdb_51_base_labels.csv"))
    source = labels.protocol_file("base2novel/hmdb_fs_base_s1_train.txt")
    lines = [line.split() for line in source.read_text().splitlines()]
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{base_names[int(c)].replace(' ', '_')}/{v} {base_ids[int(c)]}\n" for v, c in lines))
    cfg = base2novel.Base2NovelConfig(train=None, out=str(tmp_path / "out"), seeds=(1,))
    [split] = base2novel.training_lists(cfg, "hmdb51", train, names, base_ids)
    entries = read_video_list(split.path, len(base_ids))
    assert (split.shots, split.seed, len(entries)) == (16, "1", 416)
    assert [c for _, c in entries] == [int(c) for _, c in lines]  # labels count within the base half
    assert entries[0][0] == "pour/Cocktail_Pouring_pour_u_nm_np2_ri_med_0.avi"


# ---- end to end on the synthetic stand-in


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """data/synthetic-b (3 train and 1 val video per class) and the starting model where `mbgf train
    --dataset synthetic` writes it (here a tiny model trained one epoch on a tiny set a)."""
    base = tmp_path_factory.mktemp("protocols")
    common = dict(frames=8, size=48, seed=0, show_progress=False, workers=1)
    synthetic.generate(base / "set_a", class_set="a", videos_per_class=3, val_fraction=0.34, **common)
    synthetic.generate(base / "data" / "synthetic-b", class_set="b", videos_per_class=4, val_fraction=0.25, **common)
    training.train(training.TrainConfig(dataset="synthetic", root=str(base / "set_a"), model="tiny", frames=4,
                                        input_size=48, epochs=1, batch_size=8, total_batch=8, workers=0,
                                        out=str(base / "runs" / "synthetic-tiny-clip-mbgf"), plot=False))
    return base


def test_k600_zeroshot_stand_in(setup, capsys, monkeypatch):
    monkeypatch.chdir(setup)
    assert run_mbgf(*shlex.split(README_K600_STAND_IN)[1:]) == 0
    printed = capsys.readouterr().out
    assert "zero-shot over 3 split(s)" in printed and "mean" in printed
    out = setup / "runs" / "k600-zeroshot-synthetic"
    assert run_mbgf(*shlex.split(README_K600_STAND_IN)[1:], "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["split"] for s in report["splits"]] == [1, 2, 3]
    names = synthetic.class_names("b")
    for number, (split, drawn) in enumerate(zip(report["splits"], classes.seeded_splits(names, 9, (0, 1, 2)),
                                                strict=True), start=1):
        assert read_labels(out / f"split{number}_labels.csv") == drawn
        assert split["videos"] == 9  # one val video per class
    top1 = [s["top1"] for s in report["splits"]]
    assert report["mean"]["top1"] == pytest.approx(sum(top1) / 3)
    assert report["std"]["top5"] is not None
    # Split 1's top-1 is what `mbgf predict`'s Predictor gives the same videos against the split's names.
    predictor = inference.Predictor.from_checkpoint(setup / "runs" / "synthetic-tiny-clip-mbgf" / "best")
    entries = read_video_list(out / "split1.txt", 9)
    videos = [str(setup / "data" / "synthetic-b" / "videos" / path) for path, _ in entries]
    predicted = predictor.predict(videos, read_labels(out / "split1_labels.csv"), workers=0).predictions.tolist()
    correct = sum(p == label for p, (_, label) in zip(predicted, entries, strict=True))
    assert report["splits"][0]["top1"] == pytest.approx(correct / 9)

    assert run_mbgf(*shlex.split(README_K600_STAND_IN)[1:], "--pretrained", "ViT-B/16") == 2
    assert "--checkpoint DIR or --pretrained NAME (one of them)" in capsys.readouterr().err

    # A folder of the user's as --output: refused, their file unchanged; this command's own is reused.
    mine = setup / "mine"
    mine.mkdir(exist_ok=True)
    (mine / "split1.txt").write_text("my notes\n")
    assert run_mbgf(*shlex.split(README_K600_STAND_IN)[1:], "--output", mine) == 2
    assert "not empty and not written by `mbgf k600-zeroshot`" in " ".join(capsys.readouterr().err.split())
    assert (mine / "split1.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".mbgf-output.json", *(f"split{n}{end}" for n in (1, 2, 3) for end in (".txt", "_labels.csv"))])


def test_base2novel_stand_in_runs_resumes_and_reports_the_harmonic_mean(setup, capsys, monkeypatch):
    monkeypatch.chdir(setup)
    out = setup / "runs" / "base2novel-synthetic"
    args = [*shlex.split(README_B2N_STAND_IN)[1:], "--json"]
    capsys.readouterr()
    assert run_mbgf(*args) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == {"base": 6, "novel": 6}
    assert report["start"].startswith("runs/synthetic-tiny-clip-mbgf/best")
    assert [(r["variant"], r["seed"]) for r in report["runs"]] == [
        (v, s) for s in ("1", "2", "3") for v in ("clip", "clip+mbgf")]
    names = synthetic.class_names("b")
    assert read_labels(out / "lists" / "base_val_labels.csv") == names[:6]
    assert read_labels(out / "lists" / "novel_val_labels.csv") == names[6:]
    assert len(read_video_list(out / "splits" / "K2_seed1.txt", 6)) == 12
    for run in report["runs"]:
        novel = json.loads((Path(run["run_dir"]) / "novel.json").read_text())
        summary = json.loads((Path(run["run_dir"]) / "summary.json").read_text())
        assert run["novel"] == novel["top1"] and novel["videos"] == 6
        assert run["base"] == pytest.approx(100 * summary["final"]["top1"], abs=1e-3)
        b, n = run["base"], run["novel"]
        assert run["hm"] == pytest.approx(0 if b + n == 0 else 2 * b * n / (b + n), abs=1e-3)
    assert report["table"]["columns"] == ["base", "novel", "HM"]
    assert [row["method"] for row in report["table"]["rows"]] == ["CLIP", "CLIP +MBGF"]

    # Again: every run and its novel score are read back, nothing is trained or scored.
    def no_training(cfg):
        raise AssertionError(f"trained {cfg.out} again")

    def no_scoring(*a, **k):
        raise AssertionError("scored again")

    monkeypatch.setattr(training, "train", no_training)
    monkeypatch.setattr(base2novel.scoring, "score", no_scoring)
    assert run_mbgf(*args) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == report["runs"]


def test_base2novel_on_a_dataset_without_published_halves_is_refused(setup, tmp_path, capsys):
    assert run_mbgf("base2novel", "--root", setup / "set_a", "--output", tmp_path / "o", *TINY) == 2
    assert "base-to-novel needs one of k400, hmdb51, ucf101, ssv2, synthetic" in capsys.readouterr().err


def test_k600_zeroshot_on_the_published_splits(setup, tmp_path, capsys, monkeypatch):
    """A Kinetics-600 folder as `mbgf prepare-data k600` writes it, one val video per zero-shot class."""
    from videos import write_video

    k600 = read_labels(labels.label_file("k600"))
    new = classes.k600_zeroshot_classes()
    root = tmp_path / "data" / "k600"
    val = [(f"val/{name.replace(' ', '_')}.mp4", k600.index(name)) for name in new]
    for path, _ in val:
        write_video(root / "videos" / path, num_frames=4, size=(32, 32))
    write_video_list(root / "val.txt", val)
    write_video_list(root / "train.txt", val[:1])
    write_labels(root / "labels.csv", k600)
    shutil.copytree(setup / "runs" / "synthetic-tiny-clip-mbgf", tmp_path / "runs" / "k400")
    monkeypatch.chdir(tmp_path)
    assert run_mbgf(*shlex.split(README_K600)[1:], "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["videos"] for s in report["splits"]] == [160, 160, 160]
    for number, split in enumerate(classes.k600_published_splits(), start=1):
        assert read_labels(tmp_path / "runs" / "k600-zeroshot-k600" / f"split{number}_labels.csv") == split


@pytest.mark.parametrize("args, message", [
    (["k600-zeroshot", "--dataset", "synthetic", "-c", "x", "--workers", "-1"], "--workers must be at least 0, not -1"),
    (["k600-zeroshot", "--dataset", "synthetic", "-c", "x", "--batch-size", "0"],
     "--batch-size must be at least 1, not 0"),
    (["k600-zeroshot", "--dataset", "synthetic", "-c", "x", "--workers", "100000"], "this machine runs at most"),
    (["base2novel", "--shots", "0"], "--shots must be at least 1, not 0"),
    (["base2novel", "--workers", "100000"], "this machine runs at most"),
    (["base2novel", "-k", "2"], "No such option: -k"),  # -k is --top-k wherever it is an option
    (["reproduce", "synthetic", "--epochs", "0"], "--epochs must be at least 1, not 0"),
])
def test_protocol_options_are_checked_as_declared_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert run_mbgf(*args) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_base2novel_refuses_a_folder_of_yours_or_another_commands_before_any_work(tmp_path, capsys):
    """The one output policy: the user's files, or a `mbgf fewshot` output, are refused (nothing touched)."""
    from mbgf_cli import outputs

    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    args = ["base2novel", "--dataset", "synthetic", "--root", tmp_path / "nowhere", *TINY]
    assert run_mbgf(*args, "--output", out) == 2
    assert "not empty and not written by `mbgf base2novel`" in " ".join(capsys.readouterr().err.split())
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "x"
    (tmp_path / "fs").mkdir()
    outputs.record_outputs(tmp_path / "fs", "fewshot", [])
    assert run_mbgf(*args, "--output", tmp_path / "fs", "--overwrite") == 2
    assert "holds the output of `mbgf fewshot`" in " ".join(capsys.readouterr().err.split())

"""Zero-shot over splits: `mbgf eval --zero-shot --pretrained FILE --splits 1 2` on a tiny generated set
with a tiny random CLIP saved to a file, against the single-list evaluation of each split."""

import json
import os
import statistics

import pytest
import torch
from safetensors.torch import save_file

from clip.model import CLIP
from fusion.config import BACKBONES
from mbgf_cli import app as app_module
from mbgf_cli import eval_splits
from tests.videos import write_dataset

SPLITS = {  # split -> videos of its test list (3 classes x 3 videos in the set)
    1: ["c0/v0.mp4 0", "c1/v0.mp4 1", "c2/v0.mp4 2"],
    2: ["c0/v1.mp4 0", "c1/v1.mp4 1", "c2/v1.mp4 2", "c2/v2.mp4 2"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("zeroshot")
    root = write_dataset(base / "ucf", num_classes=3, videos_per_class=3, num_frames=4, val_per_class=1)
    # Layout 1: ROOT/splitN/ as `mbgf prepare-data ucf101 --split N --out ROOT/splitN` writes it.
    for split, lines in SPLITS.items():
        folder = root / f"split{split}"
        folder.mkdir()
        os.symlink(root / "videos", folder / "videos")
        (folder / "val.txt").write_text("".join(f"{line}\n" for line in lines))
        (folder / "labels.csv").write_text((root / "labels.csv").read_text())
    # Layout 2: one videos/ folder, a test list per split named with the split number.
    (root / "lists").mkdir()
    for split, lines in SPLITS.items():
        (root / "lists" / f"test{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    # A tiny random CLIP in OpenAI's key names, as a user's weights file.
    torch.manual_seed(0)
    weights = base / "tiny_clip.safetensors"
    model = CLIP(BACKBONES["tiny"].clip_config.__class__(**{**BACKBONES["tiny"].clip_config.__dict__, "image_resolution": 32}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return root, weights


def run_mbgf(*args) -> int:
    """``mbgf ARGS`` in this process; the exit status (the app always ends with SystemExit)."""
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(list(args))
    return exit_info.value.code


def mbgf_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert run_mbgf(*args, "--json") == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def zero_shot_args(weights):
    return ["eval", "--zero-shot", "--pretrained", str(weights), "--model", "tiny", "--frames", "2",
            "--input-size", "32", "--workers", "0", "--prompts", "one"]


def test_zero_shot_over_split_folders_matches_each_split_alone(data, capsys):
    root, weights = data
    out = mbgf_json(capsys, *zero_shot_args(weights), "--root", str(root), "--splits", "1", "2")
    assert [s["split"] for s in out["splits"]] == [1, 2]
    assert [s["videos"] for s in out["splits"]] == [3, 4]
    assert [s["root"] for s in out["splits"]] == [str(root / "split1"), str(root / "split2")]
    for split in out["splits"]:
        alone = mbgf_json(capsys, *zero_shot_args(weights), "--root", split["root"])
        assert (alone["top1"], alone["top5"], alone["videos"]) == (split["top1"], split["top5"], split["videos"])
        # the numbers are real fractions of that list's videos
        assert split["top1"] * split["videos"] == pytest.approx(round(split["top1"] * split["videos"]))
    for metric in ("top1", "top5", "mean_class"):
        values = [s[metric] for s in out["splits"]]
        assert out["mean"][metric] == pytest.approx(statistics.fmean(values))
        assert out["std"][metric] == pytest.approx(statistics.stdev(values))


def test_split_placeholder_in_the_list_gives_the_same_numbers(data, capsys):
    root, weights = data
    by_folder = mbgf_json(capsys, *zero_shot_args(weights), "--root", str(root), "--splits", "1", "2")
    by_list = mbgf_json(capsys, *zero_shot_args(weights), "--root", str(root), "--list", "lists/test{split}.txt",
                        "--splits", "1", "2")
    assert [s["list"] for s in by_list["splits"]] == [str(root / "lists" / "test1.txt"),
                                                      str(root / "lists" / "test2.txt")]
    assert [s["top1"] for s in by_list["splits"]] == [s["top1"] for s in by_folder["splits"]]
    assert by_list["mean"] == by_folder["mean"]


def test_the_table_has_a_row_per_split_and_the_mean(data, capsys):
    root, weights = data
    capsys.readouterr()
    assert run_mbgf(*zero_shot_args(weights), "--root", str(root), "--splits", "1", "2") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "zero-shot over 2 split(s)" in text
    assert "±" in text and "mean" in text


def test_missing_split_folder_and_missing_zero_shot_are_clear_errors(data, capsys):
    root, weights = data
    assert run_mbgf(*zero_shot_args(weights), "--root", str(root), "--splits", "1", "3") == 2
    err = capsys.readouterr().err
    assert f"{root}: no split3/ folder" in " ".join(err.split())
    assert run_mbgf("eval", "--checkpoint", str(root), "--root", str(root), "--splits", "1") == 2
    assert "add --zero-shot --pretrained" in " ".join(capsys.readouterr().err.split())


def test_the_readme_recipe_prepare_each_official_split_then_eval_over_them(data, tmp_path, capsys):
    """README: `mbgf prepare-data ucf101 --split N --out ROOT/splitN` for each N, then `--splits`, gives
    the numbers of the hand-made split folders (same test lists)."""
    root, weights = data
    official = tmp_path / "ucfTrainTestlist"
    official.mkdir()
    (official / "classInd.txt").write_text("1 c0\n2 c1\n3 c2\n")
    every = {f"c{c}/v{v}.mp4" for c in range(3) for v in range(3)}
    for split, lines in SPLITS.items():
        test = [line.split()[0] for line in lines]
        (official / f"testlist0{split}.txt").write_text("".join(f"{path}\n" for path in test))
        train = sorted(every - set(test))  # "path 1-based-label", as the official train lists
        (official / f"trainlist0{split}.txt").write_text("".join(f"{p} {int(p[1]) + 1}\n" for p in train))
    prepared = tmp_path / "ucf101"
    for split in SPLITS:
        assert run_mbgf("prepare-data", "ucf101", "--splits", str(official), "--videos", str(root / "videos"),
                        "--split", str(split), "--out", str(prepared / f"split{split}"), "--workers", "1") == 0
    assert (prepared / "split2" / "labels.csv").read_text().splitlines()[1:] == ["0,c0", "1,c1", "2,c2"]
    # The same class names as the hand-made folders (zero-shot scores depend on the names' texts).
    recipe = mbgf_json(capsys, *zero_shot_args(weights), "--root", str(prepared), "--labels",
                       str(root / "labels.csv"), "--splits", "1", "2")
    by_hand = mbgf_json(capsys, *zero_shot_args(weights), "--root", str(root), "--splits", "1", "2")
    assert [s["videos"] for s in recipe["splits"]] == [3, 4]
    for metric in ("top1", "top5", "mean_class"):
        assert [s[metric] for s in recipe["splits"]] == [s[metric] for s in by_hand["splits"]]


def test_single_split_has_no_std():
    class Result:
        def __init__(self, top1):
            self.top1 = top1

        def numbers(self):
            return {"top1": self.top1, "top5": 1.0, "mean_class": self.top1, "videos": 10, "skipped": 0}

    from mbgf_cli.evaluation import EvalConfig

    calls = []

    def evaluate(cfg):
        calls.append((cfg.root, cfg.list_file))
        return Result(0.25 * int(cfg.root[-1])), {"list": f"{cfg.root}/val.txt", "model": "m", "views": "1x1"}

    cfg = EvalConfig(zero_shot=True, pretrained="x", root="data/split{split}")
    one = eval_splits.zero_shot_over_splits(cfg, [2], evaluate=evaluate)
    assert (one.mean["top1"], one.std["top1"]) == (0.5, None)
    three = eval_splits.zero_shot_over_splits(cfg, [1, 2, 3, 2], evaluate=evaluate)
    assert calls[1:] == [("data/split1", None), ("data/split2", None), ("data/split3", None)]
    assert three.mean["top1"] == pytest.approx(0.5) and three.std["top1"] == pytest.approx(0.25)

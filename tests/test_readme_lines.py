"""README command lines of "Your own videos" and "Models", each run as written in the folder the README
assumes (tests/readme_support.py); ``runs/k400/best`` is the tiny synthetic checkpoint under that name and
``clip.mp4`` a generated video: the lines' own words, on generated data."""

import json
import shutil
from pathlib import Path

import pytest

from mbgf_cli.data.synthetic import class_names
from tests.readme_support import CHECKPOINT, README, readme_layout, readme_words
from tests.test_train_support import run_cli
from tests.videos import write_video

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    root = readme_layout(tmp_path_factory.mktemp("readme-lines"))
    shutil.copytree(root / CHECKPOINT, root / "runs" / "k400" / "best")
    write_video(root / "clip.mp4", num_frames=8, size=(48, 64))
    return root


@pytest.fixture
def in_layout(layout, monkeypatch) -> Path:
    monkeypatch.chdir(layout)
    return layout


def run_line(capsys, line: str, *extra: str) -> tuple[str, str]:
    code, stdout, stderr = run_cli([*readme_words(line), *extra], capsys)
    assert code == 0, stderr
    return stdout, stderr


def run_json(capsys, line: str) -> dict:
    return json.loads(run_line(capsys, line, "--json")[0])


def labels_of(result: dict) -> list[list[str]]:
    return [[r["label"] for r in row["top"]] for row in result["videos"]]


def test_readme_predict_over_new_videos_list(in_layout, capsys):
    line = "mbgf predict new_videos/val.txt --checkpoint runs/synthetic-tiny-clip-mbgf/best --top-k 2"
    stdout, stderr = run_line(capsys, line)
    assert "top-2 of 12 classes" in " ".join(stdout.split()) and "of 12)" in stderr
    result = run_json(capsys, line)
    assert len(result["videos"]) == 12 and all(len(top) == 2 for top in labels_of(result))


def test_readme_embed_and_search_over_new_videos(in_layout, capsys):
    run_line(capsys, "mbgf embed new_videos/videos --checkpoint runs/synthetic-tiny-clip-mbgf/best "
                     "-o new_videos.safetensors")
    assert (in_layout / "new_videos.safetensors").is_file()
    by_text = run_json(capsys, "mbgf search new_videos.safetensors \"something growing\" --top-k 3")
    assert [r["rank"] for r in by_text["results"]] == [1, 2, 3]
    query = "new_videos/videos/moving_something_up/0000.mp4"
    by_video = run_json(capsys, f"mbgf search new_videos.safetensors --like {query} --top-k 3")
    similarities = [r["similarity"] for r in by_video["results"]]
    assert len(similarities) == 3 and similarities == sorted(similarities, reverse=True)
    assert all(Path(r["video"]).parts[:2] == ("new_videos", "videos") for r in by_video["results"])


def test_readme_predict_my_videos_with_the_checkpoints_or_given_classes(in_layout, capsys):
    result = run_json(capsys, "mbgf predict clip.mp4 my_videos/ --checkpoint runs/k400/best")
    assert sorted(Path(row["video"]).name for row in result["videos"]) == ["a.mp4", "b.mp4", "clip.mp4"]
    assert all(len(top) == 5 and set(top) <= set(class_names("a")) for top in labels_of(result))
    given = run_json(capsys, "mbgf predict my_videos/ -c runs/k400/best --classes \"juggling balls, riding a bike\"")
    assert [set(top) for top in labels_of(given)] == [{"juggling balls", "riding a bike"}] * 2


def test_readme_predict_explain_gives_mbgfs_gates(in_layout, capsys):
    line = "mbgf predict my_videos/ -c runs/synthetic-tiny-clip-mbgf/best --explain"
    stdout, _ = run_line(capsys, line)
    assert "motion" in stdout
    for row in run_json(capsys, line)["videos"]:
        assert set(row["gates"]) == {"appearance", "temporal", "motion"}
        assert sum(row["gates"].values()) == pytest.approx(1, abs=1e-4)


def test_readme_embed_my_videos_with_texts_then_search(in_layout, capsys):
    run_line(capsys, "mbgf embed my_videos/ -c runs/k400/best --texts \"juggling, riding a bike\" "
                     "-o my_videos.safetensors")
    by_text = run_json(capsys, "mbgf search my_videos.safetensors \"someone juggling\" --top-k 10")
    assert sorted(Path(r["video"]).name for r in by_text["results"]) == ["a.mp4", "b.mp4"]  # all there are
    by_video = run_json(capsys, "mbgf search my_videos.safetensors --like my_videos/a.mp4")
    assert [Path(r["video"]).name for r in by_video["results"]] == ["b.mp4"]  # the query itself left out


def test_readme_models_json_lists_every_model(in_layout, capsys):
    models = json.loads(run_line(capsys, "mbgf models --json")[0])
    assert len(models) > 1 and all("id" in model for model in models)


def test_readme_eval_per_class_writes_predictions_and_plots(in_layout, capsys):
    shutil.copytree(in_layout / "new_videos", in_layout / "data" / "k400")  # the stand-in for Kinetics-400
    run_line(capsys, "mbgf eval --checkpoint runs/k400/best --root data/k400 --per-class --predictions preds.csv "
                     "--plot plots/")
    rows = (in_layout / "preds.csv").read_text().splitlines()
    assert len(rows) == 1 + 12 and any((in_layout / "plots").iterdir())


def test_readme_eval_on_the_synthetic_dataset_explains_the_gates(in_layout, capsys, monkeypatch):
    from mbgf_cli.presets import synthetic_dir

    monkeypatch.setenv("MBGF_CACHE", str(in_layout / "cache"))
    shutil.copytree(in_layout / "new_videos", synthetic_dir())  # the stand-in for the generated dataset
    line = "mbgf eval --checkpoint runs/synthetic-tiny-clip-mbgf/best --dataset synthetic --explain"
    stdout, _ = run_line(capsys, line)
    assert "motion" in stdout
    result = run_json(capsys, line)
    assert result["videos"] == 12 and result["list"] == str(synthetic_dir() / "val.txt")
    assert set(result["gates"]) == set(class_names("a"))
    assert all(sum(gates.values()) == pytest.approx(1, abs=1e-4) for gates in result["gates"].values())


def test_readme_flops_line_with_json(in_layout, capsys):
    line = "mbgf flops --model b16 --frames 8 16 32 --variant clip actionclip xclip"
    assert line in README.read_text()  # the table's numbers are tests/test_flops.py's
    table, _ = run_line(capsys, line)
    assert all(name in table for name in ("CLIP-B/16", "ActionCLIP-B/16", "X-CLIP-B/16")), table
    rows = json.loads(run_line(capsys, line, "--json")[0])
    assert {(r["frames"], r["variant"]) for r in rows if "frames" in r} >= {(f, v) for f in (8, 16, 32)
                                                                           for v in ("clip", "actionclip", "xclip")}


def test_readme_prepare_data_folder_one_subfolder_per_class(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for label in ("juggling", "cooking"):
        for i in range(5):
            write_video(tmp_path / "my_videos" / label / f"{i}.mp4", num_frames=4, size=(32, 32))
    run_line(capsys, "mbgf prepare-data folder --videos my_videos --val-fraction 0.2 -o data/mine")
    mine = tmp_path / "data" / "mine"
    assert len((mine / "val.txt").read_text().splitlines()) == 2
    assert len((mine / "train.txt").read_text().splitlines()) == 8
    assert set((mine / "labels.csv").read_text().splitlines()[1:]) == {"0,cooking", "1,juggling"}

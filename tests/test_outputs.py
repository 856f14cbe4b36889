"""The one output policy (mbgf_cli/outputs.py): what is refused, what --overwrite may touch, and that
nothing mbgf did not write is ever changed or deleted."""

import json
import os

import pytest

from mbgf_cli.errors import UserError
from mbgf_cli.fileio import staging_sibling
from mbgf_cli.outputs import (
    MARKER,
    check_output_file,
    check_output_folder,
    place_outputs,
    read_marker,
    record_outputs,
    remove_recorded,
)


def tree(folder):
    """{relative path: content} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(tmp_path):
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return folder


def staged(tmp_path, target, files):
    staging = staging_sibling(target)
    staging.mkdir()
    for name, text in files.items():
        (staging / name).write_text(text)
    return staging


# ---------------------------------------------------------------------------------------- folders


def test_absent_and_empty_folders_are_taken(tmp_path):
    assert check_output_folder(tmp_path / "new" / "deeper", "-o", "convert") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", "-o", "convert") == tmp_path / "empty"


def test_a_users_folder_is_refused_without_overwrite(tmp_path):
    folder = users_folder(tmp_path)
    before = tree(folder)
    with pytest.raises(UserError, match=r"^-o .*out: not empty and not written by `mbgf convert`.*--overwrite"):
        check_output_folder(folder, "-o", "convert")
    assert tree(folder) == before


def test_overwrite_writes_beside_the_users_files_and_never_over_them(tmp_path):
    folder = users_folder(tmp_path)
    before = tree(folder)
    check_output_folder(folder, "-o", "convert", overwrite=True, writes=["model.safetensors"])
    with pytest.raises(UserError, match=r"config.json is not mbgf's and would be replaced"):
        check_output_folder(folder, "-o", "train", overwrite=True, writes=["config.json", "last"])
    place_outputs(staged(tmp_path, folder, {"model.safetensors": "w1"}), folder, "convert")
    after = tree(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # the user's files, byte for byte
    assert set(after) - set(before) == {"model.safetensors", MARKER}
    assert read_marker(folder) == {"kind": "convert", "written": ["model.safetensors"]}
    # A second run of the same command replaces only its own entry, without --overwrite.
    check_output_folder(folder, "-o", "convert", writes=["model.safetensors"])
    place_outputs(staged(tmp_path, folder, {"model.safetensors": "w2"}), folder, "convert")
    assert (folder / "model.safetensors").read_text() == "w2"
    # --overwrite's removal takes what mbgf recorded, and only that.
    assert remove_recorded(folder) == ["model.safetensors"]
    assert tree(folder) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left


def test_another_commands_output_is_refused_even_with_overwrite(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.csv").write_text("epoch\n")
    record_outputs(folder, "train", ["results.csv"])
    for overwrite in (False, True):
        with pytest.raises(UserError, match=r"holds the output of `mbgf train`"):
            check_output_folder(folder, "--output", "export", overwrite=overwrite)
    assert check_output_folder(folder, "--output", "train") == folder


def test_a_damaged_marker_is_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / MARKER).write_text("{not json")
    with pytest.raises(UserError, match="damaged"):
        check_output_folder(folder, "-o", "convert", overwrite=True)


def test_a_file_or_an_unwritable_place_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"^-o .*file: is a file, not a folder$"):
        check_output_folder(tmp_path / "file", "-o", "convert")
    with pytest.raises(UserError, match=r"is a file, not a folder"):
        check_output_folder(tmp_path / "file" / "below", "-o", "convert")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # as a user without write permission there sees it (root would not)
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked) else real_access(path, mode))
    with pytest.raises(UserError, match=r"^-o .*locked/out: cannot write in .*locked \(permission denied\)$"):
        check_output_folder(locked / "out", "-o", "convert")
    with pytest.raises(UserError, match="permission denied"):
        check_output_file(locked / "x.csv", "--csv")


def test_record_outputs_adds_and_remove_recorded_stays_inside_its_folder(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a").write_text("1")
    (folder / "b").mkdir()
    (tmp_path / "outside.txt").write_text("keep")
    record_outputs(folder, "train", ["a"])
    record_outputs(folder, "train", ["b"])
    assert read_marker(folder) == {"kind": "train", "written": ["a", "b"]}
    # A marker edited by hand never reaches outside its folder.
    marker = json.loads((folder / MARKER).read_text())
    marker["written"] += ["../outside.txt", str(tmp_path / "outside.txt")]
    (folder / MARKER).write_text(json.dumps(marker))
    assert remove_recorded(folder) == ["a", "b"]
    assert list(folder.iterdir()) == [] and (tmp_path / "outside.txt").read_text() == "keep"


def test_place_outputs_renames_into_an_absent_folder_and_drops_what_is_no_longer_written(tmp_path):
    folder = tmp_path / "out"
    place_outputs(staged(tmp_path, folder, {"a": "1", "b": "2"}), folder, "export")
    assert tree(folder) == {MARKER: (folder / MARKER).read_bytes(), "a": b"1", "b": b"2"}
    (folder / "mine.txt").write_text("user")
    place_outputs(staged(tmp_path, folder, {"a": "3"}), folder, "export")
    assert sorted(tree(folder)) == [MARKER, "a", "mine.txt"] and (folder / "a").read_text() == "3"
    assert read_marker(folder)["written"] == ["a"]


# ------------------------------------------------------------------------------------------ files


def test_output_files(tmp_path):
    assert check_output_file(tmp_path / "new" / "p.csv", "--csv") == tmp_path / "new" / "p.csv"
    with pytest.raises(UserError, match=r"^--predictions .*: is a folder \(give a file name\)$"):
        check_output_file(tmp_path, "--predictions")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"is a file, not a folder"):
        check_output_file(tmp_path / "f" / "p.csv", "--csv")

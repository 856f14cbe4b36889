"""``mbgf convert`` and ``mbgf export`` under the one output policy: a folder holding the user's files
is refused unless --overwrite, which writes beside them; nothing the user made (the source included)
is ever deleted or changed; files come out with the user's umask."""

import os
import stat

import pytest
import reference_models as ref
import torch

from mbgf_cli.checkpoint import load_checkpoint
from mbgf_cli.outputs import MARKER, read_marker
from tests.test_train_support import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def mbgf(capsys, *args):
    """Run the CLI; (exit code, stdout, stderr)."""
    return run_cli(args, capsys)


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(code, err, *phrases):
    [line] = err.strip().splitlines()
    assert code == 2 and line.startswith("error: ") and "Error" not in line, line
    assert all(phrase in line for phrase in phrases), line


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An OpenAI-format CLIP state dict (tiny, random) in a folder of the user's."""
    folder = tmp_path_factory.mktemp("user") / "downloads"
    folder.mkdir()
    path = folder / "ViT-tiny.pt"
    torch.save(ref.random_clip_state_dict(ref.TinyDims(), seed=3), path)
    return path


def users_copy(source, tmp_path):
    """The issue's case: ``p/`` holds the user's notes and the source checkpoint itself."""
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "notes.txt").write_text("x\n")
    (folder / source.name).write_bytes(source.read_bytes())
    return folder, folder / source.name


def test_convert_refuses_a_users_folder_and_overwrite_keeps_every_file_of_theirs(source, tmp_path, capsys):
    folder, inside = users_copy(source, tmp_path)
    before = tree(folder)
    code, _, err = mbgf(capsys, "convert", inside, "-o", folder)  # -o the parent of the source
    refused(code, err, str(folder), "not empty", "--overwrite")
    assert tree(folder) == before
    code, out, err = mbgf(capsys, "convert", inside, "-o", folder, "--overwrite")
    assert code == 0, err
    after = tree(folder)
    assert {k: after[k] for k in before} == before  # notes.txt and the source, byte for byte
    assert set(after) - set(before) == {"model.safetensors", MARKER}
    model, meta = load_checkpoint(folder)
    assert meta["source"]["format"] == "openai" and meta["config"]["variant"] == "clip"
    # Converting again (a previous convert's folder) replaces only its own file, with or without --overwrite.
    for extra in ((), ("--overwrite",)):
        code, _, err = mbgf(capsys, "convert", inside, "-o", folder, *extra)
        assert code == 0, err
        assert tree(folder).keys() == after.keys() and (folder / "notes.txt").read_text() == "x\n"
    assert read_marker(folder) == {"kind": "convert", "written": ["model.safetensors"]}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.")]  # no staging left


def test_convert_never_replaces_a_users_file_of_the_same_name(source, tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"the user's own weights")
    before = tree(folder)
    for extra in ((), ("--overwrite",)):
        code, _, err = mbgf(capsys, "convert", source, "-o", folder, *extra)
        refused(code, err, str(folder))
        assert tree(folder) == before


def test_convert_refuses_a_file_and_another_commands_folder(source, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    code, _, err = mbgf(capsys, "convert", source, "-o", tmp_path / "taken")
    refused(code, err, "is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "a file"
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text("epoch\n")
    (run / MARKER).write_text('{"kind": "train", "written": ["results.csv"]}')
    code, _, err = mbgf(capsys, "convert", source, "-o", run, "--overwrite")
    refused(code, err, "holds the output of `mbgf train`")
    assert sorted(os.listdir(run)) == [MARKER, "results.csv"]


def test_files_and_folders_get_the_users_umask(source, tmp_path, capsys):
    previous = os.umask(0o022)
    try:
        code, _, err = mbgf(capsys, "convert", source, "-o", tmp_path / "converted")
        assert code == 0, err
        code, _, err = mbgf(capsys, "export", tmp_path / "converted", "-o", tmp_path / "hf")
        assert code == 0, err
    finally:
        os.umask(previous)
    for folder in (tmp_path / "converted", tmp_path / "hf"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
        for file in folder.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o644, file


def test_export_refuses_its_source_and_writes_beside_a_users_files(source, tmp_path, capsys):
    converted = tmp_path / "runs" / "converted"
    code, _, err = mbgf(capsys, "convert", source, "-o", converted)
    assert code == 0, err
    before = tree(tmp_path / "runs")
    for output in (converted, tmp_path / "runs", tmp_path):  # the source itself, or a folder holding it
        for extra in ((), ("--overwrite",)):
            code, _, err = mbgf(capsys, "export", converted, "-o", output, *extra)
            refused(code, err, "is the checkpoint being exported or holds it")
    assert tree(tmp_path / "runs") == before
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "notes.txt").write_text("mine")
    code, _, err = mbgf(capsys, "export", converted, "-o", hf)
    refused(code, err, "not empty", "--overwrite")
    assert os.listdir(hf) == ["notes.txt"]
    code, _, err = mbgf(capsys, "export", converted, "-o", hf, "--overwrite")
    assert code == 0, err
    assert sorted(os.listdir(hf)) == sorted([MARKER, "notes.txt", "config.json", "model.safetensors",
                                             "preprocessor_config.json"])
    assert (hf / "notes.txt").read_text() == "mine"
    import transformers

    loaded = transformers.CLIPModel.from_pretrained(hf)
    assert loaded.config.projection_dim == ref.TinyDims().embed


def test_a_checkpoint_folder_written_before_markers_is_replaced_only_with_overwrite(source, tmp_path, capsys):
    from mbgf_cli.checkpoint import save_checkpoint

    old = tmp_path / "old"
    save_checkpoint(old, torch.nn.Linear(2, 2), {"config": {}, "epoch": 9})  # mbgf's own, no marker
    code, _, err = mbgf(capsys, "convert", source, "-o", old)
    refused(code, err, "--overwrite")
    assert os.listdir(old) == ["model.safetensors"]
    code, _, err = mbgf(capsys, "convert", source, "-o", old, "--overwrite")
    assert code == 0, err
    assert load_checkpoint(old)[1]["source"]["format"] == "openai"
    assert read_marker(old) == {"kind": "convert", "written": ["model.safetensors"]}
    # The same checkpoint beside a file of the user's is not mbgf's folder: its model.safetensors stays.
    mixed = tmp_path / "mixed"
    save_checkpoint(mixed, torch.nn.Linear(2, 2), {"config": {}, "epoch": 9})
    (mixed / "notes.txt").write_text("mine")
    before = tree(mixed)
    code, _, err = mbgf(capsys, "convert", source, "-o", mixed, "--overwrite")
    refused(code, err, "is not mbgf's and would be replaced")
    assert tree(mixed) == before

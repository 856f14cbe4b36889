"""Labels CSV and video lists: every accepted format and every error, named by file:line."""

import pytest

from mbgf_cli.data import read_labels, read_video_list, write_labels, write_video_list
from mbgf_cli.data.annotations import check_relative
from mbgf_cli.errors import UserError


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ---- labels.csv


def test_labels_in_id_order_with_header_quotes_and_bom(tmp_path):
    path = write(tmp_path, "labels.csv", '\ufeffid,name\n2,"passing American football (in game), too"\n0,abseiling\n1, air drumming \n')
    assert read_labels(path) == ["abseiling", "air drumming", "passing American football (in game), too"]


def test_labels_without_header_and_with_crlf(tmp_path):
    path = write(tmp_path, "labels.csv", "0,a\r\n1,b\r\n\r\n")
    assert read_labels(path) == ["a", "b"]


def test_shipped_label_files_are_valid():
    import labels

    assert len(read_labels(labels.label_file("k400"))) == 400
    assert len(read_labels(labels.label_file("ucf101"))) == 101
    assert len(read_labels(labels.label_file("hmdb51"))) == 51


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("id,name\n0,a\n0,b\n", 3, "duplicate class id 0"),
        ("id,name\n0,a\n1,a\n", 3, "duplicate class name 'a'"),
        ("id,name\n0,a\n1,  \n", 3, "empty name"),
        ("id,name\n0,a\nx,b\n", 3, "not an integer"),
        ("id,name\n0,a\n1,b,c\n", 3, "expected 2 fields"),
        ("id,name\n0,a\n2,c\n", 3, "missing 1"),
        ("id,name\n-1,a\n", 2, "negative"),
    ],
)
def test_label_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, "labels.csv", text)
    with pytest.raises(UserError) as e:
        read_labels(path)
    assert f"{path}:{line}:" in str(e.value)
    assert words in str(e.value)


def test_labels_empty_or_missing_file(tmp_path):
    with pytest.raises(UserError, match="no classes"):
        read_labels(write(tmp_path, "labels.csv", "id,name\n"))
    with pytest.raises(UserError, match="no such file"):
        read_labels(tmp_path / "nope.csv")


def test_write_labels_round_trip(tmp_path):
    names = ["a, with comma", 'say "hi"', "plain"]
    write_labels(tmp_path / "l.csv", names)
    assert read_labels(tmp_path / "l.csv") == names


# ---- video lists


def test_list_paths_with_spaces_comments_blank_lines_tabs_and_crlf(tmp_path):
    text = (
        "# a comment\r\n"
        "\r\n"
        "class one/my video (1).mp4 0\r\n"
        "  b.mp4\t1  \r\n"
        "   # indented comment\n"
        "./c/d.avi    2\n"
    )
    path = write(tmp_path, "train.txt", text)
    assert read_video_list(path, 3) == [("class one/my video (1).mp4", 0), ("b.mp4", 1), ("c/d.avi", 2)]


@pytest.mark.parametrize(
    "line_text, words",
    [
        ("a.mp4 3", "label 3 out of range 0..2"),
        ("a.mp4 -1", "out of range"),
        ("a.mp4", "expected 'relative/path.mp4 <label>'"),
        ("a.mp4 one", "label 'one' is not an integer"),
        ("/abs/a.mp4 0", "absolute path"),
        ("../up/a.mp4 0", "leaves the videos folder"),
        ("C:\\videos\\a.mp4 0", "absolute path"),
    ],
)
def test_list_errors_name_file_and_line(tmp_path, line_text, words):
    path = write(tmp_path, "val.txt", f"ok.mp4 0\n# comment\n{line_text}\n")
    with pytest.raises(UserError) as e:
        read_video_list(path, 3)
    assert f"{path}:3:" in str(e.value)
    assert words in str(e.value)


def test_empty_list_and_non_utf8(tmp_path):
    with pytest.raises(UserError, match="no videos listed"):
        read_video_list(write(tmp_path, "a.txt", "# nothing\n\n"), 2)
    with pytest.raises(UserError, match="not UTF-8"):
        read_video_list(write(tmp_path, "b.txt", "caf\xe9.mp4 0\n", encoding="latin-1"), 2)


def test_write_video_list_round_trip_and_refuses_unlistable_paths(tmp_path):
    entries = [("a b/c d.mp4", 1), ("e.mp4", 0)]
    write_video_list(tmp_path / "l.txt", entries)
    assert read_video_list(tmp_path / "l.txt", 2) == entries
    with pytest.raises(UserError):
        write_video_list(tmp_path / "m.txt", [("trailing space.mp4 ", 0)])


def test_check_relative_normalises():
    assert check_relative("./a//b/c.mp4", "x") == "a/b/c.mp4"
    assert check_relative("a\\b.mp4", "x") == "a/b.mp4"


def test_duplicate_list_lines_are_kept_once_with_one_warning(tmp_path, capsys):
    # Issue 15, item 11: a repeated line was counted twice (trained on twice as often, counted twice in accuracy).
    from mbgf_cli.data.annotations import read_video_list_entries

    path = write(tmp_path, "train.txt", "a.mp4 0\nb.mp4 1\n./a.mp4 0\nc.mp4 1\nb.mp4 1\nb.mp4 1\n")
    entries = read_video_list_entries(path, 2)
    assert [(e.path, e.label, e.line) for e in entries] == [("a.mp4", 0, 1), ("b.mp4", 1, 2), ("c.mp4", 1, 4)]
    warning = " ".join(capsys.readouterr().err.split())
    assert warning.count("warning") == 1 and "3 duplicate lines ignored" in warning
    assert f"{path}:3 repeats line 1" in warning and f"{path}:5 repeats line 2" in warning
    assert f"{path}:6 repeats line 2" in warning


def test_a_video_listed_with_two_labels_is_an_error(tmp_path):
    path = write(tmp_path, "val.txt", "a.mp4 0\nb.mp4 1\na.mp4 1\n")
    with pytest.raises(UserError) as e:
        read_video_list(path, 2)
    assert f"{path}:3: a.mp4 has label 1 here and 0 on line 1" in str(e.value)


@pytest.mark.parametrize("name", ["x\ny.mp4", "x\ry.mp4", "x\u2028y.mp4", "x\x85y.mp4", " lead.mp4", ""])
def test_write_video_list_refuses_names_that_do_not_read_back(tmp_path, name):
    with pytest.raises(UserError) as e:
        write_video_list(tmp_path / "l.txt", [("fine.mp4", 0), (name, 1)])
    assert repr(name) in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a part


def test_write_video_list_is_atomic_and_leaves_unchanged_files_alone(tmp_path, monkeypatch):
    import os

    path = tmp_path / "l.txt"
    write_video_list(path, [("a.mp4", 0)])
    stamp = path.stat().st_mtime_ns
    write_video_list(path, [("a.mp4", 0)])
    assert path.stat().st_mtime_ns == stamp
    # A write that fails half-way leaves the previous list whole and no temporary file.
    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(UserError, match="no space left"):
        write_video_list(path, [("b.mp4", 1), ("c.mp4", 0)])
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_text() == "a.mp4 0\n" and [p.name for p in tmp_path.iterdir()] == ["l.txt"]

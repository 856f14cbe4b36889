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

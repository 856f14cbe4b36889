"""A wheel built from the repository carries the data files the package needs at run time."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_vocabulary_and_label_lists(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mbgf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "clip/bpe_simple_vocab_16e6.txt.gz",
        "clip/NOTICE",
        "labels/kinetics_400_labels.csv",
        "labels/ucf_101_labels.csv",
        "labels/hmdb_51_labels.csv",
        "labels/NOTICE",
        "mbgf_cli/app.py",
        "fusion/__init__.py",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mbgf = mbgf_cli.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_shipped_label_lists_have_the_official_sizes():
    import labels

    for dataset, count in (("k400", 400), ("ucf101", 101), ("hmdb51", 51)):
        lines = labels.label_file(dataset).read_text().splitlines()
        assert lines[0] == "id,name"
        assert len(lines) - 1 == count
        assert [int(line.split(",", 1)[0]) for line in lines[1:]] == list(range(count))

"""Readers of the Kinetics annotation CSVs (Kinetics-400 and -600) and of Something-Something v2's JSON.

Kinetics: one CSV per split (``train.csv``, ``validate.csv``, ``test.csv``) with the header
``label,youtube_id,time_start,time_end,split``; a video is named ``<youtube_id>_<start:06d>_<end:06d>``
with any video extension, anywhere under the videos folder. The CSVs are tables, so pandas reads them.

Something-Something v2: ``labels.json`` maps each class template (``Putting something on a surface``)
to its id as a string; ``train.json`` and ``validation.json`` list ``{"id", "label", "template",
"placeholders"}``, where the template spells the objects ``[something]``; the video of entry ``id``
is ``<id>.webm``. ``test.json`` (ids only) has no labels and is not read.
"""

import json
from pathlib import Path

import pandas as pd

import labels
from mbgf_cli.data.annotations import read_text
from mbgf_cli.data.official import Plan, VideoIndex, add_entry, norm_name, shipped_order
from mbgf_cli.errors import UserError, at

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
DATASET_NAMES = {"k400": "Kinetics-400", "k600": "Kinetics-600"}


def read_kinetics(annotations: Path, videos: Path, dataset: str = "k400", skip=()) -> Plan:
    """Kinetics-400/600 CSVs -> a plan. Rows of split ``train`` go to train.txt, ``val``/``validate`` to
    val.txt; ``test`` rows (no labels) are ignored. Class ids follow the shipped list of ``dataset``
    when it holds every label, else the labels sorted."""
    annotations, videos = Path(annotations), Path(videos)
    files = sorted(annotations.glob("*.csv")) if annotations.is_dir() else [annotations]
    if not files or not all(f.is_file() for f in files):
        raise UserError(f"{annotations}: no Kinetics CSV files (train.csv, validate.csv)")
    rows = []  # (part, label name, stem, where)
    for csv_file in files:
        rows += _kinetics_rows(csv_file)
    if not rows:
        raise UserError(f"{annotations}: no labelled rows in the Kinetics CSVs")
    shipped = shipped_order(sorted({norm_name(label) for _, label, _, _ in rows}), dataset)
    classes = shipped if shipped is not None else sorted({label.replace("_", " ") for _, label, _, _ in rows})
    ids = {norm_name(n): i for i, n in enumerate(classes)}
    index = VideoIndex(videos, skip)
    plan = Plan(classes, videos, [], [])
    if shipped is not None:
        plan.notes.append(f"class ids: the shipped {DATASET_NAMES[dataset]} list")
    for part, label, stem, where in rows:
        add_entry(plan, part, index.find_stem(stem), ids[norm_name(label)], where, stem)
    return plan


def _read_table(csv_file: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(csv_file, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True,
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{csv_file}: empty file (expected the header {','.join(KINETICS_COLUMNS)})") from None
    except pd.errors.ParserError as e:
        raise UserError(f"{csv_file}: not a well-formed CSV ({str(e).strip()})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{csv_file}: not UTF-8 text (byte {e.start})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table.fillna("")  # a blank line (kept, so that row i is line i + 2) reads as NaN


def _kinetics_rows(csv_file: Path) -> list[tuple[str, str, str, str]]:
    """(part, label, video stem, file:line) of the labelled train/val rows of one CSV."""
    table = _read_table(csv_file)
    found = list(table.columns)
    missing = [c for c in KINETICS_COLUMNS[:4] if c not in found]
    if missing == ["label"] and _is_test_file(csv_file, table):
        return []  # test.csv has no labels: nothing to list
    if missing:
        raise UserError(f"{at(csv_file, 1)}: no column {', '.join(repr(c) for c in missing)} (the Kinetics header is "
                        f"{','.join(KINETICS_COLUMNS)}); the columns found are {', '.join(found) or 'none'}")
    table = table[table.apply(lambda row: any(str(v).strip() for v in row), axis=1)]
    line = table.index + 2  # line 1 is the header
    times = table[["time_start", "time_end"]].apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    bad = times.isna().any(axis=1)
    if bad.any():
        raise UserError(f"{at(csv_file, int(line[bad.to_numpy()][0]))}: time_start/time_end must be numbers")
    splits = (table["split"].str.strip().str.lower() if "split" in found
              else pd.Series(_split_from_name(csv_file), index=table.index))
    unknown = ~splits.isin(["train", "val", "validate", "test"])
    if unknown.any():
        first = int(unknown.to_numpy().argmax())
        raise UserError(f"{at(csv_file, int(line[first]))}: unknown split {splits.iloc[first]!r} "
                        f"(train, val, validate, test)")
    labelled = (splits != "test").to_numpy()
    label = table["label"].str.strip().str.strip('"')
    empty = (label == "").to_numpy() & labelled
    if empty.any():
        raise UserError(f"{at(csv_file, int(line[empty.argmax()]))}: empty label")
    starts, ends = times["time_start"].astype(int), times["time_end"].astype(int)
    stems = [f"{yid.strip()}_{s:06d}_{e:06d}" for yid, s, e in zip(table["youtube_id"], starts, ends, strict=True)]
    parts = ["train" if s == "train" else "val" for s in splits]
    return [(part, name, stem, at(csv_file, int(n))) for part, name, stem, n, keep
            in zip(parts, label, stems, line, labelled, strict=True) if keep]


def _is_test_file(csv_file: Path, table: pd.DataFrame) -> bool:
    if "split" in table.columns:
        return bool(len(table)) and bool((table["split"].str.strip().str.lower() == "test").all())
    return "test" in csv_file.stem.lower()


def _split_from_name(csv_file: Path) -> str:
    name = csv_file.stem.lower()
    for split in ("train", "validate", "val", "test"):
        if split in name:
            return split
    raise UserError(f"{csv_file}: no 'split' column and the file name says no split (train/validate/test)")


# ---------------------------------------------------------------------------------------------
# Something-Something v2

SSV2_FILES = {  # part -> the names the release and its common copies use
    "labels": ("labels.json", "something-something-v2-labels.json"),
    "train": ("train.json", "something-something-v2-train.json"),
    "val": ("validation.json", "something-something-v2-validation.json"),
}


def read_ssv2(annotations: Path, videos: Path, skip=()) -> Plan:
    """Something-Something v2's JSON files (in the folder ``annotations``) -> a plan; class ids are
    labels.json's. ``validation.json`` becomes val.txt."""
    annotations, videos = Path(annotations), Path(videos)
    if not annotations.is_dir():
        raise UserError(f"{annotations}: no such folder (expected labels.json, train.json, validation.json)")
    classes = _ssv2_classes(_ssv2_file(annotations, "labels"))
    ids = {name: i for i, name in enumerate(classes)}
    index = VideoIndex(videos, skip)
    plan = Plan(classes, videos, [], [])
    if classes == _shipped_ssv2():
        plan.notes.append("class ids: labels.json's, the same as the shipped SSv2 list")
    for part in ("train", "val"):
        path = _ssv2_file(annotations, part)
        for number, video_id, template in _ssv2_entries(path):
            name = template.replace("[", "").replace("]", "")
            if name not in ids:
                raise UserError(f"{path}: entry {number} (id {video_id}): template {template!r} is not a class of "
                                f"labels.json")
            add_entry(plan, part, index.find_stem(video_id), ids[name], f"{path}:entry {number}", f"{video_id}.webm")
    return plan


def _ssv2_file(folder: Path, part: str) -> Path:
    for name in SSV2_FILES[part]:
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder}: no {' or '.join(SSV2_FILES[part])} (Something-Something v2's annotation files)")


def _load_json(path: Path):
    text = read_text(path)  # a missing or non-UTF-8 file as one line
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{at(path, e.lineno)}: not valid JSON ({e.msg})") from None


def _ssv2_classes(path: Path) -> list[str]:
    """Class names in id order from labels.json ``{"<template>": "<id>"}``; ids must be 0..n-1."""
    data = _load_json(path)
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected an object {{\"<class template>\": \"<id>\"}}")
    by_id = {}
    for name, value in data.items():
        if not str(value).strip().isdigit():
            raise UserError(f"{path}: class {name!r} has the id {value!r}, not a whole number")
        by_id.setdefault(int(value), name)
    if sorted(by_id) != list(range(len(data))):
        raise UserError(f"{path}: class ids must be 0..{len(data) - 1}, each once")
    return [by_id[i] for i in range(len(data))]


def _ssv2_entries(path: Path):
    """(entry number from 1, video id, template) of a train/validation JSON list."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of {{\"id\", \"label\", \"template\", \"placeholders\"}}")
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            found = ", ".join(entry) if isinstance(entry, dict) else type(entry).__name__
            raise UserError(f"{path}: entry {number} lacks 'id' or 'template' (found: {found})")
        video_id = str(entry["id"]).strip()
        if not video_id or "/" in video_id or video_id.startswith("."):
            raise UserError(f"{path}: entry {number}: id {entry['id']!r} is not a video name")
        yield number, video_id, str(entry["template"])


def _shipped_ssv2() -> list[str]:
    from mbgf_cli.data.annotations import read_labels

    return read_labels(labels.label_file("ssv2"))

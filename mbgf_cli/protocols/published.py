"""ViFi-CLIP's published training lists, read against a prepared dataset's own lists.

Its lists name a video by the path its authors had (``brush_hair_xxx.avi``, ``train/<id>.mp4``,
``154139.webm``) and a label. A line is matched to the dataset's train list by that path, else by the
file name alone; the label must be the one the dataset's list gives (after ``label_ids``, for lists
whose labels count within a subset of classes, like the base-to-novel lists). What comes out is the
same list in the dataset's paths, so a run trains on exactly the published videos.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mbgf_cli.errors import UserError, at

VIFICLIP_FEWSHOT = re.compile(r"^train(\d+)_few_shot_(\d+)\.txt$")


def read_published_list(path, known: Sequence[tuple[str, int]], label_ids: Sequence[int] | None = None,
                        known_source: str = "the train list") -> list[tuple[str, int]]:
    """``[(dataset path, label as written)]`` of a published ``path label`` list. ``known``: the dataset's
    train entries; ``label_ids``: dataset id of each label the list uses (default: the same ids)."""
    path = Path(path)
    by_path = {p: (p, label) for p, label in known}
    by_name: dict[str, list[tuple[str, int]]] = {}
    for p, label in known:
        by_name.setdefault(p.rsplit("/", 1)[-1], []).append((p, label))
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    chosen = []
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise UserError(f"{at(path, number)}: expected '<video> <label>', got {raw.strip()!r}")
        name, label = fields[0], int(fields[1])
        if label_ids is not None and label >= len(label_ids):
            raise UserError(f"{at(path, number)}: label {label} out of range 0..{len(label_ids) - 1}")
        hit = by_path.get(name) or _only(by_name.get(name.rsplit("/", 1)[-1], []))
        if hit is None:
            raise UserError(f"{at(path, number)}: {name} is not in {known_source} (or is there more than once)")
        wanted = label_ids[label] if label_ids is not None else label
        if hit[1] != wanted:
            raise UserError(f"{at(path, number)}: {name} has label {wanted} here but {hit[1]} in {known_source}; "
                            "the dataset's class order is not the one the list was written for")
        chosen.append((hit[0], label))
    if not chosen:
        raise UserError(f"{path}: lists no videos")
    return chosen


def _only(hits):
    return hits[0] if len(hits) == 1 else None


def dataset_split_files(paths: Sequence[str], train_list, num_classes: int, out_dir) -> list[str]:
    """``mbgf fewshot --split-file``: ViFi-CLIP's ``train<N>_few_shot_<K>.txt`` lists are rewritten in
    the dataset's paths as ``OUT/splits/K<K>_seedvificlip<N>.txt`` (K and seed from the name); any other
    file is used as it is."""
    from mbgf_cli.data import read_video_list, write_video_list

    resolved, known = [], None
    for raw in paths:
        match = VIFICLIP_FEWSHOT.match(Path(raw).name)
        if not match:
            resolved.append(str(raw))
            continue
        if known is None:
            known = read_video_list(train_list, num_classes)
        entries = read_published_list(raw, known, known_source=str(train_list))
        target = Path(out_dir) / "splits" / f"K{match.group(2)}_seedvificlip{match.group(1)}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_video_list(target, entries)
        resolved.append(str(target))
    return resolved

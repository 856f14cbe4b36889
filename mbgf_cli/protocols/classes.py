"""The published class lists of the protocols, matched to a dataset's own class names.

Names are compared as words: case, underscores and CamelCase do not matter (ViFi-CLIP's UCF101 lists
say ``ApplyEyeMakeup`` where mbgf's say ``Apply Eye Makeup``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

import labels
from mbgf_cli.data.annotations import read_labels
from mbgf_cli.errors import UserError

# dataset -> (stem of the base/novel label files, stem of the few-shot lists) in labels/protocols/base2novel
BASE2NOVEL_FILES = {"k400": ("kinetics_400", "k400"), "hmdb51": ("hmdb_51", "hmdb"), "ucf101": ("ucf_101", "ucf"),
                    "ssv2": ("ssv2_174", "ssv2")}
BASE2NOVEL_DATASETS = (*BASE2NOVEL_FILES, "synthetic")
K600_CLASSES = "k600_zeroshot/kinetics_600_zeroshot_220_labels.csv"
K600_SPLITS = tuple(f"k600_zeroshot/ZS_split{n}_K600.csv" for n in (1, 2, 3))
K600_SPLIT_SIZE = 160


def name_key(name: str) -> str:
    """A class name as lower-case words: ``ApplyEyeMakeup``, ``apply_eye_makeup``, ``Apply Eye Makeup`` match."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.replace("_", " "))
    return " ".join(spaced.lower().split())


def match_names(wanted: Sequence[str], class_names: Sequence[str], where: str) -> list[int]:
    """The ids in ``class_names`` of every name in ``wanted``; names not there are refused, all named."""
    ids = {name_key(n): i for i, n in enumerate(class_names)}
    missing = [n for n in wanted if name_key(n) not in ids]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{where}: {len(missing)} of its classes are not in the dataset's labels ({shown}); "
                        "is this the dataset the protocol is for?")
    return [ids[name_key(n)] for n in wanted]


def base_novel(dataset: str, class_names: Sequence[str]) -> tuple[list[int], list[int]]:
    """(base ids, novel ids) in ``class_names``: the published halves of ``dataset``, or for
    ``synthetic`` (the stand-in) the first and second half of its classes, so that whole temporal
    pairs ("X" and "X backwards") fall on one side."""
    if dataset == "synthetic":
        half = len(class_names) // 2
        return list(range(half)), list(range(half, len(class_names)))
    if dataset not in BASE2NOVEL_FILES:
        raise UserError(f"--dataset {dataset}: base-to-novel is published for {', '.join(BASE2NOVEL_DATASETS)}")
    stem = BASE2NOVEL_FILES[dataset][0]
    halves = []
    for part in ("base", "novel"):
        path = labels.protocol_file(f"base2novel/{stem}_{part}_labels.csv")
        halves.append(match_names(read_labels(path), class_names, str(path)))
    return halves[0], halves[1]


def k600_zeroshot_classes() -> list[str]:
    """The 220 Kinetics-600 classes that Kinetics-400 does not have (under any name)."""
    return read_labels(labels.protocol_file(K600_CLASSES))


def k600_published_splits() -> list[list[str]]:
    """The three published 160-class splits of the 220 (X-CLIP's, as ViFi-CLIP ships them)."""
    return [read_labels(labels.protocol_file(name)) for name in K600_SPLITS]


def seeded_splits(names: Sequence[str], size: int, seeds: Sequence[int]) -> list[list[str]]:
    """For each seed, ``size`` of ``names`` drawn without replacement, in the order of ``names``."""
    if not 0 < size <= len(names):
        raise UserError(f"a split of {size} classes out of {len(names)} is not possible")
    splits = []
    for seed in seeds:
        chosen = set(np.random.default_rng(seed).choice(len(names), size=size, replace=False).tolist())
        splits.append([n for i, n in enumerate(names) if i in chosen])
    return splits

"""Class-name lists shipped with mbgf (``id,name`` CSV files; origin in ``labels/NOTICE``)."""

from importlib import resources
from pathlib import Path

LABEL_FILES = {
    "k400": "kinetics_400_labels.csv",
    "ucf101": "ucf_101_labels.csv",
    "hmdb51": "hmdb_51_labels.csv",
    "k600": "kinetics_600_labels.csv",
    "ssv2": "ssv2_labels.csv",
}


def label_file(dataset: str) -> Path:
    """Path of the shipped label CSV of a dataset preset (``k400``, ``k600``, ``ucf101``, ``hmdb51``, ``ssv2``)."""
    try:
        name = LABEL_FILES[dataset]
    except KeyError:
        raise ValueError(f"no shipped label list for dataset {dataset!r}; known: {', '.join(LABEL_FILES)}") from None
    return Path(str(resources.files(__name__).joinpath(name)))


def protocol_file(name: str) -> Path:
    """Path of a shipped protocol file, ``name`` relative to ``labels/protocols`` (e.g.
    ``k600_zeroshot/ZS_split1_K600.csv``, ``base2novel/hmdb_fs_base_s1_train.txt``)."""
    path = Path(str(resources.files(__name__).joinpath("protocols", *name.split("/"))))
    if not path.is_file():
        raise ValueError(f"no shipped protocol file {name!r}")
    return path

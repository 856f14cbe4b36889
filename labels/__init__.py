"""Class-name lists shipped with mbgf (``id,name`` CSV files; origin in ``labels/NOTICE``)."""

from importlib import resources
from pathlib import Path

LABEL_FILES = {
    "k400": "kinetics_400_labels.csv",
    "ucf101": "ucf_101_labels.csv",
    "hmdb51": "hmdb_51_labels.csv",
}


def label_file(dataset: str) -> Path:
    """Path of the shipped label CSV of a dataset preset (``k400``, ``ucf101``, ``hmdb51``)."""
    try:
        name = LABEL_FILES[dataset]
    except KeyError:
        raise ValueError(f"no shipped label list for dataset {dataset!r}; known: {', '.join(LABEL_FILES)}") from None
    return Path(str(resources.files(__name__).joinpath(name)))

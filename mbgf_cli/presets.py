"""Dataset presets: label file, class count and the training recipe each dataset starts from.

The real datasets follow X-CLIP's published fully-supervised recipe (30 epochs, 5 of linear warm-up,
cosine to lr/100, AdamW betas 0.9/0.98, lr 8e-6 with 10x on new modules, weight decay 0.001, total
batch 256 as 8 GPUs x 8 clips x 4 accumulation steps, label smoothing 0.1, mixup 0.8 / cutmix 1.0,
text encoder frozen, 8 frames at 224). ``synthetic`` is the embedded CPU demo, sized so that a tiny
model trained from random initialisation learns motion direction in a few minutes on 2 cores.
Any option given on the command line wins over the preset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import labels
from mbgf_cli.errors import UserError

# Training recipe keys are TrainConfig field names (mbgf_cli/train_config.py).
XCLIP_RECIPE = dict(
    model="b16", variant="xclip", frames=8, input_size=None,
    epochs=30, warmup_epochs=5, lr=8e-6, new_lr_mult=10.0, min_lr_ratio=0.01, weight_decay=0.001,
    batch_size=8, total_batch=256, clip_grad=None, label_smoothing=0.1, mixup=0.8, cutmix=1.0,
    freeze_text=True, flip=True, crop="multiscale", jitter=0.8, gray=0.2, prompts="all", cache_decoded=False,
    workers=8,
)

# The synthetic demo, tuned on 2 CPU cores: tiny from scratch, so every parameter is new and one
# learning rate serves all; 20 epochs, to finish within 5 minutes, at the lr that did best over
# several training seeds in 20 epochs (higher ones fell further behind on some seeds); 8 frames at
# 48 px (3 x 3 patches); motion direction is the label, so no horizontal flip and no colour changes;
# the text encoder stays frozen (training it from random init collapsed the class features); 200
# videos per class, as fewer overfit; decoded frames held in memory (decoding every epoch would cost
# more than the model). --amp auto trains it in fp32 (mbgf_cli/precision.py): a model this small
# gains nothing from bf16 autocast, even on CPUs with bf16 units.
SYNTHETIC_RECIPE = dict(
    model="tiny", variant="clip", frames=8, input_size=48,
    epochs=20, warmup_epochs=1, lr=5e-4, new_lr_mult=1.0, min_lr_ratio=0.01, weight_decay=0.05,
    batch_size=16, total_batch=16, clip_grad=1.0, label_smoothing=0.0, mixup=0.0, cutmix=0.0,
    freeze_text=True, flip=False, crop="multiscale", jitter=0.0, gray=0.0, prompts="one", cache_decoded=True,
    workers=0,
)

# How the synthetic dataset is generated into the cache (arguments of data.synthetic.generate):
# 250 videos per class (200 train, 50 val), 32 frames of 64 px.
SYNTHETIC_GENERATION = dict(class_set="a", videos_per_class=250, frames=32, size=64, seed=0)

# X-CLIP's few-shot recipe (configs/hmdb51/16_32.yaml, configs/ucf101/16_32.yaml on top of its
# defaults), as TrainConfig fields over XCLIP_RECIPE: ViT-B/16 from CLIP, 32 frames at 224, 50 epochs
# with 5 of warm-up, lr 2e-6 (new modules x10), cosine to lr/100, weight decay 0.001, label smoothing
# 0.1, mixup/cutmix, text frozen, and batch 4 x accumulation 2 on each of its 8 GPUs: a total batch of 64.
FEWSHOT_RECIPE = dict(
    model="b16", frames=32, input_size=224, epochs=50, warmup_epochs=5, lr=2e-6, new_lr_mult=10.0,
    min_lr_ratio=0.01, weight_decay=0.001, batch_size=4, total_batch=64, label_smoothing=0.1, mixup=0.8,
    cutmix=1.0, freeze_text=True, prompts="all", flip=True,
)

# The synthetic few-shot demonstration, over SYNTHETIC_RECIPE: fine-tune the tiny model trained on class
# set a (`mbgf train --dataset synthetic`) on K videos per class of set b. Batches of 8 so that K=2 (24
# clips) still makes steps; 60 epochs at lr 1e-3 (from the 20-epoch starting model, CLIP+MBGF at
# K=2/4/8/16 on 300 val videos, one thread: lr 2e-3 gave 16/16/22/41%, 1e-3 20/19/30/55%, 5e-4
# 22/23/30/49%).
SYNTHETIC_FEWSHOT_RECIPE = dict(epochs=60, warmup_epochs=3, lr=1e-3, batch_size=8, total_batch=8)

# Set b of the synthetic generator, in the cache: 100 train and 25 val videos per class (300 val videos,
# so a K-shot result moves in steps of 0.33%).
SYNTHETIC_B_GENERATION = dict(class_set="b", videos_per_class=125)


@dataclass(frozen=True)
class Preset:
    name: str
    num_classes: int
    recipe: dict = field(default_factory=dict)
    test_views: tuple[int, int] = (1, 1)  # the published test protocol (clips, crops) for `mbgf eval`

    def label_file(self) -> Path | None:
        """The shipped label CSV, or None where the labels come with the data (synthetic)."""
        return labels.label_file(self.name) if self.name in labels.LABEL_FILES else None


PRESETS = {
    "k400": Preset("k400", 400, XCLIP_RECIPE, test_views=(4, 3)),
    "ucf101": Preset("ucf101", 101, XCLIP_RECIPE, test_views=(1, 3)),
    "hmdb51": Preset("hmdb51", 51, XCLIP_RECIPE, test_views=(1, 3)),
    "synthetic": Preset("synthetic", 12, SYNTHETIC_RECIPE, test_views=(1, 1)),
}

# Used when no --dataset is given (explicit --root/--train-list/--val-list/--labels).
GENERIC_RECIPE = {**XCLIP_RECIPE}


def get_preset(name: str) -> Preset:
    from mbgf_cli.errors import UserError

    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown dataset preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def resolve_label_file(root: Path, labels_option, preset: Preset | None) -> Path:
    """The class list of a dataset: ``--labels``, else ROOT/labels.csv, else the preset's shipped list."""
    if labels_option:
        return Path(labels_option)
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    if preset is not None and preset.label_file() is not None:
        return preset.label_file()
    raise UserError(f"{root}: no labels.csv; give --labels FILE or a --dataset preset (k400, ucf101, hmdb51)")


def dataset_root(root, dataset: str | None, generation: dict | None = None, quiet: bool = False) -> Path:
    """The dataset folder of a command: ``--root``, else for ``--dataset synthetic`` the synthetic dataset
    in the cache (``generation``: its settings over SYNTHETIC_GENERATION; generated on first use)."""
    if root:
        path = Path(root)
        if not path.exists():
            raise UserError(f"{path}: no such dataset folder (--root)")
        return path
    if dataset == "synthetic":
        return ensure_synthetic(generation, quiet=quiet)
    needs = f"--dataset {dataset} reads its videos from a folder: " if dataset else ""
    raise UserError(f"{needs}give the dataset folder with --root DIR (videos/ or videos.tar, train.txt, val.txt), "
                    "or use --dataset synthetic")


def resolve_list(root: Path, name: str | None, default: str, option: str) -> Path:
    """A video list as every command reads it: ``name`` as given when it exists, else under the root;
    ``ROOT/default`` without a name. A list that is not there is an error naming ``option``."""
    if name is None:
        path = root / default
    else:
        path = Path(name)
        if not path.exists() and not path.is_absolute() and (root / path).exists():
            path = root / path
    if not path.is_file():
        raise UserError(f"{path}: no such video list (give {option} FILE)")
    return path


def cache_dir() -> Path:
    """mbgf's cache: ``$MBGF_CACHE``, default ``~/.cache/mbgf``."""
    return Path(os.environ.get("MBGF_CACHE") or Path.home() / ".cache" / "mbgf").expanduser()


def synthetic_dir(generation: dict | None = None) -> Path:
    """Where the synthetic dataset with these generation settings lives in the cache. The name holds
    the settings and a digest of the generator's code, so a changed generator makes a new dataset."""
    import hashlib

    from mbgf_cli.data import synthetic

    g = {**SYNTHETIC_GENERATION, **(generation or {})}
    code = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:8]
    name = f"synthetic-{g['class_set']}-v{g['videos_per_class']}-f{g['frames']}-s{g['size']}-seed{g['seed']}-{code}"
    return cache_dir() / "datasets" / name


def synthetic_start_dir() -> Path:
    """The run folder, in the cache, of the few-shot demonstration's starting model: the synthetic recipe
    trained on set a. Named by the dataset and the recipe, so a changed recipe or generator trains anew."""
    import hashlib
    import json

    recipe = hashlib.sha256(json.dumps(SYNTHETIC_RECIPE, sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir() / "runs" / f"{synthetic_dir().name}-tiny-clip-mbgf-{recipe}"


def ensure_synthetic(generation: dict | None = None, quiet: bool = False) -> Path:
    """The synthetic dataset's directory, generating it on first use (later runs reuse it).

    Generation goes to a temporary sibling that is renamed into place when complete, so an interrupted
    generation is never mistaken for a dataset. Under torchrun only rank 0 generates; the others wait.
    """
    from mbgf_cli import distributed
    from mbgf_cli.console import err_console

    g = {**SYNTHETIC_GENERATION, **(generation or {})}
    target = synthetic_dir(g)
    if not (target / "train.txt").is_file() and int(os.environ.get("RANK", "0")) == 0:
        from mbgf_cli.data import synthetic

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        if not quiet:
            err_console.print(f"generating the synthetic dataset into {target} (first use only)")
        synthetic.generate(staging, **g)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first: keep theirs
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    distributed.barrier()
    return target

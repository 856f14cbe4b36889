"""A run folder's lifecycle: who may use it, what it already holds, and what a new start does with it.

A run folder is the unit of a training run (docs/DESIGN.md, "Run lifecycle"): ``config.json``,
``metrics.jsonl``, ``summary.json``, the ``last/``, ``best/`` and ``step/`` checkpoints. A folder is a
run only when mbgf's output marker (``mbgf_cli/outputs.py``, kind "train") says so, or when it is a run
folder of an earlier version (no marker, but a run's ``config.json`` and an mbgf checkpoint in ``last/``
or ``best/``; adopted on start). Any other non-empty folder is the user's and is refused, ``--overwrite``
or not. In a run folder, a new start of the same configuration continues the run, another configuration
is refused (``--overwrite`` starts again, deleting only what the marker lists); a run that computed
nothing yet (only its ``config.json``) is taken by the next start, whatever its configuration.

While a run uses the folder it holds an exclusive ``flock`` on ``.mbgf-run.lock`` inside it, which
records the holder's PID and host. The kernel drops the lock when the holder dies (a SIGKILL too), so
a lock is never left stuck; under torchrun only rank 0 locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mbgf_cli import train_config
from mbgf_cli.errors import UserError
from mbgf_cli.train_config import config_differences

LOCK_FILE = ".mbgf-run.lock"
KIND = "train"  # the output marker's kind of a run folder

# What makes a folder a run: any of these (checkpoints, the record of the epochs, the configuration).
TRACES = ("last", "best", "step", "metrics.jsonl", "config.json", "summary.json")
# Everything a run writes into its folder; --overwrite deletes these and nothing else.
ARTEFACTS = (*TRACES, "training_curve.png", "skipped", "skipped_train.txt", "skipped_val.txt", "tensorboard",
             "wandb", ".last.old", ".best.old", ".step.old")
# Files written through mbgf_cli.fileio (temporary sibling ".NAME.tmp-PID-HEX"; older writers: ".NAME.tmp").
_FILES_WRITTEN = ("config.json", "summary.json", "metrics.jsonl", "training_curve.png", "skipped_train.txt",
                  "skipped_val.txt")
# The temporaries of the engine's own writers, and nothing else: checkpoint staging folders
# (".last.tmp-1a2b3c4d", see checkpoint.save_checkpoint) and the files above.
_TEMPORARY = re.compile(r"^\.(?:(?:last|best|step)\.tmp-[0-9a-f]{8}"
                        r"|(?:" + "|".join(re.escape(n) for n in _FILES_WRITTEN) + r")\.tmp(?:-\d+-[0-9a-f]{6})?)$")


# --------------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------------


class RunFolderBusy(UserError):
    """Another live process holds the run folder."""


class RunLock:
    """``with RunLock(folder):`` the folder is this process's until the block ends (or the process dies).

    Processes forked while the lock is held (data loader workers, decoding pools) close their copy of
    the descriptor at once: a flock belongs to the open file, so a surviving child would otherwise keep
    the folder locked after its parent was killed.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self._forget_in_children = False

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(f"{self.folder}: in use by another run ({describe_holder(self.path)}); wait "
                                "for it to end, or choose another --output") from None
        except OSError:  # a file system without flock (some network mounts): no lock rather than no run
            os.close(fd)
            return self
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd
        if not self._forget_in_children:
            os.register_at_fork(after_in_child=self._close_in_child)
            self._forget_in_children = True
        return self

    def _close_in_child(self) -> None:
        # close, never LOCK_UN: unlocking from a child would unlock the parent's open file too
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no PID of a finished run left behind to mislead anyone
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def describe_holder(lock_path: Path) -> str:
    """"PID 1234 on host h" from a lock file (the holder writes it just after locking: wait briefly)."""
    for _ in range(20):
        try:
            holder = json.loads(Path(lock_path).read_text() or "null")
        except (OSError, json.JSONDecodeError):
            holder = None
        if isinstance(holder, dict) and "pid" in holder:
            host = holder.get("host")
            return f"PID {holder['pid']}" + (f" on {host}" if host and host != socket.gethostname() else "")
        time.sleep(0.05)
    return "PID unknown"


# --------------------------------------------------------------------------------------------------
# What a folder holds
# --------------------------------------------------------------------------------------------------


def legacy_run(folder) -> bool:
    """A run folder an earlier version wrote (before the output marker): no marker, a ``config.json`` that
    parses as a run's configuration, and an mbgf checkpoint in ``last/`` or ``best/``."""
    from mbgf_cli import checkpoint, outputs

    folder = Path(folder)
    if outputs.read_marker(folder) is not None:
        return False
    try:
        recorded = read_recorded_config(folder)
    except UserError:
        return False
    known = {f for f in train_config.TrainConfig.__dataclass_fields__}
    if recorded is None or not {"model", "variant", "epochs", "lr", "seed"} <= set(train_config.recorded_settings(recorded)) <= known:
        return False
    for name in ("last", "best"):
        try:
            if "config" in checkpoint.read_meta(folder / name):
                return True
        except (UserError, OSError, ValueError, KeyError, TypeError):
            continue
    return False


def is_run(folder) -> bool:
    """``folder`` holds a training run: mbgf's marker of kind "train", or an earlier version's run."""
    from mbgf_cli import outputs

    marker = outputs.read_marker(folder)
    return (marker or {}).get("kind") == KIND or legacy_run(folder)


def check_run_folder(folder, overwrite: bool = False) -> Path:
    """``--output`` can hold this run (checked before any work): absent, empty, a run folder, or left with
    only a lock by a start that stopped at once. Anything else is the user's: refused, or with
    ``--overwrite`` written beside unless a name the run writes is the user's (the one policy,
    ``mbgf_cli/outputs.py``)."""
    from mbgf_cli import outputs

    folder = Path(folder)
    if folder.is_dir() and ({p.name for p in folder.iterdir()} <= {LOCK_FILE} or legacy_run(folder)):
        return folder
    # writes: with --overwrite a run goes beside the user's files, never over one of its names
    return outputs.check_output_folder(folder, "--output", KIND, overwrite, writes=ARTEFACTS)


def claim(folder) -> None:
    """Mark ``folder`` as a run's: the marker lists the names a run writes (``--overwrite`` removes those
    and nothing else). An earlier version's run folder is adopted the same way."""
    from mbgf_cli import outputs

    Path(folder).mkdir(parents=True, exist_ok=True)
    outputs.record_outputs(folder, KIND, ARTEFACTS)


def computed_nothing(folder) -> bool:
    """A run that stopped before it computed anything (a refused setting, a NaN before the first epoch
    ended): nothing but its ``config.json``. The next start may take its folder."""
    return set(traces(folder)) <= {"config.json"}


def traces(folder) -> list[str]:
    """The names in ``folder`` that show a run was started there (empty: a fresh folder)."""
    folder = Path(folder)
    return [name for name in TRACES if (folder / name).exists()]


def stale_temporaries(folder) -> list[Path]:
    """Temporaries that the engine's own writers left behind when killed, and only those."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _TEMPORARY.match(p.name))


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete what :func:`stale_temporaries` finds. Call with the lock held: then no writer is alive."""
    removed = stale_temporaries(folder)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


def overwrite(folder) -> list[str]:
    """``--overwrite``: delete the run's own files (what the marker lists: checkpoints, records, logs);
    anything else in the folder (the user's notes, data) stays. Returns the names removed."""
    from mbgf_cli import outputs

    if legacy_run(folder):
        claim(folder)
    removed = outputs.remove_recorded(folder)
    remove_stale_temporaries(folder)
    return removed


def checkpoint_iteration(directory) -> int | None:
    """The optimiser step a resumable checkpoint stopped at; None for one without a training state."""
    from mbgf_cli import checkpoint

    try:
        directory = checkpoint.resolve_directory(directory)
    except UserError:
        return None
    if not checkpoint.has_train_state(directory):
        return None
    try:
        position = json.loads((directory / checkpoint.STATE_JSON_FILE).read_text())["position"]
        return int(position["iteration"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{directory / checkpoint.STATE_JSON_FILE}: damaged (no readable position); resume "
                        "from another checkpoint, or start again with --overwrite") from None


def newest_checkpoint(folder) -> Path | None:
    """The checkpoint to continue a run from: ``step/`` or ``last/``, whichever stopped later (``last/``
    on a tie: it has the epoch's evaluation too). None when the folder has neither."""
    from mbgf_cli import checkpoint

    folder = Path(folder)
    best_iteration, newest = None, None
    for name in ("last", "step"):
        iteration = checkpoint_iteration(folder / name)
        if iteration is not None and (best_iteration is None or iteration > best_iteration):
            best_iteration, newest = iteration, checkpoint.resolve_directory(folder / name)
    return newest


def resolve_resume(path) -> tuple[Path, Path]:
    """``--resume PATH``: ``(run folder, checkpoint to continue from)``. PATH is a run folder (its newest
    checkpoint), or one of its ``last/`` and ``step/`` checkpoints."""
    from mbgf_cli import checkpoint

    path = Path(path)
    if path.name == checkpoint.MODEL_FILE and path.is_file():
        path = path.parent
    is_checkpoint = (path / checkpoint.MODEL_FILE).is_file() or (
        not path.exists() and (path.parent / f".{path.name}.old" / checkpoint.MODEL_FILE).is_file())
    if is_checkpoint:
        directory = checkpoint.resolve_directory(path)
        if checkpoint_iteration(directory) is None:
            raise UserError(f"{path}: holds weights only, no training state; resume the run folder "
                            f"{path.parent} (it continues from its newest last/ or step/ checkpoint)")
        return path.parent, directory
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder or checkpoint")
    newest = newest_checkpoint(path)
    if newest is None:
        found = traces(path)
        raise UserError(f"{path}: no last/ or step/ checkpoint to resume from"
                        + (f" (it holds {', '.join(found)})" if found else " (not a run folder)"))
    return path, newest


def read_recorded_config(folder) -> dict | None:
    """The configuration recorded in ``folder/config.json`` (None when there is none)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not readable as JSON ({' '.join(str(e).split())}); start again with "
                        "--overwrite, or choose another --output") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a run configuration (a JSON object)")
    return config


# --------------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------------


def option_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def show_value(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(show_value(v) for v in value)
    return str(value)


def describe_differences(differences, left: str = "there", right: str = "here") -> str:
    """``--lr 0.001 there, 0.002 here; --epochs 30 there, 10 here``."""
    return "; ".join(f"{option_name(key)} {show_value(a)} {left}, {show_value(b)} {right}"
                     for key, a, b in differences)


def refuse_other_configuration(folder, differences) -> UserError:
    return UserError(f"{folder} holds a run of another configuration ({describe_differences(differences)}); "
                     "resume it with the same options, or --overwrite, or another --output")


# --------------------------------------------------------------------------------------------------
# Taking the folder for a run
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Where a run continues from: a resumable checkpoint and its training state."""

    directory: Path
    saved: dict


def open_run_folder(cfg, ctx, start: Start | None, held: contextlib.ExitStack) -> Start | None:
    """Take the run folder for this run: rank 0 locks it (held until the run ends), marks it as a run's,
    removes what killed writers left, and decides where the run starts (:func:`choose_start`); every
    process then loads the checkpoint it continues from."""
    from mbgf_cli import checkpoint, distributed
    from mbgf_cli.fileio import atomic_write_json

    out = Path(cfg.out)
    decision = None
    if ctx.is_main:
        try:
            check_run_folder(out, cfg.overwrite)  # again: another start may have written meanwhile
            held.enter_context(RunLock(out))
            remove_stale_temporaries(out)
            resume = str(start.directory) if start is not None else choose_start(cfg, out)
            claim(out)
            if resume is None or not (out / "config.json").is_file():
                atomic_write_json(out / "config.json", cfg.to_dict())  # every setting, presets filled in
            decision = {"resume": resume}
        except UserError as e:  # every process stops with the same message
            decision = {"error": str(e)}
    decision = distributed.broadcast_object(decision)
    if "error" in decision:
        raise UserError(decision["error"])
    if start is None and decision["resume"] is not None:
        directory = Path(decision["resume"])
        start = Start(directory, checkpoint.load_train_state(directory))
    return start


def choose_start(cfg, out: Path) -> str | None:
    """``--resume auto``: the checkpoint to continue from, None to start afresh. A run folder is that run:
    continued when its configuration is this one, refused otherwise; ``--overwrite`` first deletes the
    run's own files. A run that computed nothing yet (only its config.json) is replaced."""
    from mbgf_cli import checkpoint
    from mbgf_cli.console import err_console

    if cfg.overwrite or (computed_nothing(out) and traces(out)):
        removed = overwrite(out)
        if removed and cfg.overwrite:
            err_console.print(f"--overwrite: removed {', '.join(removed)} from {out}", highlight=False)
        return None
    found = traces(out)
    if not found:
        return None
    newest = newest_checkpoint(out)
    recorded = read_recorded_config(out)
    if recorded is None and newest is not None:
        recorded = checkpoint.load_train_state(newest)["config"]
    if recorded is not None:
        differences = config_differences(train_config.recorded_settings(recorded), cfg.to_dict(),
                                         ignore=train_config.NOT_COMPARED)
        if differences:
            raise refuse_other_configuration(out, differences)
    if newest is not None:
        return str(newest)
    shown = ", ".join(name + ("/" if (out / name).is_dir() else "") for name in found)
    raise UserError(f"{out} holds a run already ({shown}) but no last/ or step/ checkpoint to continue it from; "
                    f"start it again with --overwrite, or choose another {train_config.flag('out')}")


@contextlib.contextmanager
def disk_full_advice(out: Path):
    """A full disk while writing the run: advice that works from where the run is (no resumable
    checkpoint yet: only a new start can go on)."""
    try:
        yield
    except UserError as e:
        if "no space left on the device" not in str(e):
            raise
        what = str(e).split("; free some space")[0]
        try:
            resumable = newest_checkpoint(out) is not None
        except UserError:
            resumable = False
        advice = ("free some space, then run the same command again: it continues from the newest checkpoint"
                  if resumable else "no resumable checkpoint was written yet: free some space, then run the same "
                  "command again with --overwrite")
        raise UserError(f"{what}; {advice}") from None


def default_out_dir(cfg) -> str:
    """``runs/<dataset>-<model>-<variant>[-mbgf]``: the first of it and its numbered siblings (-2, -3, ...)
    that is empty, or that holds a run of this very configuration (which then continues)."""
    base = f"runs/{cfg.dataset or Path(cfg.root or 'train').name}-{cfg.model}-{cfg.variant}{'-mbgf' if cfg.mbgf else ''}"
    wanted = cfg.to_dict()
    candidate, number = base, 1
    while Path(candidate).exists() and any(Path(candidate).iterdir()):
        try:
            recorded = read_recorded_config(candidate) if is_run(candidate) else None
        except UserError:
            recorded = None
        if recorded is not None and not config_differences(recorded, wanted, ignore=train_config.NOT_COMPARED):
            break
        number += 1
        candidate = f"{base}-{number}"
    return candidate

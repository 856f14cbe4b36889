"""Experiment tracking (mbgf_cli.tracking): metrics.jsonl rows, TensorBoard event files read back with
tensorboard's own reader, a W&B offline run read back with wandb's own record schema, and one-line
errors for a tracker that is unknown or not installed."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbgf_cli import tracking
from mbgf_cli.errors import UserError


def _record(epoch, iteration, top1, gates=None):
    record = {"epoch": epoch, "iteration": iteration, "train_loss": 2.0 / epoch, "lr": 1e-3, "top1": top1,
              "top5": min(1.0, top1 + 0.3), "mean_class": top1, "best_top1": top1}
    if gates:
        record["gates"] = gates
    return record


def _events(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / tracking.TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0,
                                                                                     "tensors": 0})
    events.Reload()
    return events


def _scalar(events, tag):
    return [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)]


def test_tensorboard_holds_steps_epochs_gates_and_the_confusion_matrix(tmp_path):
    gates = {"appearance": 0.5, "temporal": 0.2, "motion": 0.3}
    tracker = tracking.open_tracker(tmp_path, ("tensorboard",), {"lr": 1e-3, "model": "tiny"})
    for iteration in range(1, 7):
        tracker.log_step(iteration, loss=3.0 - iteration / 10, lr=iteration * 1e-4, clips_per_s=100.0 + iteration)
        if iteration % 3 == 0:
            tracker.log_epoch(_record(iteration // 3, iteration, 0.25 * (iteration // 3), gates))
    matrix = np.array([[3, 1, 0], [0, 4, 0], [2, 0, 2]])
    tracker.log_confusion(matrix, ["up", "down", "left"], 6)
    assert tracker.notes() == [f"TensorBoard: tensorboard --logdir {tmp_path / 'tensorboard'}"]
    tracker.close()

    events = _events(tmp_path)
    assert _scalar(events, "train/loss") == [(i, 3.0 - i / 10) for i in range(1, 7)]
    assert _scalar(events, "train/lr") == [(i, i * 1e-4) for i in range(1, 7)]
    assert _scalar(events, "train/clips_per_s") == [(i, 100.0 + i) for i in range(1, 7)]
    assert _scalar(events, "val/top1") == [(3, 0.25), (6, 0.5)]
    assert _scalar(events, "val/top5") == [(3, 0.55), (6, 0.8)]
    assert _scalar(events, "epoch/train_loss") == [(3, 2.0), (6, 1.0)]
    assert _scalar(events, "gate/motion") == [(3, 0.3), (6, 0.3)]
    assert _scalar(events, "gate/appearance") == [(3, 0.5), (6, 0.5)]
    image = events.Images("val/confusion_matrix")
    assert len(image) == 1 and image[0].step == 6 and (image[0].width, image[0].height) == (48, 48)
    # the table: tensorboard stores text as a string tensor
    text = [t for t in events.Tags()["tensors"] if "confusion_matrix" in t]
    table = events.Tensors(text[0])[0].tensor_proto.string_val[0].decode()
    assert "| 0 up | 3 | 1 | 0 |" in table and "| 2 left | 2 | 0 | 2 |" in table
    # metrics.jsonl holds the same epochs
    assert [r["epoch"] for r in tracking.MetricsLog(tmp_path / "metrics.jsonl").read()] == [1, 2]


def test_a_resumed_run_replaces_what_the_killed_one_logged_past_its_checkpoint(tmp_path):
    first = tracking.open_tracker(tmp_path, ("tensorboard",), {"lr": 1e-3})
    for iteration in range(1, 6):
        first.log_step(iteration, loss=float(iteration))
        if iteration in (2, 4):
            first.log_epoch(_record(iteration // 2, iteration, 0.1 * iteration))
    first.close()  # as if killed after step 5, with the checkpoint of epoch 1 (step 2) the newest

    history = tracking.MetricsLog(tmp_path / "metrics.jsonl").read()[:1]
    resumed = tracking.open_tracker(tmp_path, ("tensorboard",), {"lr": 1e-3}, history=history, iteration=2)
    assert [r["epoch"] for r in tracking.MetricsLog(tmp_path / "metrics.jsonl").read()] == [1]
    for iteration in range(3, 5):
        resumed.log_step(iteration, loss=10.0 * iteration)
    resumed.log_epoch(_record(2, 4, 0.9))
    resumed.close()

    events = _events(tmp_path)
    assert _scalar(events, "train/loss") == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    assert _scalar(events, "val/top1") == [(2, 0.2), (4, 0.9)]
    assert [r["top1"] for r in tracking.MetricsLog(tmp_path / "metrics.jsonl").read()] == [0.2, 0.9]


def test_metrics_rows_are_on_disk_when_append_returns_and_rewrite_keeps_exactly_the_history(tmp_path):
    log = tracking.MetricsLog(tmp_path / "metrics.jsonl")
    log.append(_record(1, 6, 0.5))
    log.append(_record(2, 12, 0.6))
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    log.rewrite([_record(1, 6, 0.5)])
    assert log.read() == [_record(1, 6, 0.5)]
    log.rewrite([])  # resumed inside the first epoch: no row, and no file (a file is a trace of a run)
    assert not (tmp_path / "metrics.jsonl").exists()


def _wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run (``run-ID.wandb``), parsed with wandb's own protobuf schema; the
    file is a LevelDB-style log: a 7-byte header, then 32 kB blocks of (crc, length, type, data) chunks."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, block = path.read_bytes(), 32768
    position, records, pending = 7, [], b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # the block's tail is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _wandb_history(run_dir: Path) -> list[dict]:
    rows = []
    for record in _wandb_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            rows.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                         for item in record.history.item})
    return rows


@pytest.fixture
def wandb_offline_env(tmp_path, monkeypatch):
    """No network, no credentials, nothing written outside tmp_path."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))


def test_wandb_logs_offline_without_credentials_and_a_resumed_run_continues_it(tmp_path, wandb_offline_env):
    run_dir = tmp_path / "run"
    tracker = tracking.open_tracker(run_dir, ("wandb",), {"lr": 1e-3, "model": "tiny"})
    for iteration in (1, 2, 3):
        tracker.log_step(iteration, loss=3.0 - iteration, lr=1e-4 * iteration)
    tracker.log_epoch(_record(1, 3, 0.5, {"appearance": 0.4, "temporal": 0.3, "motion": 0.3}))
    tracker.log_confusion(np.array([[2, 0], [1, 1]]), ["up", "down"], 3)
    (note,) = tracker.notes()
    assert note.startswith("W&B: offline; upload with: wandb sync ")
    tracker.close()
    import wandb

    wandb.teardown()  # what the end of the process does: the W&B service has written the whole run file

    history = _wandb_history(run_dir)
    by_step = {row["_step"]: row for row in history}
    assert by_step[1]["train/loss"] == 2.0 and by_step[2]["train/lr"] == pytest.approx(2e-4)
    assert by_step[3]["val/top1"] == 0.5 and by_step[3]["gate/motion"] == 0.3
    assert by_step[3]["val/confusion_matrix/_type"] == "table-file"
    (files,) = run_dir.glob("wandb/offline-run-*/files")
    table = json.loads((files / by_step[3]["val/confusion_matrix/path"]).read_text())
    assert table["columns"] == ["true", "predicted", "videos"]
    assert table["data"] == [["up", "up", 2], ["down", "up", 1], ["down", "down", 1]]
    (run_record,) = [r.run for r in _wandb_records(run_dir) if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["lr"] == 1e-3 and config["model"] == "tiny" and run_record.project == "mbgf"

    run_id = (run_dir / "wandb" / tracking.WANDB_ID_FILE).read_text().strip()
    assert run_record.run_id == run_id
    resumed = tracking.open_tracker(run_dir, ("wandb",), {"lr": 1e-3, "model": "tiny"}, history=[], iteration=3)
    assert resumed.backends[0].run.id == run_id
    resumed.close()


def test_an_unknown_tracker_and_a_missing_package_are_one_line_errors():
    assert tracking.parse_backends(["tensorboard,wandb", "none"]) == ("tensorboard", "wandb")
    assert tracking.parse_backends("none") == ()
    with pytest.raises(UserError, match=r"^--report-to mlflow: not a tracker; choose tensorboard, wandb"):
        tracking.parse_backends(["tensorboard", "mlflow"])
    script = textwrap.dedent("""
        import sys
        sys.modules["wandb"] = None  # what an environment without wandb looks like to an import
        from mbgf_cli import tracking
        from mbgf_cli.errors import UserError
        try:
            tracking.check_available(("wandb",))
        except UserError as e:
            print(e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "--report-to wandb needs the wandb package: pip install wandb"


def test_the_confusion_image_shades_by_row_share():
    image = tracking.confusion_image(np.array([[4, 0], [1, 3]]), max_side=4)
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 75, 195]  # a whole row: the darkest shade
    assert image[0, 3].tolist() == [255, 255, 255]  # never predicted: white
    assert image[2, 0].tolist() == [191, 210, 240]  # a quarter of the row

"""K-shot protocol: nested deterministic sampling, split files, the table, results.csv, resume."""

import csv
import json

import pytest

from mbgf_cli import fewshot, tables
from mbgf_cli.data import read_video_list, write_video_list
from mbgf_cli.errors import UserError

NUM_CLASSES = 4


def train_entries(per_class: int = 20, num_classes: int = NUM_CLASSES) -> list[tuple[str, int]]:
    # Paths with a space too: the list format splits on the last whitespace.
    return [(f"class {c}/video_{i:03d}.mp4", c) for c in range(num_classes) for i in range(per_class)]


# --------------------------------------------------------------------------- sampling


def test_sampling_is_nested_and_has_k_per_class():
    splits = fewshot.sample_shots(train_entries(), [2, 4, 8, 16], seed=0, num_classes=NUM_CLASSES)
    for k, chosen in splits.items():
        assert [sum(1 for _, c in chosen if c == label) for label in range(NUM_CLASSES)] == [k] * NUM_CLASSES
        assert len(set(chosen)) == len(chosen)
        assert set(chosen) <= set(train_entries())
    assert set(splits[2]) < set(splits[4]) < set(splits[8]) < set(splits[16])


def test_sampling_is_deterministic_and_independent_of_list_order():
    entries = train_entries()
    first = fewshot.sample_shots(entries, [2, 8], seed=3, num_classes=NUM_CLASSES)
    shuffled = entries[1::2] + entries[::2][::-1] + entries[:5]  # reordered, with duplicate lines
    again = fewshot.sample_shots(shuffled, [2, 8], seed=3, num_classes=NUM_CLASSES)
    assert first == again


def test_sampling_depends_on_the_seed_and_follows_the_published_rule():
    entries = train_entries()
    seed0 = fewshot.sample_shots(entries, [4], seed=0, num_classes=NUM_CLASSES)[4]
    seed1 = fewshot.sample_shots(entries, [4], seed=1, num_classes=NUM_CLASSES)[4]
    assert seed0 != seed1
    # The documented rule, rebuilt by hand: per class, the K smallest sha256("seed:path").
    import hashlib
    expected = []
    for c in range(NUM_CLASSES):
        paths = sorted((p for p, label in entries if label == c),
                       key=lambda p: hashlib.sha256(f"1:{p}".encode()).hexdigest())
        expected += [(p, c) for p in paths[:4]]
    assert seed1 == expected


def test_too_few_videos_names_every_short_class():
    entries = [e for e in train_entries(per_class=10) if not (e[1] == 1 and int(e[0][-7:-4]) >= 3)]
    entries = [e for e in entries if not (e[1] == 3 and int(e[0][-7:-4]) >= 7)]
    names = ["walk", "run", "jump", "swim"]
    with pytest.raises(UserError) as err:
        fewshot.sample_shots(entries, [2, 8], seed=0, num_classes=NUM_CLASSES, class_names=names,
                             source="data/train.txt")
    message = str(err.value)
    assert message.startswith("data/train.txt:")
    assert "K=8" in message and "'run' (3)" in message and "'swim' (7)" in message
    assert "walk" not in message and "jump" not in message
    # A class with no videos at all is named too (without class names: by id).
    with pytest.raises(UserError, match=r"class 2 \(0\)"):
        fewshot.sample_shots([e for e in train_entries() if e[1] != 2], [2], seed=0, num_classes=NUM_CLASSES)


# --------------------------------------------------------------------------- split files


def test_split_files_round_trip(tmp_path):
    entries = train_entries()
    written = fewshot.write_splits(tmp_path, entries, [2, 4], [0, 1], NUM_CLASSES)
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == [
        "K2_seed0.txt", "K2_seed1.txt", "K4_seed0.txt", "K4_seed1.txt"]
    assert (tmp_path / "splits" / "K2_seed0.txt").read_text().splitlines()[0].endswith(" 0")
    for split in written:
        sampled = fewshot.sample_shots(entries, [split.shots], int(split.seed), NUM_CLASSES)[split.shots]
        assert read_video_list(split.path, NUM_CLASSES) == sampled
    # Read back through --split-file: K and seed come from the names.
    back = fewshot.read_split_files([s.path for s in written], NUM_CLASSES)
    assert [(s.shots, s.seed, s.path) for s in back] == [(s.shots, s.seed, s.path) for s in written]
    # Writing again is a no-op; a different sample under the same name is refused.
    fewshot.write_splits(tmp_path, entries, [2, 4], [0, 1], NUM_CLASSES)
    with pytest.raises(UserError, match="K2_seed0.txt: exists with another K-shot sample"):
        fewshot.write_splits(tmp_path, train_entries()[::-1][:-3] + [("other.mp4", 0)], [2], [0], NUM_CLASSES)


def test_split_file_with_another_name_and_a_wrong_one(tmp_path):
    published = tmp_path / "hmdb_5shot_a.txt"
    write_video_list(published, fewshot.sample_shots(train_entries(), [5], 7, NUM_CLASSES)[5])
    [split] = fewshot.read_split_files([published], NUM_CLASSES)
    assert (split.shots, split.seed) == (5, "hmdb_5shot_a")
    uneven = tmp_path / "uneven.txt"
    write_video_list(uneven, train_entries(3)[:-1])
    with pytest.raises(UserError, match="uneven.txt: .* between 2 and 3 videos per class"):
        fewshot.read_split_files([uneven], NUM_CLASSES)
    misnamed = tmp_path / "K4_seed0.txt"
    write_video_list(misnamed, train_entries(3))
    with pytest.raises(UserError, match="K4_seed0.txt: named for K=4 but holds 3 videos in every class"):
        fewshot.read_split_files([misnamed], NUM_CLASSES)


# --------------------------------------------------------------------------- the table


def test_table_mean_std_delta_and_bold():
    values = {
        ("clip", 2): [70.0, 72.0, 74.0],
        ("clip+mbgf", 2): [76.0, 78.0, 80.0],
        ("clip", 4): [80.0, 81.0, 82.0],
        ("clip+mbgf", 4): [79.0, 80.0, 81.0],
        ("xclip", 2): [50.0, 50.0, 50.0],
        ("xclip", 4): [90.0, 90.5, 91.0],
    }
    table = tables.shots_table(values, ["clip", "clip+mbgf", "xclip"], [2, 4])
    assert table.columns == ["Q=2", "Q=4"]
    rows = {label: cells for label, cells in table.rows}
    assert list(rows) == ["CLIP", "CLIP +MBGF", "X-CLIP"]
    assert rows["CLIP"][0].text == "72.0 ± 2.0"  # sample std (n - 1) of 70, 72, 74
    assert rows["CLIP +MBGF"][0].text == "78.0 ± 2.0 (+6.0)"
    assert rows["CLIP +MBGF"][1].text == "80.0 ± 1.0 (-1.0)"
    assert rows["X-CLIP"][0].text == "50.0 ± 0.0"  # no MBGF counterpart: no delta
    assert [c.bold for c in rows["CLIP +MBGF"]] == [True, False]
    assert [c.bold for c in rows["X-CLIP"]] == [False, True]
    assert not any(c.bold for c in rows["CLIP"])


def test_table_single_seed_missing_cells_and_markdown():
    values = {("clip", 2): [73.45], ("clip+mbgf", 2): [78.04], ("clip", 8): [90.0]}
    table = tables.shots_table(values, ["clip", "clip+mbgf"], [2, 8])
    rows = dict(table.rows)
    # One seed: no ±; the delta is between the rounded means (78.0 - 73.5), so it adds up on paper.
    assert rows["CLIP +MBGF"][0].text == "78.0 (+4.5)"
    assert rows["CLIP"][0].text == "73.5"
    assert rows["CLIP +MBGF"][1].text == tables.MISSING
    md = tables.to_markdown(table).splitlines()
    assert md[0] == "| Method | Q=2 | Q=8 |"
    assert md[2] == "| CLIP | 73.5 | **90.0** |"
    assert md[3] == f"| CLIP +MBGF | **78.0 (+4.5)** | {tables.MISSING} |"
    rendered = tables.to_rich(table)
    assert rendered.columns[1].header == "Q=2"
    assert tables.table_json(table)["rows"][1]["cells"][0] == {
        "text": "78.0 (+4.5)", "mean": 78.04, "std": None, "delta": 4.5, "runs": 1, "best": True}


def test_unknown_variant_is_a_clear_error():
    assert fewshot.parse_variant("ActionCLIP+MBGF") == fewshot.Variant("actionclip+mbgf", "actionclip", True)
    with pytest.raises(UserError, match=r"unknown variant 'clip\+motion'"):
        fewshot.parse_variant("clip+motion")


# --------------------------------------------------------------------------- runs, resume, results.csv


class FakeEngine:
    """Stands in for the training engine: records each call and writes what a run leaves behind."""

    def __init__(self, interrupt: set[str] = frozenset()):
        self.calls = []
        self.interrupt = set(interrupt)

    def __call__(self, spec: fewshot.RunSpec):
        name = spec.run_dir.name
        self.calls.append((name, spec.resume))
        (spec.run_dir / "last").mkdir(parents=True, exist_ok=True)
        if name in self.interrupt:
            self.interrupt.discard(name)
            raise KeyboardInterrupt
        top1 = 0.5 + 0.01 * spec.split.shots + (0.05 if spec.variant.mbgf else 0.0)
        summary = {"best": {"epoch": 3, "top1": top1 + 0.01, "top5": 1.0, "mean_class": top1},
                   "final": {"epoch": 4, "top1": top1, "top5": 1.0, "mean_class": top1}}
        (spec.run_dir / "summary.json").write_text(json.dumps(summary))


def test_protocol_writes_results_and_resume_skips_finished_runs(tmp_path):
    splits = fewshot.write_splits(tmp_path, train_entries(), [2, 4], [0], NUM_CLASSES)
    variants = [fewshot.parse_variant(v) for v in ("clip", "clip+mbgf")]
    settings = {"epochs": 5, "lr": 2e-6}
    engine = FakeEngine(interrupt={"clip+mbgf_K4_seed0"})

    with pytest.raises(KeyboardInterrupt):
        fewshot.run_protocol(tmp_path, fewshot.plan_runs(tmp_path, variants, splits), engine, settings)
    assert engine.calls == [("clip_K2_seed0", False), ("clip+mbgf_K2_seed0", False), ("clip_K4_seed0", False),
                            ("clip+mbgf_K4_seed0", False)]
    with open(tmp_path / "results.csv") as f:
        assert [(r["variant"], r["shots"]) for r in csv.DictReader(f)] == [
            ("clip", "2"), ("clip+mbgf", "2"), ("clip", "4")]

    # Second invocation: the three finished runs are read back, the interrupted one resumes.
    engine.calls.clear()
    runs = fewshot.plan_runs(tmp_path, variants, splits)
    assert [r.resume for r in runs] == [False, False, False, True]
    results = fewshot.run_protocol(tmp_path, runs, engine, settings)
    assert engine.calls == [("clip+mbgf_K4_seed0", True)]
    assert [(r.variant, r.shots, round(r.top1, 6)) for r in results] == [
        ("clip", 2, 52.0), ("clip+mbgf", 2, 57.0), ("clip", 4, 54.0), ("clip+mbgf", 4, 59.0)]
    back = fewshot.read_results_csv(tmp_path / "results.csv")
    assert [(r.variant, r.shots, r.seed, r.top1, r.epoch) for r in back] == [
        (r.variant, r.shots, r.seed, round(r.top1, 4), r.epoch) for r in results]
    assert back[0].split_file.endswith("K2_seed0.txt")

    # Third invocation: nothing left to train; "best" reads the other summary entry.
    engine.calls.clear()
    best = fewshot.run_protocol(tmp_path, fewshot.plan_runs(tmp_path, variants, splits), engine, settings,
                                report="best")
    assert engine.calls == []
    assert [round(r.top1, 6) for r in best] == [53.0, 58.0, 55.0, 60.0]


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    splits = fewshot.write_splits(tmp_path, train_entries(), [2], [0], NUM_CLASSES)
    variants = [fewshot.parse_variant("clip")]
    fewshot.run_protocol(tmp_path, fewshot.plan_runs(tmp_path, variants, splits), FakeEngine(), {"lr": 2e-6})
    engine = FakeEngine()
    with pytest.raises(UserError, match=r"clip_K2_seed0/fewshot_run.json: this run was made with other "
                                        r"settings \(lr 2e-06 -> 1e-05\)"):
        fewshot.run_protocol(tmp_path, fewshot.plan_runs(tmp_path, variants, splits), engine, {"lr": 1e-5})
    assert engine.calls == []


def test_results_csv_keeps_runs_of_earlier_invocations(tmp_path):
    splits = fewshot.write_splits(tmp_path, train_entries(), [2], [0], NUM_CLASSES)
    clip, mbgf = fewshot.parse_variant("clip"), fewshot.parse_variant("clip+mbgf")
    fewshot.run_protocol(tmp_path, fewshot.plan_runs(tmp_path, [clip], splits), FakeEngine(), {})
    fewshot.run_protocol(tmp_path, fewshot.plan_runs(tmp_path, [mbgf], splits), FakeEngine(), {})
    assert sorted(r.variant for r in fewshot.read_results_csv(tmp_path / "results.csv")) == ["clip", "clip+mbgf"]

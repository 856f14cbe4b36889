"""mmaction2's port of ActionCLIP (open-mmlab/mmaction2 ``projects/actionclip``) -> mbgf's actionclip
variant: a file in mmengine's checkpoint layout (``meta``, ``state_dict`` with ``clip.*`` and
``adapter.*``, ``message_hub``, ``optimizer``, ``param_schedulers``), written with torch.save as
mmengine's save_checkpoint does, converted with ``mbgf convert``, and compared with a from-scratch
computation of mmaction2's forward pass (tests/reference_models.py)."""

from collections import OrderedDict

import numpy as np
import pytest
import reference_models as ref
import torch
from typer.testing import CliRunner

from mbgf_cli import interop
from mbgf_cli.app import app
from mbgf_cli.checkpoint import load_checkpoint
from mbgf_cli.errors import UserError

DIMS = ref.TinyDims()
TOLERANCE = 1e-4  # relative: max |mbgf - mmaction2| / max |mmaction2|
FRAMES, CLASSES, TEMPLATES = 8, 5, 3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights():
    # Small frame embeddings (variance ~1e-5), so that the adapter's LayerNorm epsilon (1e-5 here, 1e-12 in
    # ActionCLIP's own head) changes the result well beyond the tolerance.
    return ref.random_mmaction2_state_dict(DIMS, frames=FRAMES, seed=40, embedding_std=0.003, position_std=0.003)


@pytest.fixture(scope="module")
def mmaction2_file(weights, tmp_path_factory):
    """What mmengine's Runner.save_checkpoint hands to torch.save after an epoch of mmaction2 training."""
    path = tmp_path_factory.mktemp("mmaction2") / "epoch_50.pth"
    torch.save({
        "meta": {"cfg": "model = dict(type='ActionClip', clip_arch='ViT-B/16', num_adapter_segs=8, "
                        "num_adapter_layers=6, ...)", "seed": 0, "experiment_name": "actionclip_vit-tiny",
                 "time": "20240101_000000", "mmengine_version": "0.10.4", "epoch": 50, "iter": 12500},
        "state_dict": OrderedDict(weights),
        "message_hub": {"log_scalars": {}, "runtime_info": {"epoch": 50, "iter": 12500, "max_epochs": 50,
                                                             "best_score": np.float64(0.8125)},
                        "resumed_keys": {"epoch": True, "iter": True}},
        "optimizer": {"state": {}, "param_groups": [{"lr": 5e-6, "betas": (0.9, 0.98), "weight_decay": 0.2}]},
        "param_schedulers": [{"start_factor": 0.01, "end_factor": 1.0, "last_step": 12500}],
    }, path)
    return path


@pytest.fixture(scope="module")
def converted(mmaction2_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("converted") / "mmaction2"
    run = CliRunner().invoke(app, ["convert", str(mmaction2_file), "--output", str(output)])
    assert run.exit_code == 0, run.output
    return run.output, load_checkpoint(output)


@torch.no_grad()
def test_mmaction2_actionclip_gives_mmaction2s_video_embeddings_and_test_scores(weights, converted):
    output, (model, meta) = converted
    assert "detected: mmaction2 ActionCLIP checkpoint (adapter: 6 blocks, 8 frames)" in output
    config = meta["config"]
    assert config["variant"] == "actionclip" and config["frames"] == FRAMES and not config["mbgf"]
    assert config["actionclip_layer_norm_eps"] == 1e-5
    assert config["test_logit_scale"] == 100 and config["template_eval"] == "mean_softmax"
    assert meta["epoch"] == 50 and meta["prompt_templates"] == interop.PUBLISHED_PROMPTS["actionclip"]
    # the data_preprocessor of mmaction2's configs (0-255 scale), on the 0-1 scale
    assert np.allclose(np.array(config["input_mean"]) * 255, [122.771, 116.746, 104.093])
    assert np.allclose(np.array(config["input_std"]) * 255, [68.500, 66.632, 70.323])

    clips = ref.random_clips(2, FRAMES, DIMS)
    expected_video = ref.mmaction2_video_embedding(weights, clips)
    assert ref.relative_error(model.encode_video(clips), expected_video) < TOLERANCE
    # ActionClip tokenises template-major ([P, K, 77]); mbgf takes class-major [K, P, 77].
    template_tokens = ref.random_tokens(TEMPLATES * CLASSES, DIMS, seed=5).view(TEMPLATES, CLASSES, -1)
    expected = ref.mmaction2_test_scores(weights, clips, template_tokens)
    assert ref.relative_error(model(clips, template_tokens.transpose(0, 1)).softmax(-1), expected) < TOLERANCE

    # The comparison can fail: ActionCLIP's own epsilon (1e-12) in the adapter is far off here.
    wrong_eps = ref.mmaction2_video_embedding(weights, clips, eps=1e-12)
    assert ref.relative_error(wrong_eps, expected_video) > 100 * TOLERANCE


@torch.no_grad()
def test_fewer_frames_use_the_first_positions_and_more_are_refused(weights, mmaction2_file):
    model, meta = interop.load_any_checkpoint(mmaction2_file, frames=4)
    clips = ref.random_clips(1, 4, DIMS, seed=8)
    assert meta["config"]["frames"] == 4
    assert ref.relative_error(model.encode_video(clips), ref.mmaction2_video_embedding(weights, clips)) < TOLERANCE
    with pytest.raises(UserError, match="temporal positions for 8 frames; cannot use 9 frames"):
        interop.load_any_checkpoint(mmaction2_file, frames=9)


def test_detected_from_the_keys(mmaction2_file):
    from clip import safe_pickle

    assert interop.detect_format(safe_pickle.load_file(mmaction2_file)) == "mmaction2"

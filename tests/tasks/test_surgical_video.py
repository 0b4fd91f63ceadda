"""The surgical video task: temporal models (causal ones see no future), EndoNet's tool head,
the frozen backbone + adapter, delta activations, SqueezeTime's folded clips, refusals, runs."""

import csv
import json
from pathlib import Path

import pytest
import torch

import train
from data.synth.surgical_video import PHASES
from tasks.heads.temporal import FeatureAdapter, TemporalConvNet, TemporalLSTM
from tasks.surgical_video import SurgicalVideoTask, main
from tests.conftest import compose_train

TOOLS = ["a", "b", "c"]


def make_task(**kwargs) -> SurgicalVideoTask:
    args = dict(num_classes=5, tool_names=TOOLS, num_frames=4, backbone="test_resnet",
                feature_dim=16, hidden_dim=8, dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    return SurgicalVideoTask(**{**args, **kwargs}).eval()


def clip(b: int = 2, t: int = 4) -> torch.Tensor:
    return torch.randn(b, t, 3, 32, 32)


@pytest.mark.parametrize("temporal", ["none", "tcn", "lstm"])
def test_per_frame_logits(temporal):
    task = make_task(temporal=temporal, tools=True)
    out = task(clip())
    assert out["phase"].shape == (2, 4, 5) and out["tools"].shape == (2, 4, 3)


@pytest.mark.parametrize(
    "head", [TemporalConvNet(6, 8, causal=True), TemporalLSTM(6, 8, causal=True)]
)
def test_causal_heads_see_no_future(head):
    head.eval()
    x = torch.randn(2, 10, 6)
    changed = x.clone()
    changed[:, 6:] += 5
    torch.testing.assert_close(head(x)[:, :6], head(changed)[:, :6])
    assert not torch.allclose(head(x)[:, 6:], head(changed)[:, 6:])


def test_non_causal_tcn_sees_the_future():
    head = TemporalConvNet(6, 8, causal=False).eval()
    x = torch.randn(1, 10, 6)
    changed = x.clone()
    changed[:, 6:] += 5
    assert not torch.allclose(head(x)[:, :6], head(changed)[:, :6])


def test_causal_task_frames_see_only_their_past():
    task = make_task(temporal="tcn", causal=True, tools=True)
    x = clip()
    changed = x.clone()
    changed[:, 3] = torch.randn_like(changed[:, 3])
    torch.testing.assert_close(task(x)["phase"][:, :3], task(changed)["phase"][:, :3])


def test_adapter_starts_as_identity():
    x = torch.randn(3, 4, 16)
    torch.testing.assert_close(FeatureAdapter(16, 4)(x), x)


def test_frozen_backbone_trains_only_projection_adapter_and_heads():
    task = make_task(freeze_backbone=True, tools=True).train()
    assert not task.backbone.training  # frozen norms keep their statistics
    classifier = {id(p) for p in task.backbone.get_classifier().parameters()}
    for parameter in task.backbone.parameters():
        assert parameter.requires_grad == (id(parameter) in classifier)
    out = task(clip())
    (out["phase"].sum() + out["tools"].sum()).backward()
    assert all(p.grad is None for p in task.backbone.parameters() if not p.requires_grad)
    assert all(p.grad is not None for p in task.adapter.parameters())


def test_delta_activations_sparsify_with_the_threshold():
    sparsity = {}
    for threshold in (0.0, 0.5):
        task = make_task(delta_activation=threshold)
        # a slowly changing clip: small frame-to-frame differences
        x = clip(2, 1).repeat(1, 4, 1, 1, 1) + 0.05 * torch.randn(2, 4, 3, 32, 32)
        task(x)
        assert len(task.deltas) == len(task.backbone.feature_info)
        sparsity[threshold] = torch.stack([d.sparsity for d in task.deltas]).mean().item()
    assert sparsity[0.5] > sparsity[0.0]


def test_ctl_block_across_frames_of_a_2d_backbone():
    task = make_task(ctl_stage=1)
    assert task(clip())["phase"].shape == (2, 4, 5)
    with pytest.raises(ValueError, match="task.ctl_stage=\\[9\\].*has stages"):
        make_task(ctl_stage=9)


def test_squeezetime_takes_the_clip_as_channels():
    task = make_task(backbone="test_squeezetime", tools=True)
    assert task.time_in_channels and task.backbone.in_chans == 12
    assert task(clip())["phase"].shape == (2, 4, 5)
    with pytest.raises(ValueError, match="folds the clip's frames into its channels"):
        make_task(backbone="test_squeezetime", delta_activation=0.1)


def test_restoration_networks_are_refused():
    with pytest.raises(ValueError, match="cannot serve task=surgical_video.*image restoration"):
        make_task(backbone="dncnn")


def test_tools_need_tool_labels():
    with pytest.raises(ValueError, match="task.tools=true needs tool labels"):
        make_task(tools=True, tool_names=[])


TINY = ["data.videos={train:1,val:1,test:1}", "data.seconds=[14,14]", "data.clip_frames=4",
        "data.image_size=32", "data.batch_size=2", "backbone=timm", "backbone.name=test_resnet"]  # fmt: skip


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVZOO_CACHE_DIR", str(tmp_path / "cache"))


def test_train_run_with_tools_and_deltas(make_cfg, tiny_cache, tmp_path):
    cfg = make_cfg("task=surgical_video", "debug=fdr", *TINY, "task.tools=true",
                   "task.temporal=lstm", "task.delta_activation=0.1", "task.delta_weight=0.01")  # fmt: skip
    results = train.run(cfg)
    metrics = results["metrics"]
    for key in ("test/acc", "test/f1", "test/jaccard", "test/tool_map", "test/delta_sparsity",
                "test/f1_Preparation", "test/jaccard_GallbladderRetraction"):  # fmt: skip
        assert key in metrics, key
    assert results["gmacs"] > 0 and results["trainable_params"] == results["params"]
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"test_phase_timeline.png", "test_confusion_matrix.png"} <= figures
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["surgical_video"]["temporal"] == "lstm"


@pytest.mark.slow
def test_frozen_run_from_a_checkpoint_then_predict_a_video(make_cfg, tiny_cache, tmp_path):
    cfg = make_cfg("task=surgical_video", *TINY, "trainer.max_epochs=1", "trainer.accelerator=cpu")
    first = train.run(cfg)
    checkpoint = first["best_checkpoint"]
    # a run directory of its own: Lightning resumes from a last.ckpt it finds in the run's folder
    frozen = compose_train(["logger=none", "task=surgical_video", "debug=fdr", *TINY,
                            "task.freeze_backbone=true", f"task.backbone_checkpoint={checkpoint}"],
                           tmp_path / "frozen")  # fmt: skip
    results = train.run(frozen)
    assert results["trainable_params"] < results["params"] / 2
    video = next(Path(cfg.data.cache_dir).rglob("video03.mp4"))
    main([checkpoint, str(video), "--out", str(tmp_path / "predicted"), "--image-size", "32"])
    with (tmp_path / "predicted" / "video03-phases.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14 and {r["phase"] for r in rows} <= set(PHASES)
    assert (tmp_path / "predicted" / "video03-phases.png").is_file()

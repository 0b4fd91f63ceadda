"""SqueezeTime and its Channel-Time Learning block: the paper's network, clips as channels."""

import timm
import torch

import zoo  # noqa: F401  (registers the zoo's models)
from zoo.backbones.squeezetime import folds_time_into_channels
from zoo.operators.ctl import ChannelTimeLearning, FramesCTL


def test_paper_model_parameter_count():
    # 16 frames x RGB = 48 channels, the Kinetics-400 head: the official layer shapes
    model = timm.create_model("squeezetime_50", in_chans=48, num_classes=400, device="meta")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 29.71
    assert model.num_frames == 16 and model.feature_info[-1]["num_chs"] == 2048


def test_the_cfg_says_time_is_folded_into_channels():
    assert folds_time_into_channels("squeezetime_50")
    assert folds_time_into_channels("test_squeezetime.tag_ignored")
    assert not folds_time_into_channels("resnet18")


def test_a_clip_runs_as_one_image_of_3t_channels():
    torch.manual_seed(0)
    model = timm.create_model("test_squeezetime", in_chans=3 * 8, num_classes=5).eval()
    clip = torch.randn(2, 3, 8, 48, 48)  # (B, C, T, H, W), folded as the official code does
    with torch.no_grad():
        logits = model(clip.reshape(2, 24, 48, 48))
        reversed_time = model(clip.flip(2).reshape(2, 24, 48, 48))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    # the frames' order is information: playing the clip backwards changes the output
    assert not torch.allclose(logits, reversed_time, atol=1e-4)


def test_ctl_position_embedding_follows_the_map_size():
    ctl = ChannelTimeLearning(12, 20, pos_size=7).eval()
    for side in (7, 13, 32):
        assert ctl(torch.randn(1, 12, side, side)).shape == (1, 20, side, side)


def test_ctl_position_embedding_restores_position():
    # one object at two places, away from the borders (the gate's receptive field is 11 px):
    # the convolutions alone respond the same; the position embedding tells the places apart
    ctl = ChannelTimeLearning(4, 4, pos_size=16).eval()
    x = torch.zeros(1, 4, 16, 16)
    x[..., 5, 5] = 1
    shifted = torch.roll(x, shifts=(5, 5), dims=(-2, -1))
    with torch.no_grad():
        ctl.interaction.pos_embed.mul_(5)
        a, b = ctl(x)[..., 5, 5], ctl(shifted)[..., 10, 10]
        ctl.interaction.pos_embed.zero_()
        a0, b0 = ctl(x)[..., 5, 5], ctl(shifted)[..., 10, 10]
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(a0, b0)


def test_frames_ctl_starts_as_identity_and_mixes_frames_once_trained():
    block = FramesCTL(channels=6, frames=4).eval()
    x = torch.randn(8, 6, 10, 10)  # 2 clips of 4 frames
    torch.testing.assert_close(block(x), x)
    torch.nn.init.ones_(block.norm.weight)
    changed = x.clone()
    changed[3] += 1  # the last frame of the first clip
    out, out_changed = block(x), block(changed)
    assert not torch.allclose(out[0], out_changed[0])  # another frame of the same clip moved
    torch.testing.assert_close(out[4:], out_changed[4:])  # the other clip did not

"""CvT: the paper's parameter count, and the convolutional projection and token embedding."""

import timm
import torch

from zoo.backbones.cvt import ConvAttention, ConvProjection

PAPER_PARAMS_M = 20.0  # official model-zoo table (github.com/microsoft/CvT README; paper Table 2)
OFFICIAL_PARAMS = 19_997_480  # the official code's exact count, reproduced parameter for parameter


def test_parameter_count_matches_the_paper():
    model = timm.create_model("cvt_13", device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / (PAPER_PARAMS_M * 1e6) - 1) < 0.01
    assert count == OFFICIAL_PARAMS


def test_convolutional_projection_keeps_tokens_at_stride_1_and_quarters_them_at_stride_2():
    torch.manual_seed(0)
    token_map = torch.randn(2, 32, 8, 6)
    assert ConvProjection(32, stride=1)(token_map).shape == (2, 48, 32)
    assert ConvProjection(32, stride=2)(token_map).shape == (2, 48 // 4, 32)

    attn = ConvAttention(32, num_heads=2, num_prefix_tokens=1).eval()
    seen = {}
    for name in ("proj_q", "proj_k", "proj_v"):
        getattr(attn, name).register_forward_pre_hook(
            lambda m, args, name=name: seen.update({name: args[0].shape[1]})
        )
    tokens = torch.randn(2, 1 + 48, 32)  # class token + an 8x6 map
    assert attn(tokens, (8, 6)).shape == tokens.shape
    assert seen == {"proj_q": 1 + 48, "proj_k": 1 + 12, "proj_v": 1 + 12}


def test_class_token_in_the_last_stage_only_and_no_position_embedding():
    model = timm.create_model("cvt_13", device="meta")
    assert [stage.cls_token is not None for stage in model.stages] == [False, False, True]
    assert not [n for n, _ in model.named_parameters() if "pos" in n]
    embeds = [model.stem.proj] + [stage.downsample.proj for stage in model.stages[1:]]
    # overlapping strided convs: kernel larger than stride
    assert [(c.kernel_size[0], c.stride[0]) for c in embeds] == [(7, 4), (3, 2), (3, 2)]


def test_classifier_reads_the_class_token():
    torch.manual_seed(0)
    model = timm.create_model("cvt_13", in_chans=1, num_classes=10).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.shape == (2, 1 + 2 * 2, 384)  # class token + a 2x2 map at stride 16
        torch.testing.assert_close(model(x), model.head(tokens[:, 0]))


def test_features_only_gives_nchw_maps():
    features = timm.create_model("cvt_13", features_only=True).eval()
    with torch.no_grad():
        maps = features(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 16, 16), (192, 8, 8), (384, 4, 4)]

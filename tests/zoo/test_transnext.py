"""TransNeXt: the paper's parameter counts, Convolutional GLU and aggregated attention."""

import pytest
import timm
import torch
import torch.nn.functional as F

from zoo.backbones.transnext import AggregatedAttention, pooled_position_coords
from zoo.operators.convglu import ConvGLU

# Official model-zoo table (github.com/DaiShiResearch/TransNeXt README; paper Table 2), millions.
PAPER_PARAMS_M = {"transnext_micro": 12.8, "transnext_tiny": 28.2}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / (PAPER_PARAMS_M[name] * 1e6) - 1) < 0.01


def _support(module: torch.nn.Module, size: int = 7) -> torch.Tensor:
    """Which input pixels the output's centre pixel depends on."""
    x = torch.randn(1, module.fc1.in_channels, size, size, requires_grad=True)
    module(x)[0, :, size // 2, size // 2].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def test_convglu_gate_path_is_convolved_value_path_is_pointwise():
    torch.manual_seed(0)
    glu = ConvGLU(16, hidden_dim=24)
    hidden = glu.dwconv.in_channels
    assert hidden == 16 and glu.fc1.out_channels == 2 * hidden  # 2/3 of the MLP width
    assert _support(glu).sum() == 9  # a 3x3 neighbourhood in all
    with torch.no_grad():
        gate_weights = glu.fc1.weight[:hidden].clone()
        glu.fc1.weight[:hidden] = 0  # a constant gate: only the value path sees the input
    only_centre = torch.zeros(7, 7, dtype=torch.bool)
    only_centre[3, 3] = True
    assert torch.equal(_support(glu), only_centre)
    with torch.no_grad():
        glu.fc1.weight[:hidden] = gate_weights
        glu.fc1.weight[hidden:] = 0  # a constant value: the gate still sees 3x3
    assert _support(glu).sum() == 9


def _zero_(*params: torch.Tensor) -> None:
    with torch.no_grad():
        for p in params:
            p.zero_()


def test_aggregated_attention_with_full_window_and_full_pool_is_one_softmax_over_both():
    """Window covering the map and pool size = map size (biases and dynamic local bias off):
    every query attends, under one softmax, to all tokens and to all pooled tokens."""
    torch.manual_seed(0)
    dim, heads, size = 16, 2, 3
    attn = AggregatedAttention(dim, heads, sr_ratio=1, window_size=5).eval()
    attn.init_weights()
    _zero_(attn.learnable_tokens, attn.learnable_bias, attn.relative_pos_bias_local)
    _zero_(attn.cpb.fc2.weight, attn.cpb.fc2.bias)
    x = torch.randn(2, dim, size, size)
    with torch.no_grad():
        out = attn(x)
        tokens = x.flatten(2).transpose(1, 2)
        pooled = attn.norm(attn.act(attn.sr(x)).flatten(2).transpose(1, 2))
        keys = torch.cat([attn.kv(tokens), attn.kv(pooled)], dim=1)  # B, 2N, 2C
        k, v = (t.reshape(2, 2 * size**2, heads, -1).transpose(1, 2) for t in keys.chunk(2, -1))
        q = attn.q(tokens).reshape(2, size**2, heads, -1).transpose(1, 2)
        log_keys = torch.log(torch.tensor(2.0 * size**2))
        q = (F.normalize(q, dim=-1) + attn.query_embedding) * F.softplus(attn.temperature)
        weights = (q * log_keys @ F.normalize(k, dim=-1).transpose(-2, -1)).softmax(-1)
        expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, size**2, dim))
    torch.testing.assert_close(out, expected.transpose(1, 2).reshape_as(x))


def test_aggregated_attention_sees_the_whole_map_in_one_layer():
    torch.manual_seed(0)
    attn = AggregatedAttention(16, 2, sr_ratio=4, window_size=3)
    attn.init_weights()
    x = torch.randn(1, 16, 12, 12, requires_grad=True)
    attn(x)[0, :, 0, 0].sum().backward()  # a corner query, far outside its 3x3 window
    assert (x.grad[0].abs().sum(0) > 0).all()


def test_pooled_position_coords_index_the_pairwise_offsets():
    h, w, ph, pw, pretrain = 6, 5, 2, 3, 56
    coords, index = pooled_position_coords(h, w, ph, pw, pretrain, torch.device("cpu"))
    query = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1)
    centres = [
        F.adaptive_avg_pool1d(torch.arange(n)[None].float(), p)[0] for n, p in ((h, ph), (w, pw))
    ]
    key = torch.stack(torch.meshgrid(*centres, indexing="ij"), -1)
    offset = (query.reshape(-1, 1, 2) - key.reshape(1, -1, 2)) / (pretrain - 1) * 8
    expected = torch.sign(offset) * torch.log2(offset.abs() + 1) / 3
    torch.testing.assert_close(coords[index], expected)


def test_tiny_inputs_any_channels():
    model = timm.create_model("transnext_micro", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("transnext_micro", features_only=True).eval()
    with torch.no_grad():
        maps = features(torch.randn(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]

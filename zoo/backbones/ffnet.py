"""FFNet: a four-stage ConvNet of FFNified-attention and FFN blocks (the MetaMixer paper's model).

`MetaMixer Is All You Need` (published as `FFNet: MetaMixer-based Efficient Convolutional Mixer
Design`)
    Yun, Lee and Ro, arXiv 2406.02021, https://github.com/ysj9909/FFNet

Parameter counts with the 1000-class head, against the ImageNet-1K table of the official
repository (README, "#params"; the paper's ImageNet table gives the same). The table counts the
inference model, with every conv + BN and parallel branch folded (`timm.utils.reparameterize_model`,
the official export); the training-time graph holds 0.8-1.1% more (BatchNorms, 3x3 branches).
FFNet is trained and evaluated at 256x256; its count does not depend on the input size.

    ffnet_1  13.66M re-parameterized, 13.78M training   (table: 13.7M)
    ffnet_2  26.91M re-parameterized, 27.21M training   (table: 26.9M)

Our own implementation; the facts (a two-conv stride-4 stem, depths 2-2-8-2 and 3-3-15-3, widths
80.. and 88.., key/value kernels 3-3-7-7, channel-mixer depthwise kernels 3 (FFNet-1) and 7
(FFNet-2), FFN expansion 3, no normalisation inside the blocks (BatchNorm lives in the query and
re-parameterizable convs), stride-2 7x7 depthwise downsampling with a BN + 1x1 residual
projection, a final BatchNorm) follow the official repository (MIT license). Blocks are plain
convolutions, so any input size works.
"""

import torch
from timm.layers import ClassifierHead, DropPath, trunc_normal_
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
)
from torch import nn

from zoo.operators.ffnet import LARGE_KERNEL, ConvBn, FFNifiedAttention, RepDwConv

from ._hierarchical import NormHeadNet

__all__ = ["FFNet"]


class ChannelMixer(nn.Module):
    """Depthwise conv then the FFN (1x1 conv, GELU, 1x1 conv)."""

    def __init__(self, dim: int, kernel_size: int, mlp_ratio: float, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        hidden = int(dim * mlp_ratio)
        if kernel_size == LARGE_KERNEL:
            self.conv = RepDwConv(dim, dim, kernel_size, **dd)
        else:
            self.conv = ConvBn(dim, dim, kernel_size, groups=dim, **dd)
        self.fc1 = nn.Conv2d(dim, hidden, 1, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


class FFNetBlock(nn.Module):
    """FFNified attention then the channel mixer, each residual (no norms, optional layer scale)."""

    def __init__(
        self,
        dim: int,
        key_kernel: int,
        value_kernel: int,
        mixer_kernel: int,
        mlp_ratio: float,
        ls_init_value: float | None = None,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.token_mixer = FFNifiedAttention(dim, key_kernel, value_kernel, **dd)
        self.channel_mixer = ChannelMixer(dim, mixer_kernel, mlp_ratio, **dd)
        if ls_init_value is None:
            self.gamma1 = self.gamma2 = None
        else:
            self.gamma1 = nn.Parameter(ls_init_value * torch.ones(dim, 1, 1, **dd))
            self.gamma2 = nn.Parameter(ls_init_value * torch.ones(dim, 1, 1, **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.token_mixer(x)
        if self.gamma1 is not None:
            y = y * self.gamma1
        x = x + self.drop_path(y)
        y = self.channel_mixer(x)
        if self.gamma2 is not None:
            y = y * self.gamma2
        return x + self.drop_path(y)


class NormProjResidual(nn.Module):
    """`x + conv1x1(bn(x))`; `fuse()` folds it into one biased 1x1 conv."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm = nn.BatchNorm2d(dim, **dd)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.norm(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The 1x1 conv equal to this module in eval mode."""
        scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
        shift = self.norm.bias - self.norm.running_mean * scale
        weight = self.proj.weight[:, :, 0, 0]
        dim = weight.shape[0]
        fused = nn.Conv2d(dim, dim, 1, device=weight.device, dtype=weight.dtype)
        eye = torch.eye(dim, device=weight.device, dtype=weight.dtype)
        fused.weight.copy_((eye + weight * scale[None, :])[:, :, None, None])
        fused.bias.copy_(weight @ shift)
        return fused


class FFNetStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        downsample: bool,
        key_kernel: int,
        value_kernel: int,
        mixer_kernel: int,
        mlp_ratio: float,
        ls_init_value: float | None,
        drop_path_rates: list[float],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if downsample:
            # stride-2 re-parameterizable 7x7 depthwise conv, then a BN + 1x1 residual projection
            self.downsample = nn.Sequential(
                RepDwConv(in_chs, out_chs, LARGE_KERNEL, stride=2, **dd),
                NormProjResidual(out_chs, **dd),
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *[
                FFNetBlock(
                    out_chs,
                    key_kernel,
                    value_kernel,
                    mixer_kernel,
                    mlp_ratio,
                    ls_init_value,
                    drop_path_rates[i],
                    **dd,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class FFNet(NormHeadNet):
    """Fast-Forward Network.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        stem_dim: Channels after the first stem conv.
        key_kernels: Kernel of the FFNified-attention key conv per stage.
        value_kernels: Kernel of the FFNified-attention value conv per stage.
        mixer_kernels: Kernel of the channel mixer's depthwise conv per stage.
        mlp_ratio: FFN expansion.
        ls_init_value: Layer-scale initial value (None: no layer scale, as FFNet-1 and -2).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 8, 2),
        dims: tuple[int, ...] = (80, 160, 320, 640),
        stem_dim: int = 64,
        key_kernels: tuple[int, ...] = (3, 3, 7, 7),
        value_kernels: tuple[int, ...] = (3, 3, 7, 7),
        mixer_kernels: tuple[int, ...] = (3, 3, 3, 3),
        mlp_ratio: float = 3.0,
        ls_init_value: float | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.stem = nn.Sequential(
            ConvBn(in_chans, stem_dim, 3, stride=2, **dd),
            nn.GELU(),
            ConvBn(stem_dim, dims[0], 3, stride=2, **dd),
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                FFNetStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth=depths[i],
                    downsample=i > 0,
                    key_kernel=key_kernels[i],
                    value_kernel=value_kernels[i],
                    mixer_kernel=mixer_kernels[i],
                    mlp_ratio=mlp_ratio,
                    ls_init_value=ls_init_value,
                    drop_path_rates=rates[i].tolist(),
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        self.apply(_init_weights)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_ffnet(variant: str, pretrained: bool = False, **kwargs) -> FFNet:
    return build_model_with_cfg(
        FFNet,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 256, 256),
        "pool_size": (8, 8),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.0.conv",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"ffnet_1": _cfg(), "ffnet_2": _cfg()})


@register_model
def ffnet_1(pretrained: bool = False, **kwargs) -> FFNet:
    args = dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), mixer_kernels=(3, 3, 3, 3))
    return _create_ffnet("ffnet_1", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def ffnet_2(pretrained: bool = False, **kwargs) -> FFNet:
    args = dict(depths=(3, 3, 15, 3), dims=(88, 176, 352, 704), mixer_kernels=(7, 7, 7, 7))
    return _create_ffnet("ffnet_2", pretrained=pretrained, **dict(args, **kwargs))

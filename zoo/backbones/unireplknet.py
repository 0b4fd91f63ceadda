"""UniRepLKNet: few large-kernel blocks (Dilated Reparam Blocks) mixed with small-kernel ones.

`UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition`
    Ding et al., CVPR 2024, arXiv 2311.15599, https://github.com/AILab-CVC/UniRepLKNet
(extended as `Scaling Up Your Kernels: Large Kernel Design in ConvNets towards Universal
Representations`, the same repository).

Parameter counts at 224 with the 1000-class head, against the ImageNet-1K table of the paper
(Table 1; the official README repeats it). The table counts the inference structure, after
`reparameterize()`; the training-time structure (branches, BatchNorms, GRN bias) is larger:

                   inference   training   table
    unireplknet_a    4.44M      4.65M      4.4M
    unireplknet_f    6.24M      6.49M      6.2M
    unireplknet_p   10.74M     11.08M     10.7M
    unireplknet_n   18.32M     18.82M     18.3M
    unireplknet_t   31.04M     31.69M     31M

A block is depthwise conv -> BN -> SE -> Linear -> GELU -> GRN -> Linear -> BN, with layer scale
and a residual; its depthwise conv is a Dilated Reparam Block where the kernel is 13 and a plain
3x3 where it is 3. `reparameterize()` (also reached by `timm.utils.model.reparameterize_model`)
folds every branch, BatchNorm, the GRN bias and the layer scale into the convs and linears, as the
official inference structure does: same outputs, fewer layers.

Our own implementation; the facts (depths, widths, per-block kernel sizes, branch settings,
stem, SE reduction 1/4, GRN, BN placement) follow the official repository (Apache-2.0 license).
"""

from functools import partial

import torch
from timm.layers import (
    DropPath,
    LayerNorm2d,
    NormMlpClassifierHead,
    SEModule,
    trunc_normal_,
)
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from torch import nn

from zoo.operators.dilated_reparam import DilatedReparamConv, fuse_conv_bn

from ._hierarchical import HierarchicalNet

__all__ = ["UniRepLKNet"]


class GlobalResponseNorm(nn.Module):
    """GRN (ConvNeXt V2) on channels-last input, `x + weight * x * N(x) + bias`, bias optional.

    timm's GlobalResponseNorm computes the same, but always carries a bias; the inference
    structure folds the bias into the next linear layer and drops it, as the official model does.
    """

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))
        self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_g = x.norm(p=2, dim=(1, 2), keepdim=True)
        x_n = x_g / (x_g.mean(dim=-1, keepdim=True) + self.eps)
        x = x + self.weight * (x * x_n)
        if self.bias is not None:
            x = x + self.bias
        return x


class UniRepLKNetBlock(nn.Module):
    """Large- (Dilated Reparam Block) or small-kernel depthwise mixing, SE, then a GRN MLP."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = 1e-6,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        # the official model uses the reparam block for kernels of 7 and up, plain convs below
        if kernel_size >= 7:
            self.conv_dw = DilatedReparamConv(dim, kernel_size, **dd)
        else:
            self.conv_dw = nn.Conv2d(
                dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=False, **dd
            )
        self.norm = nn.BatchNorm2d(dim, **dd)
        self.se = SEModule(dim, rd_channels=dim // 4, **dd)
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden, **dd)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(hidden, **dd)
        # no bias here: the BN after it has one (the official block; the fold restores a bias)
        self.fc2 = nn.Linear(hidden, dim, bias=False, **dd)
        self.mlp_norm = nn.BatchNorm2d(dim, **dd)
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim, **dd)) if ls_init_value else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.conv_dw(x)))
        # the MLP runs channels-last, where nn.Linear is the 1x1 conv and GRN pools over H, W
        y = self.fc2(self.grn(self.act(self.fc1(y.permute(0, 2, 3, 1)))))
        y = self.mlp_norm(y.permute(0, 3, 1, 2))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold branches, BatchNorms, GRN bias and layer scale into the convs and fc2, in place.

        Uses the BatchNorms' running statistics (call it on a model in eval mode after training);
        calling it again changes nothing.
        """
        if isinstance(self.norm, nn.BatchNorm2d):
            conv = self.conv_dw
            if isinstance(conv, DilatedReparamConv):
                conv = conv.merged_conv()
            weight, bias = fuse_conv_bn(conv.weight, conv.bias, self.norm)
            self.conv_dw = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                padding=conv.padding,
                groups=conv.groups,
                bias=True,
                device=weight.device,
                dtype=weight.dtype,
            )
            self.conv_dw.weight.copy_(weight)
            self.conv_dw.bias.copy_(bias)
            self.norm = nn.Identity()
        if isinstance(self.mlp_norm, nn.BatchNorm2d):
            # fc2(u + b_grn) = W u + W b_grn; then BN, then the layer scale: all affine per channel
            bn = self.mlp_norm
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            if self.gamma is not None:
                layer_scale = self.gamma.detach()
                self.gamma = None
            else:
                layer_scale = torch.ones_like(scale)
            linear_bias = torch.zeros_like(scale)
            if self.grn.bias is not None:
                linear_bias = self.fc2.weight @ self.grn.bias
                self.grn.bias = None
            fc2 = nn.Linear(
                self.fc2.in_features,
                self.fc2.out_features,
                device=scale.device,
                dtype=scale.dtype,
            )
            fc2.weight.copy_(self.fc2.weight * (scale * layer_scale).view(-1, 1))
            fc2.bias.copy_((bn.bias + (linear_bias - bn.running_mean) * scale) * layer_scale)
            self.fc2 = fc2
            self.mlp_norm = nn.Identity()


class UniRepLKNetStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_sizes: tuple[int, ...],
        downsample: bool,
        mlp_ratio: float = 4.0,
        drop_path_rates: list[float] | None = None,
        ls_init_value: float | None = 1e-6,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if downsample:
            # conv before norm here, unlike ConvNeXt (the official downsampling layers)
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1, **dd),
                LayerNorm2d(out_chs, eps=1e-6, **dd),
            )
        else:
            self.downsample = nn.Identity()
        drop_path_rates = drop_path_rates or [0.0] * len(kernel_sizes)
        self.blocks = nn.Sequential(
            *[
                UniRepLKNetBlock(
                    out_chs,
                    kernel_size=k,
                    mlp_ratio=mlp_ratio,
                    ls_init_value=ls_init_value,
                    drop_path=drop_path_rates[i],
                    **dd,
                )
                for i, k in enumerate(kernel_sizes)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class UniRepLKNet(HierarchicalNet):
    """UniRepLKNet.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        kernel_sizes: Per stage, the depthwise kernel size of each block (13: a Dilated Reparam
            Block; 3 or 5: a plain depthwise conv).
        mlp_ratio: MLP hidden width over the block width.
        ls_init_value: Layer-scale initial value (None or 0: no layer scale).
        head_init_scale: Scale on the initial classifier weights.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 6, 2),
        dims: tuple[int, ...] = (40, 80, 160, 320),
        kernel_sizes: tuple[tuple[int, ...], ...] = ((3, 3), (13, 13), (13,) * 6, (13, 13)),
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = 1e-6,
        head_init_scale: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if [len(k) for k in kernel_sizes] != list(depths):
            raise ValueError(
                f"kernel_sizes must give one size per block: depths {tuple(depths)}, "
                f"got {tuple(len(k) for k in kernel_sizes)} sizes per stage"
            )
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        # two stride-2 3x3 convs (the official stem), not ConvNeXt's 4x4 patchify
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, 3, stride=2, padding=1, **dd),
            LayerNorm2d(dims[0] // 2, eps=1e-6, **dd),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1, **dd),
            LayerNorm2d(dims[0], eps=1e-6, **dd),
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                UniRepLKNetStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    kernel_sizes=tuple(kernel_sizes[i]),
                    downsample=i > 0,
                    mlp_ratio=mlp_ratio,
                    drop_path_rates=rates[i].tolist(),
                    ls_init_value=ls_init_value,
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = dims[-1]
        # pool -> LayerNorm -> fc, as the official model
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        named_apply(partial(_init_weights, head_init_scale=head_init_scale), self)

    def reparameterize(self) -> "UniRepLKNet":
        """Convert to the inference structure in place (see `UniRepLKNetBlock.reparameterize`)."""
        for stage in self.stages:
            for block in stage.blocks:
                block.reparameterize()
        return self


def _init_weights(module: nn.Module, name: str = "", head_init_scale: float = 1.0) -> None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        if name.startswith("head.fc"):
            module.weight.data.mul_(head_init_scale)
            module.bias.data.mul_(head_init_scale)


def _create_unireplknet(variant: str, pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return build_model_with_cfg(
        UniRepLKNet,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.0",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "unireplknet_a": _cfg(),
        "unireplknet_f": _cfg(),
        "unireplknet_p": _cfg(),
        "unireplknet_n": _cfg(),
        "unireplknet_t": _cfg(),
    }
)

# per-block depthwise kernel sizes of the official models: 13 = Dilated Reparam Block
_KERNELS_AFP = ((3, 3), (13, 13), (13,) * 6, (13, 13))
_KERNELS_N = ((3, 3), (13, 13), (13,) * 8, (13, 13))
_KERNELS_T = ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13))


@register_model
def unireplknet_a(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), kernel_sizes=_KERNELS_AFP)
    return _create_unireplknet("unireplknet_a", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def unireplknet_f(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), kernel_sizes=_KERNELS_AFP)
    return _create_unireplknet("unireplknet_f", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def unireplknet_p(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512), kernel_sizes=_KERNELS_AFP)
    return _create_unireplknet("unireplknet_p", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def unireplknet_n(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), kernel_sizes=_KERNELS_N)
    return _create_unireplknet("unireplknet_n", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def unireplknet_t(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    args = dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640), kernel_sizes=_KERNELS_T)
    return _create_unireplknet("unireplknet_t", pretrained=pretrained, **dict(args, **kwargs))

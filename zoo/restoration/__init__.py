"""Image restoration networks (image -> image): the seed papers' super-resolution and denoising
models, and an isotropic body for any token mixer of the zoo.

They are not classifiers and have no feature pyramid. `zoo.backbones.restoration_nets` registers
them in timm's registry, so `timm.create_model("cfsr", scale=4)` builds one, and the restoration
tasks (tasks/restoration.py) run them. Every network maps pixels in [0, 1] of shape
(B, in_chans, h, w) to (B, in_chans, h * scale, w * scale), for any h, w >= 1.
"""

from .cfsr import CFSR
from .dncnn import DnCNN
from .espcn import ESPCN
from .mirnet import MIRNet
from .mixer_body import MixerBody

__all__ = ["CFSR", "DnCNN", "ESPCN", "MIRNet", "MixerBody"]

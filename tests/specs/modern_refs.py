"""Reference torch.nn modules for the zoo specs beyond the notes (tests/specs/test_modern_zoo.py):
torchvision's layouts (module nesting, layer order, hyperparameters) rebuilt here, since
torchvision is not installed, plus the paper/tutorial networks (U-Net, DCGAN, ESPCN)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's own convention)


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: round to a multiple of `divisor`, never down by > 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_norm_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                  norm=nn.BatchNorm2d, act=nn.ReLU) -> nn.Sequential:
    """torchvision.ops.Conv2dNormActivation: conv (no bias under a norm), norm, activation."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2,
                                         groups=groups, bias=False), norm(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool, 1x1 conv, act, 1x1 conv, gate, times the input."""

    def __init__(self, channels: int, squeeze: int, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = act()
        self.gate = gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def stochastic_depth(x, p: float, training: bool):
    """torchvision.ops.stochastic_depth, mode "row" (only its eval identity is compared)."""
    if not training or p == 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


# ---- video: R3D-18 ----------------------------------------------------------------------------


class BasicBlock3d(nn.Module):
    """torchvision.models.video.resnet.BasicBlock with Conv3DSimple."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False),
                                   nn.BatchNorm3d(cout), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(cout, cout, 3, 1, 1, bias=False),
                                   nn.BatchNorm3d(cout))
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm3d(cout))

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv2(self.conv1(x)) + res)


class R3D18(nn.Module):
    """torchvision.models.video.r3d_18."""

    def __init__(self, classes: int = 400):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(64),
            nn.ReLU())
        cin = 64
        for i, (c, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock3d(cin, c, s),
                                                         BasicBlock3d(c, c, 1)))
            cin = c
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(x, 1), 1))


# ---- U-Net (the 2015 paper) -------------------------------------------------------------------


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3), nn.ReLU())


class UNet(nn.Module):
    """Ronneberger et al. 2015: valid 3x3 convs, 2x2 max pools, 2x2 up-convs, crop and concat."""

    def __init__(self, classes: int = 2, base: int = 64, in_channels: int = 1):
        super().__init__()
        widths = [base, 2 * base, 4 * base, 8 * base]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(double_conv(cin, w))
            cin = w
        self.bottom = double_conv(cin, 16 * base)
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        cin = 16 * base
        for w in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.up_convs.append(double_conv(2 * w, w))
            cin = w
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips)):
            x = up(x)
            top = (skip.shape[2] - x.shape[2]) // 2
            left = (skip.shape[3] - x.shape[3]) // 2
            crop = skip[:, :, top:top + x.shape[2], left:left + x.shape[3]]
            x = conv(torch.cat([crop, x], dim=1))
        return self.head(x)

    def dsl_order(self) -> list[str]:
        """State-dict keys in the order the spec declares them (down, bottom, then per level
        of the way up: the up-convolution before its two convolutions)."""
        keys = list(self.state_dict())
        head = [k for k in keys if k.startswith(("down.", "bottom."))]
        ups = []
        for i in range(4):
            ups += [k for k in keys if k.startswith(f"ups.{i}.")]
            ups += [k for k in keys if k.startswith(f"up_convs.{i}.")]
        return head + ups + [k for k in keys if k.startswith("head.")]


# ---- DCGAN (the PyTorch tutorial's layer lists) -----------------------------------------------


class DCGANGenerator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, image):
        return self.main(image)


# ---- ViT-B/16 ---------------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    """torchvision.models.vision_transformer.EncoderBlock (pre-norm, MLP with GELU)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        ln = partial(nn.LayerNorm, eps=1e-6)
        self.ln_1 = ln(dim)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = ln(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(0.0))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.self_attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq: int, layers: int, heads: int, dim: int, mlp_dim: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, dim).normal_(std=0.02))
        self.layers = nn.Sequential(*[EncoderBlock(dim, heads, mlp_dim) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(x + self.pos_embedding))


class VisionTransformer(nn.Module):
    """torchvision.models.vision_transformer.VisionTransformer (vit_b_16 by default)."""

    def __init__(self, size: int = 224, patch: int = 16, layers: int = 12, heads: int = 12,
                 dim: int = 768, mlp_dim: int = 3072, classes: int = 1000):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder((size // patch) ** 2 + 1, layers, heads, dim, mlp_dim)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(dim, classes))

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])

    def dsl_order(self) -> list[str]:
        """The spec makes the class token after the patch projection."""
        keys = list(self.state_dict())
        keys.remove("class_token")
        keys.insert(keys.index("conv_proj.bias") + 1, "class_token")
        return keys


# ---- ConvNeXt-T -------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: layer norm over the channels of NCHW."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(self.dims)


class CNBlock(nn.Module):
    """torchvision.models.convnext.CNBlock."""

    def __init__(self, dim: int, sd_prob: float, layer_scale: float = 1e-6):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(),
            nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.sd_prob = sd_prob

    def forward(self, x):
        h = stochastic_depth(self.layer_scale * self.block(x), self.sd_prob, self.training)
        return h + x


class ConvNeXt(nn.Module):
    """torchvision.models.convnext (convnext_tiny by default)."""

    def __init__(self, dims=(96, 192, 384, 768), depths=(3, 3, 9, 3), classes: int = 1000,
                 sd: float = 0.1):
        super().__init__()
        norm = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), norm(dims[0]))]
        total, block_id = sum(depths), 0
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            stage = []
            for _ in range(depth):
                stage.append(CNBlock(dim, sd * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(norm(dim), nn.Conv2d(dim, dims[i + 1], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(norm(dims[-1]), nn.Flatten(1),
                                        nn.Linear(dims[-1], classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1))

    def dsl_order(self) -> list[str]:
        """The spec makes each block's layer scale after its MLP (torch lists a module's own
        parameters before its children's)."""
        keys = [k for k in self.state_dict() if not k.endswith(".layer_scale")]
        for k in self.state_dict():
            if k.endswith(".layer_scale"):
                prefix = k[:-len("layer_scale")]
                keys.insert(keys.index(prefix + "block.5.bias") + 1, k)
        return keys


# ---- MobileNetV2 ------------------------------------------------------------------------------


class InvertedResidualV2(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_norm_act(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_norm_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [conv_norm_act(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_norm_act(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---- MobileNetV3-Small ------------------------------------------------------------------------


V3_SMALL = [  # in, kernel, expanded, out, SE, hardswish, stride (torchvision's bneck_conf)
    (16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2),
    (24, 3, 88, 24, False, False, 1), (24, 5, 96, 40, True, True, 2),
    (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
    (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1),
    (48, 5, 288, 96, True, True, 2), (96, 5, 576, 96, True, True, 1),
    (96, 5, 576, 96, True, True, 1)]


class InvertedResidualV3(nn.Module):
    """torchvision.models.mobilenetv3.InvertedResidual (no dilation)."""

    def __init__(self, cin, kernel, expanded, cout, se, hs, stride):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        act = nn.Hardswish if hs else nn.ReLU
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_norm_act(cin, expanded, 1, norm=norm, act=act))
        layers.append(conv_norm_act(expanded, expanded, kernel, stride, groups=expanded,
                                    norm=norm, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8),
                                            gate=nn.Hardsigmoid))
        layers.append(conv_norm_act(expanded, cout, 1, norm=norm, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_res else self.block(x)


class MobileNetV3Small(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        layers: list[nn.Module] = [conv_norm_act(3, 16, 3, 2, norm=norm, act=nn.Hardswish)]
        layers += [InvertedResidualV3(*cfg) for cfg in V3_SMALL]
        layers.append(conv_norm_act(96, 576, 1, norm=norm, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(1024, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---- EfficientNet-B0 and the fused MBConv of EfficientNetV2 -----------------------------------


B0 = [  # expand ratio, kernel, stride, in, out, layers (torchvision's MBConvConfig list)
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


class MBConv(nn.Module):
    """torchvision.models.efficientnet.MBConv."""

    def __init__(self, expand, kernel, stride, cin, cout, sd_prob, norm=nn.BatchNorm2d):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        expanded = make_divisible(cin * expand, 8)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_norm_act(cin, expanded, 1, norm=norm, act=nn.SiLU))
        layers += [conv_norm_act(expanded, expanded, kernel, stride, groups=expanded, norm=norm,
                                 act=nn.SiLU),
                   SqueezeExcitation(expanded, max(1, cin // 4), act=nn.SiLU),
                   conv_norm_act(expanded, cout, 1, norm=norm, act=None)]
        self.block = nn.Sequential(*layers)
        self.sd_prob = sd_prob

    def forward(self, x):
        h = self.block(x)
        if self.use_res:
            h = stochastic_depth(h, self.sd_prob, self.training) + x
        return h


class FusedMBConv(nn.Module):
    """torchvision.models.efficientnet.FusedMBConv (EfficientNetV2's early stages)."""

    def __init__(self, expand, kernel, stride, cin, cout, sd_prob,
                 norm=partial(nn.BatchNorm2d, eps=1e-3)):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        expanded = make_divisible(cin * expand, 8)
        if expanded != cin:
            layers = [conv_norm_act(cin, expanded, kernel, stride, norm=norm, act=nn.SiLU),
                      conv_norm_act(expanded, cout, 1, norm=norm, act=None)]
        else:
            layers = [conv_norm_act(cin, cout, kernel, stride, norm=norm, act=nn.SiLU)]
        self.block = nn.Sequential(*layers)
        self.sd_prob = sd_prob

    def forward(self, x):
        h = self.block(x)
        if self.use_res:
            h = stochastic_depth(h, self.sd_prob, self.training) + x
        return h


class EfficientNetB0(nn.Module):
    def __init__(self, classes: int = 1000, sd: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [conv_norm_act(3, 32, 3, 2, act=nn.SiLU)]
        total, block_id = sum(c[-1] for c in B0), 0
        for expand, k, s, cin, cout, n in B0:
            stage = []
            for i in range(n):
                stage.append(MBConv(expand, k, s if i == 0 else 1, cin if i == 0 else cout,
                                    cout, sd * block_id / total))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_norm_act(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---- ESPCN (the PyTorch examples' super_resolution/model.py) ----------------------------------


class ESPCN(nn.Module):
    def __init__(self, upscale: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 5, 1, 2)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv3 = nn.Conv2d(64, 32, 3, 1, 1)
        self.conv4 = nn.Conv2d(32, upscale ** 2, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x):
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return self.pixel_shuffle(self.conv4(x))


# ---- temporal blocks --------------------------------------------------------------------------


class TemporalBlock(nn.Module):
    """Bai et al. 2018's TCN block (locuslab/TCN) without weight norm: the causal padding is
    applied on both sides and the tail chomped, as the original does."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv1 = nn.Conv1d(cin, cout, kernel, padding=self.pad, dilation=dilation)
        self.conv2 = nn.Conv1d(cout, cout, kernel, padding=self.pad, dilation=dilation)
        self.downsample = nn.Conv1d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = F.relu(self.conv1(x)[..., :-self.pad])
        h = F.relu(self.conv2(h)[..., :-self.pad])
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

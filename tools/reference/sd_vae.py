"""Reference PyTorch Stable Diffusion VAE decoder with diffusers AutoencoderKL key names (torch only).

Covers what DiT sampling uses: `vae.decode(latents / 0.18215).sample` =
post_quant_conv -> decoder (conv_in, mid_block [resnet, attention, resnet], up_blocks [resnets, upsampler],
conv_norm_out, SiLU, conv_out). Written from the diffusers architecture (ResnetBlock2D with temb=None,
single-head Attention with group norm and residual, UpDecoderBlock2D, nearest x2 + conv upsampler).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, channels: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
        a = torch.softmax(q @ k.transpose(1, 2) / (c ** 0.5), dim=-1) @ v
        o = self.to_out[0](a).transpose(1, 2).reshape(b, c, h, w)
        return o + x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups), ResnetBlock2D(channels, channels, groups)])
        self.attentions = nn.ModuleList([Attention(channels, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpDecoderBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Decoder(nn.Module):
    def __init__(self, latent_channels: int, out_channels: int, block_out_channels, layers_per_block: int, groups: int):
        super().__init__()
        rev = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(latent_channels, rev[0], 3, padding=1)
        self.mid_block = MidBlock(rev[0], groups)
        blocks, prev = [], rev[0]
        for i, ch in enumerate(rev):
            blocks.append(UpDecoderBlock2D(prev, ch, layers_per_block + 1, groups, upsample=i < len(rev) - 1))
            prev = ch
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(groups, block_out_channels[0], eps=1e-6)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VaeDecoderModel(nn.Module):
    """The decode half of diffusers' AutoencoderKL (state-dict keys post_quant_conv.*, decoder.*)."""

    def __init__(self, config: dict):
        super().__init__()
        lc = config.get("latent_channels", 4)
        self.scaling_factor = config.get("scaling_factor", 0.18215)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)
        self.decoder = Decoder(lc, config.get("out_channels", 3), config["block_out_channels"],
                               config.get("layers_per_block", 2), config.get("norm_num_groups", 32))

    def forward(self, latents, clamp: bool = True):
        """DiT's `vae.decode(latents / 0.18215).sample`, optionally clamped to [-1, 1]."""
        x = self.decoder(self.post_quant_conv(latents / self.scaling_factor))
        return x.clamp(-1, 1) if clamp else x

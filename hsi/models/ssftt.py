"""SSFTT (Sun et al., IEEE TGRS 2022, "Spectral-spatial feature tokenization transformer for
hyperspectral image classification"): a 3-D and a 2-D convolution, a Gaussian-weighted feature
tokenizer and one transformer encoder block, classified from a learnable class token.

Written from the paper's description; the sizes of the authors' released Indian Pines model
(30 PCA bands, 13x13 windows: 153,224 parameters) are the defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.contract import Network, Reference


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.net.{key} must be a positive integer, got {value!r}")


class GaussianTokenizer(nn.Module):
    """Feature tokenizer: (N, P, C) features at P positions -> (N, L, dim) semantic tokens.

    Each token is a weighted sum of the positions' features projected by `value` (C x dim), the
    weights a softmax over the positions of the features' scores against the token's row of
    `weight` (L x C). Both matrices start from Gaussian (Xavier-normal) draws, hence the paper's
    name for it.
    """

    def __init__(self, channels: int, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tokens, channels))
        self.value = nn.Parameter(torch.empty(channels, dim))
        nn.init.xavier_normal_(self.weight)
        nn.init.xavier_normal_(self.value)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, P, C) -> (N, L, P): each token's weights over the positions (rows sum to 1)."""
        return torch.matmul(x, self.weight.t()).transpose(1, 2).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.attention(x), torch.matmul(x, self.value))


class SelfAttention(nn.Module):
    """Multi-head self-attention with explicit matrix products (so FlopCounterMode, which does
    not count torch's fused attention kernels on the CPU, counts them): one Linear to queries,
    keys and values (`heads` x `head_dim` each; head_dim defaults to dim / heads; biased unless
    `qkv_bias=False`), softmax(Q K^T / sqrt(head dim)) V per head (softmax(Q K^T) V with
    `scaled=False`), a Linear from the concatenated heads back to `dim`, dropout."""

    def __init__(self, dim: int, heads: int, dropout: float, head_dim: int | None = None,
                 qkv_bias: bool = True, scaled: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads if head_dim is None else head_dim
        self.scale = self.head_dim ** -0.5 if scaled else 1.0
        inner = heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = (torch.matmul(q, k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, tokens, self.heads * self.head_dim)
        return self.dropout(self.proj(out))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: x + MSA(LN(x)), then x + MLP(LN(x)) with a GELU MLP
    (dim -> mlp_dim -> dim, dropout after each Linear); `head_dim`, `qkv_bias` and `scaled` as in
    `SelfAttention`."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float, head_dim: int | None = None,
                 qkv_bias: bool = True, scaled: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout, head_dim, qkv_bias, scaled)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SSFTT(Network):
    """SSFTT over windows (N, 1, bands, patch, patch), every size derived from the input.

    - spectral-spatial features: a 3-D convolution (`channels_3d` kernels of `spectral_kernel`
      x 3 x 3, unpadded, BN, ReLU), its bands folded into channels, a 2-D convolution
      (`channels_2d` kernels of 3 x 3, unpadded, BN, ReLU): (N, channels_2d, p - 4, p - 4);
    - tokenizer (`GaussianTokenizer`): the (p - 4)^2 positions turned into `num_tokens`
      semantic tokens of width `dim`, a learnable class token put first, learnable position
      embeddings added, dropout `emb_dropout`;
    - `depth` transformer encoder blocks (`heads` heads, a `mlp_dim` MLP, dropout `dropout`);
    - a Linear from the class token to the classes.

    The defaults are the authors' released model (L = 4 tokens, width 64, 8 heads, one block,
    an MLP of 8 hidden units, dropout 0.1, biased convolutions before batch norm): with 30
    bands, 13x13 windows and 16 classes it has 153,224 parameters. Windows of 5x5 pixels and
    up (two unpadded 3 x 3 convolutions); at 5x5 one position is left and every token is its
    projection. The tokenizer attends over the whole window, so the network is not
    dense-capable: maps run window by window.
    """

    dense = False  # the tokenizer's softmax spans the window
    reference = Reference(
        paper="Sun et al., IEEE TGRS 2022, \"Spectral-spatial feature tokenization transformer for "
              "hyperspectral image classification\"",
        code="zgr6010/HSI_SSFTT cls_SSFTT_IP/SSFTTnet.py (SSFTTnet)",
        settings={"in_bands": 30, "patch_size": 13, "num_classes": 16},
        params=153_224,
        counted="SSFTTnet() (its defaults: 30 PCA bands, 13x13, 16 classes) instantiated in torch, "
                "sum of p.numel() over parameters()")

    @classmethod
    def input_limits(cls, spectral_kernel: int = 3, **net_kwargs: object) -> tuple[int, int]:
        """A spectral_kernel x 3 x 3 3-D and a 3x3 2-D convolution, unpadded."""
        return spectral_kernel, 5

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, channels_3d: int = 8,
                 spectral_kernel: int = 3, channels_2d: int = 64, num_tokens: int = 4, dim: int = 64,
                 heads: int = 8, depth: int = 1, mlp_dim: int = 8, dropout: float = 0.1,
                 emb_dropout: float = 0.1) -> None:
        super().__init__()
        _check_positive(channels_3d=channels_3d, spectral_kernel=spectral_kernel, channels_2d=channels_2d,
                        num_tokens=num_tokens, dim=dim, heads=heads, depth=depth, mlp_dim=mlp_dim)
        if dim % heads:
            raise ConfigError(f"model.net.heads={heads} must divide model.net.dim={dim} (each head "
                              f"attends over dim / heads features)")
        self.check_input(in_bands, patch_size, spectral_kernel=spectral_kernel)
        depth_3d = in_bands - spectral_kernel + 1
        self.conv3d = nn.Sequential(nn.Conv3d(1, channels_3d, (spectral_kernel, 3, 3)),
                                    nn.BatchNorm3d(channels_3d), nn.ReLU(inplace=True))
        self.conv2d = nn.Sequential(nn.Conv2d(channels_3d * depth_3d, channels_2d, 3),
                                    nn.BatchNorm2d(channels_2d), nn.ReLU(inplace=True))
        self.num_tokens, self.positions = num_tokens, (patch_size - 4) ** 2
        self.tokenizer = GaussianTokenizer(channels_2d, num_tokens, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, num_tokens + 1, dim))
        nn.init.normal_(self.pos_embedding, std=0.02)
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.encoder = nn.Sequential(*[EncoderBlock(dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.classifier = nn.Linear(dim, num_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.normal_(self.classifier.bias, std=1e-6)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, (p - 4)^2, channels_2d): the 2-D convolution's map, one row per position."""
        x = self.conv3d(x)
        x = self.conv2d(x.flatten(1, 2))
        return x.flatten(2).transpose(1, 2)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, num_tokens + 1, dim): the class token, then the semantic
        tokens, with position embeddings (the encoder's input, before dropout)."""
        semantic = self.tokenizer(self.features(x))
        cls = self.cls_token.expand(semantic.shape[0], -1, -1)
        return torch.cat([cls, semantic], dim=1) + self.pos_embedding

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, dim): the encoded class token, what the classifier reads."""
        return self.encoder(self.emb_dropout(self.tokens(x)))[:, 0]

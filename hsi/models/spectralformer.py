"""SpectralFormer (Hong et al., IEEE TGRS 2022, "SpectralFormer: Rethinking hyperspectral image
classification with transformers"): one token per band, a transformer over the bands.

Written from the paper and its authors' code (danfenghong/IEEE_TGRS_SpectralFormer, vit_pytorch.py
and demo.py); the defaults are the authors' Indian Pines model (dim 64, depth 5, 4 heads of 16,
MLP 8, dropout 0.1): patch-wise (7x7 windows, band groups of 3, CAF) it has 355,577 parameters
at 200 bands and 16 classes, pixel-wise (data.patch_size=1) 346,361.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.contract import Network, Reference
from hsi.models.ssftt import EncoderBlock, _check_positive

FUSIONS = ("caf", "none")


def band_groups(x: torch.Tensor, band_patch: int) -> torch.Tensor:
    """Group-wise spectral embedding's input: (N, 1, B, p, p) -> (N, B, band_patch * p * p), band
    b's token the windows of bands b - k .. b + k (k = band_patch // 2) side by side, wrapping
    round the ends of the spectrum, in the order of the authors' `gain_neighborhood_band`: b - k
    .. b + k for single pixels, b - 1, b - 2, .. b - k, b, b + 1 .. b + k for windows (the same
    for band_patch 3)."""
    windows = x.flatten(3).squeeze(1)  # (N, B, p * p)
    half = band_patch // 2
    below = range(-half, 0) if windows.shape[2] == 1 else range(-1, -half - 1, -1)
    offsets = [*below, *range(0, half + 1)]
    return torch.cat([torch.roll(windows, shifts=-offset, dims=1) for offset in offsets], dim=2)


class SpectralFormer(Network):
    """SpectralFormer over windows (N, 1, bands, patch, patch) of all bands (no PCA: one token
    per band).

    - group-wise spectral embedding (GSE): each band's token is its window and those of its
      `band_patch // 2` neighbours on either side (`band_groups`), a Linear to `dim`;
    - a learnable class token first, learnable position embeddings (bands + 1), dropout `emb_dropout`;
    - `depth` pre-norm encoder blocks (`heads` heads of `head_dim`, no bias on the queries, keys
      and values; GELU MLP of `mlp_dim`; dropout `dropout`);
    - cross-layer adaptive fusion (CAF, `fusion="caf"`): from the third block on, the block's
      input is first fused with the input of the block two before it by a learned 1x2
      convolution over (token, [current, earlier]) pairs, tokens as channels, as the authors' code
      does; `fusion="none"` is their plain ViT;
    - LayerNorm and a Linear from the class token to the classes.

    Patch-wise: `data.patch_size=7` (the paper's Indian Pines window); pixel-wise: `data.patch_size=1`.
    The embedding's width grows with the window and the fusion's with the bands. Attention spans
    every band of the whole window, so maps run window by window.
    """

    takes = "window"
    dense = False
    reference = Reference(
        paper="Hong et al., IEEE TGRS 2022 (SpectralFormer)",
        code="danfenghong/IEEE_TGRS_SpectralFormer vit_pytorch.py (ViT, mode='CAF')",
        settings={"in_bands": 200, "patch_size": 7, "num_classes": 16, "band_patch": 3, "dim": 64,
                  "depth": 5, "heads": 4, "head_dim": 16, "mlp_dim": 8, "fusion": "caf"},
        params=355_577,
        counted="ViT(image_size=7, near_band=3, num_patches=200, num_classes=16, dim=64, depth=5, "
                "heads=4, mlp_dim=8, dropout=0.1, emb_dropout=0.1, mode='CAF'), demo.py's Indian Pines "
                "patch-wise model (pixel-wise, image_size=1: 346,361)")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, band_patch: int = 3, dim: int = 64,
                 depth: int = 5, heads: int = 4, head_dim: int = 16, mlp_dim: int = 8, dropout: float = 0.1,
                 emb_dropout: float = 0.1, fusion: str = "caf") -> None:
        super().__init__()
        _check_positive(band_patch=band_patch, dim=dim, depth=depth, heads=heads, head_dim=head_dim,
                        mlp_dim=mlp_dim)
        if band_patch % 2 == 0:
            raise ConfigError(f"model.net.band_patch={band_patch} must be odd (the band and as many "
                              f"neighbours on either side)")
        if fusion not in FUSIONS:
            raise ConfigError(f"model.net.fusion={fusion!r}: choose one of {', '.join(FUSIONS)}")
        self.check_input(in_bands, patch_size)
        self.band_patch, self.fusion = band_patch, fusion
        self.embedding = nn.Linear(patch_size * patch_size * band_patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, in_bands + 1, dim))
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_dim, dropout, head_dim, qkv_bias=False)
                                    for _ in range(depth))
        tokens = in_bands + 1
        self.skips = nn.ModuleList(nn.Conv2d(tokens, tokens, (1, 2)) for _ in range(depth - 2)
                                   if fusion == "caf")
        self.classifier = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        return 1, 1

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, B + 1, dim): class token and band tokens with position embeddings."""
        embedded = self.embedding(band_groups(x, self.band_patch))
        cls = self.cls_token.expand(embedded.shape[0], -1, -1)
        return torch.cat([cls, embedded], dim=1) + self.pos_embedding

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, dim): the class token after the encoder."""
        x = self.emb_dropout(self.tokens(x))
        inputs: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            inputs.append(x)
            if self.fusion == "caf" and index > 1:
                pair = torch.stack([x, inputs[index - 2]], dim=3)  # (N, tokens, dim, 2)
                x = self.skips[index - 2](pair).squeeze(3)
            x = block(x)
        return x[:, 0]

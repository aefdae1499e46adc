"""Networks and the LightningModule that trains them."""

from hsi.models.baselines import CNN2D, CNN3D
from hsi.models.classifier import HSIClassifier
from hsi.models.cost import model_cost
from hsi.models.fast import HybridSNFast
from hsi.models.gaht import GAHT
from hsi.models.hit import HiT
from hsi.models.hybridsn import HybridSN
from hsi.models.mambahsi import MambaHSI
from hsi.models.spectral import CNN1D
from hsi.models.spectralformer import SpectralFormer
from hsi.models.ssftt import SSFTT
from hsi.models.variants import HybridSNLite, HybridSNSE

__all__ = ["CNN1D", "CNN2D", "CNN3D", "GAHT", "HSIClassifier", "HiT", "HybridSN", "HybridSNFast",
           "HybridSNLite", "HybridSNSE", "MambaHSI", "SSFTT", "SpectralFormer", "model_cost"]

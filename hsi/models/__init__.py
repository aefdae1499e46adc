"""Networks (`hsi.models.contract.Network`), pixel estimators (`hsi.models.estimators.PixelEstimator`)
and the LightningModule that trains the networks."""

from hsi.models.baselines import CNN2D, CNN3D
from hsi.models.classifier import HSIClassifier
from hsi.models.contract import Network, Reference
from hsi.models.cost import model_cost
from hsi.models.estimators import PixelEstimator, SpectralKNN, SpectralRandomForest
from hsi.models.fast import HybridSNFast
from hsi.models.gaht import GAHT
from hsi.models.hit import HiT
from hsi.models.hybridsn import HybridSN
from hsi.models.mambahsi import MambaHSI
from hsi.models.mlp import MLP
from hsi.models.spectral import CNN1D
from hsi.models.spectralformer import SpectralFormer
from hsi.models.ssftt import SSFTT
from hsi.models.svm import SpectralSVM
from hsi.models.variants import HybridSNLite, HybridSNSE

__all__ = ["CNN1D", "CNN2D", "CNN3D", "GAHT", "HSIClassifier", "HiT", "HybridSN", "HybridSNFast",
           "HybridSNLite", "HybridSNSE", "MLP", "MambaHSI", "Network", "PixelEstimator", "Reference",
           "SSFTT", "SpectralFormer", "SpectralKNN", "SpectralRandomForest", "SpectralSVM", "model_cost"]

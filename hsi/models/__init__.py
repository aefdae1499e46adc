"""Networks and the LightningModule that trains them."""

from hsi.models.classifier import HSIClassifier
from hsi.models.hybridsn import HybridSN

__all__ = ["HSIClassifier", "HybridSN"]

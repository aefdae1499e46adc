"""hsi: hyperspectral image classification experiments with Lightning and Hydra."""

import warnings

__version__ = "0.1.0"

# Lightning's own pytree helper trips torch's LeafSpec deprecation on every fit and test; nothing a
# user of hsi can change, so it is not shown.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

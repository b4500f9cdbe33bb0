"""edge-sealant: train, quantize and deploy a normal-vs-defect inspection classifier.

The top-level package stays import-light: torch, openvino and nncf are imported only by
the modules that need them, so ``edge_sealant.runtime`` runs on a factory PC without torch.
"""

__version__ = "0.1.0"

from edge_sealant.errors import EdgeSealantError

__all__ = ["EdgeSealantError", "__version__"]

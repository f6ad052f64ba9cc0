"""AnomalyCLIP (Zhou et al., ICLR 2024) as a method on the shared frozen backbone, and the import of the
authors' released checkpoints."""

from .checkpoint import import_anomalyclip, load_anomalyclip_checkpoint, read_anomalyclip_checkpoint
from .model import AnomalyCLIP

__all__ = ["AnomalyCLIP", "import_anomalyclip", "load_anomalyclip_checkpoint", "read_anomalyclip_checkpoint"]

"""AnomalyCLIP (Zhou et al., ICLR 2024) as a method on the shared frozen backbone, and the import of the
authors' released checkpoints."""

from .checkpoint import load_anomalyclip_checkpoint, read_anomalyclip_checkpoint
from .model import AnomalyCLIP

__all__ = ["AnomalyCLIP", "load_anomalyclip_checkpoint", "read_anomalyclip_checkpoint"]

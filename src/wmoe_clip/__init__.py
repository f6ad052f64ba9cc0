"""WMoE-CLIP: wavelet-enhanced mixture-of-experts prompt learning for zero-shot anomaly detection."""

__version__ = "0.1.0"

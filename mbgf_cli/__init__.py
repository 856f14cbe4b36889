"""mbgf: video action recognition with CLIP and Multi-Branch Gated Fusion (the application)."""

__version__ = "0.1.0"

"""q3ref: a transparent NumPy reference of Qwen3-Embedding, to diff exported graphs against."""

from .api import Model, find_weights, load, pad
from .config import Config
from .errors import Q3RefError

__all__ = ["Config", "Model", "Q3RefError", "find_weights", "load", "pad"]
__version__ = "0.1.0"

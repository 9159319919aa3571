"""Real models: input capture, sequential block-by-block quantization, the embedded MiniLM."""

from .capture import StopForward, capture_inputs
from .sequential import METHODS, Config, LayerResult, discover_groups, quantize_sequential, summarize

__all__ = ["METHODS", "Config", "LayerResult", "StopForward", "capture_inputs", "discover_groups",
           "quantize_sequential", "summarize"]

"""Real models: the block-by-block quantization pipeline, the embedded MiniLM, SmolLM2, text, perplexity."""

from .capture import StopForward, capture_inputs
from .lazy import SafetensorsBlocks
from .pipeline import (
    METHODS,
    BlockInputs,
    BlockSource,
    Config,
    ModelBlocks,
    PipelineResult,
    capture_block_inputs,
    discover_groups,
    quantize_model,
    run_setting,
)

__all__ = [
    "METHODS",
    "BlockInputs",
    "BlockSource",
    "Config",
    "ModelBlocks",
    "PipelineResult",
    "SafetensorsBlocks",
    "StopForward",
    "capture_block_inputs",
    "capture_inputs",
    "discover_groups",
    "quantize_model",
    "run_setting",
]

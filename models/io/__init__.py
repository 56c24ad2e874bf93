"""Checkpoint and data-set I/O: safetensors checkpoints with JSON metadata, IDX image files."""

from .checkpoint import (
    FORMAT_VERSION,
    MODEL_NAME,
    TRAINING_STATE_SUFFIX,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    model_name_problem,
    read_metadata,
    save_checkpoint,
)
from .convert import convert, load_document, read_state_dict
from .data import (
    BINARIZE_SEED,
    binarize,
    binarize_per_input,
    binarize_sample,
    binarize_threshold,
    held_out_count,
    load_idx_dataset,
    parse_idx,
    read_idx,
    split_train_valid,
)

__all__ = [
    "BINARIZE_SEED",
    "FORMAT_VERSION",
    "MODEL_NAME",
    "TRAINING_STATE_SUFFIX",
    "Checkpoint",
    "CheckpointError",
    "binarize",
    "binarize_per_input",
    "binarize_sample",
    "binarize_threshold",
    "convert",
    "held_out_count",
    "load_checkpoint",
    "load_document",
    "load_idx_dataset",
    "model_name_problem",
    "parse_idx",
    "read_idx",
    "read_metadata",
    "read_state_dict",
    "save_checkpoint",
    "split_train_valid",
]

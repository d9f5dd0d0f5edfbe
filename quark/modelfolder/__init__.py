"""Model folders: the on-disk layout (`folder`), loading full precision or int8 (`loading`,
`quantized`), adapters and merging them (`adapters`), Hugging Face Llama import/export
(`hf_llama`) and size/FLOP arithmetic (`flops`).

The folder layout and loading are re-exported here; the rest by their module paths.
"""

from quark.modelfolder.folder import (
                                      DEFAULT_GENERATION,
                                      check_state,
                                      generation_defaults,
                                      list_models,
                                      load_full_precision,
                                      load_state,
                                      load_tokenizer,
                                      read_config,
                                      read_config_json,
                                      save_derived,
                                      save_model,
                                      saved_quantization,
)
from quark.modelfolder.loading import assemble_with_head, load_model

__all__ = ["DEFAULT_GENERATION", "assemble_with_head", "check_state", "generation_defaults", "list_models",
           "load_full_precision", "load_model", "load_state", "load_tokenizer", "read_config", "read_config_json",
           "save_derived", "save_model", "saved_quantization"]

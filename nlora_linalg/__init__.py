"""nlora_linalg: Nyström-type low-rank approximation and its use to initialise and fine-tune LLM adapters.

Public API (studies and benchmarks import only these names)::

    from nlora_linalg import nystrom_init
    f = nystrom_init(W, rank=16)        # f.B @ f.N @ f.A ≈ W, f.error, f.bound, f.delta
"""

from .linalg import *  # noqa: F401,F403
from .linalg import __all__ as _linalg_all
from .adapters import *  # noqa: F401,F403
from .adapters import __all__ as _adapters_all
from .pipeline.assets import MissingAssetError, load_linear_weights, minilm_path, smollm2_path
from .pipeline.data import DATASETS, DataConfig, load_dataset
from .pipeline.tasks import MODELS, ModelConfig
from .pipeline.store import RunStore, config_key, shard
from .pipeline.train import CheckpointError, ConfigMismatchError, RunConfig, RunResult, TrainConfig, finetune

__version__ = "0.1.0"
__all__ = ["__version__", *_linalg_all, *_adapters_all, "MissingAssetError", "load_linear_weights", "minilm_path", "smollm2_path",
           "DATASETS", "DataConfig", "load_dataset", "MODELS", "ModelConfig", "CheckpointError", "ConfigMismatchError",
           "RunConfig", "RunResult", "TrainConfig", "finetune", "RunStore", "config_key", "shard"]

"""Adapter layer: three-factor adapters (B N A) inside transformers models, their inits, state and PEFT export."""

from .inits import (
    INITS,
    AdapterInit,
    IntTuneInit,
    LoRAInit,
    NLoRAInit,
    NLoRAPaperInit,
    PiSSAFastInit,
    PiSSAInit,
    SLoRAInit,
    register_init,
)
from .inject import (
    AdapterConfig,
    InjectionReport,
    ReportRow,
    adapter_modules,
    inject_adapters,
    merge_adapters,
    unmerge_adapters,
)
from .layer import SUPPORTED_LAYERS, ThreeFactorLinear, UnsupportedLayerError
from .state import AdapterMismatchError, export_peft, load_adapter, save_adapter

__all__ = [
    "INITS", "AdapterInit", "IntTuneInit", "LoRAInit", "NLoRAInit", "NLoRAPaperInit", "PiSSAFastInit", "PiSSAInit",
    "SLoRAInit", "register_init", "AdapterConfig", "InjectionReport", "ReportRow", "adapter_modules",
    "inject_adapters", "merge_adapters", "unmerge_adapters", "SUPPORTED_LAYERS", "ThreeFactorLinear",
    "UnsupportedLayerError", "AdapterMismatchError", "export_peft", "load_adapter", "save_adapter",
]

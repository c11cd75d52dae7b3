"""How a reader reads on CPU: fp32, bf16 autocast, or a dynamically int8-quantised copy.

Reading (memory after every segment) is where CPU time goes; answering is a few tokens. Which
precision reads fastest depends on the CPU (bf16 pays off only with native bf16 matmuls,
dynamic int8 with VNNI) and whether answers survive it depends on the model, so it is a
measured setting of each model directory (`RMTConfig.cpu_reading`, chosen by
`bench.read_throughput --smollm2`), applied by `RecurrentMemoryTransformer.read` on CPU only;
answering and training always run the model as it is.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

CPU_READINGS = ("fp32", "bf16", "int8")


def int8_copy(cell: nn.Module) -> nn.Module:
    """A copy of a memory cell whose backbone Linear layers are dynamically quantised to int8
    (weights int8, activations quantised per batch), LoRA adapters folded in first. The LM head
    is left out: reading never uses it."""
    from model.adapters import ADAPTER_MARK

    cell = copy.deepcopy(cell).eval()
    if any(ADAPTER_MARK in name for name, _ in cell.named_parameters()):
        from model.adapters import merge_lora

        merge_lora(cell.backbone)
    with warnings.catch_warnings():
        # torch.ao.quantization and quantised tensors are deprecated in favour of torchao, a
        # package we do not have; they are still what torch ships for int8 Linear on CPU.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        quantize_dynamic(cell.backbone.base_model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return cell

"""Low-rank adapters (LoRA, through peft) on the attention and MLP projections of a backbone.

A pretrained backbone is shared by everyone who installs it; what a reader learns on top of it
is the memory and these adapters (~10 MB for SmolLM2 at rank 8), so that is all an adapter
directory stores. peft injects the adapters in place (`q_proj` becomes a LoRA layer holding
`base_layer`, `lora_A`, `lora_B`), so the backbone keeps its own forward and the memory cell
drives it as before; the base weights are frozen.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_MARK = ".lora_"  # in the name of every adapter tensor


@dataclass
class LoraSettings:
    """rank r and scale alpha / r of the update W + (alpha / r) B A, on the named Linear layers."""

    rank: int = 8
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LoraSettings":
        return cls(**data)


def add_lora(backbone: nn.Module, settings: LoraSettings) -> None:
    """Inject fresh adapters (B = 0: the backbone's function is unchanged) and freeze the rest."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, target_modules=list(settings.targets), lora_dropout=0.0, bias="none")
    inject_adapter_in_model(config, backbone)
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_(ADAPTER_MARK in name)


def merge_lora(module: nn.Module) -> None:
    """Fold every adapter into its base weight and put the plain Linear back: same function,
    no adapter cost, and the Linear layers are what dynamic int8 quantisation replaces."""
    from peft.tuners.lora import LoraLayer

    layers = [(name, child) for name, child in module.named_modules() if isinstance(child, LoraLayer)]
    for name, layer in layers:
        layer.merge()
        parent, _, attribute = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, attribute, layer.get_base_layer())

"""LogicFlow: reasoning datasets -> validated chat rows -> LoRA model -> honest eval -> card -> Hub."""

__version__ = "0.1.0"

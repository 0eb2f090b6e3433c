"""The method comparison study (LoRA against other fine-tuning methods on one base)."""

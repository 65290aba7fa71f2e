"""What a knowledge transfer is asked to do, without torch: the web process reads it too."""

from dataclasses import dataclass


@dataclass(frozen=True)
class TransferRecipe:
    """The paper's defaults: 5 epochs of AdamW at 1e-4 (cosine), temperature 1."""

    epochs: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 64
    weight_decay: float = 0.05
    temperature: float = 1.0


MODES = ("sequential", "parallel", "soup")
ORDERS = ("ascending", "descending")  # teachers by accuracy; the paper's default first

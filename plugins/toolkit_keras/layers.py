"""Keras layers of the model zoo that Keras does not have, registered for safe_mode loading (package "toolkit").

Both use only arithmetic, slicing and gathers, so every converter keeps them as builtin operators (no Flex, no
string ops): a device feeds numbers it already has, category codes or token ids.
Importing this module imports Keras; load_keras() imports it before loading any model.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="toolkit")
class CategoryOneHot(layers.Layer):
    """Rows of raw features in, numeric columns and one-hot categories out.

    `categories` maps a column index to its number of categories; that column holds a category code 0..k-1 (as a
    float, like every other column). The output is the numeric columns, in order, then each categorical column as
    k indicators. One-hot is relu(1 - |code - j|): exactly 1 for j == code and 0 for every other integer j, with
    no comparison or cast operators for a converter to trip on."""

    def __init__(self, categories: dict[int, int] | Sequence[Sequence[int]] = (), **kwargs: Any):
        super().__init__(**kwargs)
        pairs = categories.items() if isinstance(categories, dict) else categories
        self.categories = sorted((int(i), int(k)) for i, k in pairs)

    def build(self, input_shape: Any) -> None:
        width = int(input_shape[-1])
        categorical = {i for i, _ in self.categories}
        self.numeric = [i for i in range(width) if i not in categorical]

    def call(self, x: Any) -> Any:
        parts = []
        if self.numeric:
            parts.append(ops.take(x, self.numeric, axis=-1))
        for index, count in self.categories:
            code = x[:, index:index + 1]
            levels = ops.arange(count, dtype=x.dtype)[None, :]
            parts.append(ops.relu(1.0 - ops.abs(code - levels)))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        width = int(input_shape[-1]) - len(self.categories) + sum(k for _, k in self.categories)
        return (*input_shape[:-1], width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "categories": [list(p) for p in self.categories]}


@keras.saving.register_keras_serializable(package="toolkit")
class TokenAndPositionEmbedding(layers.Layer):
    """Token ids (batch, length) in; the sum of a learned token embedding and a learned position embedding out."""

    def __init__(self, vocabulary_size: int, sequence_length: int, width: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.vocabulary_size, self.sequence_length, self.width = vocabulary_size, sequence_length, width
        self.tokens = layers.Embedding(vocabulary_size, width, name="tokens")
        self.positions = layers.Embedding(sequence_length, width, name="positions")

    def build(self, input_shape: Any) -> None:
        self.tokens.build(input_shape)
        self.positions.build((self.sequence_length,))

    def call(self, ids: Any) -> Any:
        length = ops.shape(ids)[-1]
        return self.tokens(ids) + self.positions(ops.arange(length))[None, :, :]

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (*input_shape, self.width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length, "width": self.width}

"""Word tokenisation outside the graph: text models take token ids, so they convert without string operators, and
the vocabulary travels with every artifact as FILE.vocab.txt (one token per line, the line number is its id),
with the settings in the manifest's extra.tokenizer. Pure Python and numpy: a device can tokenise too.

    tok = WordTokenizer.for_artifact("out/lstm_int8.tflite")
    ids = tok.encode(["Great coffee, will buy again"])   # int32, shape (1, sequence_length)
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

PAD, OOV = "<pad>", "<oov>"
VOCABULARY_SUFFIX = ".vocab.txt"


@dataclass
class WordTokenizer:
    """Lower-cased words (letters, digits and apostrophes), the most frequent `len(vocabulary) - 2` of the training
    texts; the first `sequence_length` words are kept, padded at the front (so a recurrent network ends on words,
    not padding); id 0 pads, id 1 stands for a word not in the vocabulary."""

    suffix: ClassVar[str] = VOCABULARY_SUFFIX  # the vocabulary file is the model file's name plus this

    vocabulary: list[str]
    sequence_length: int
    pattern: str = r"[a-z0-9']+"
    lowercase: bool = True
    _ids: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._ids = {w: i for i, w in enumerate(self.vocabulary)}

    @classmethod
    def fit(cls, texts: Iterable[str], size: int, sequence_length: int) -> "WordTokenizer":
        """The `size`-token vocabulary of `texts`; ties broken alphabetically, so the same texts give the same ids."""
        tok = cls([PAD, OOV], sequence_length)
        counts = Counter(w for t in texts for w in tok.words(t))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max(size - 2, 0)]
        return cls([PAD, OOV, *(w for w, _ in ranked)], sequence_length)

    def words(self, text: str) -> list[str]:
        return re.findall(self.pattern, text.lower() if self.lowercase else text)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.sequence_length), dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self._ids.get(w, 1) for w in self.words(text)][:self.sequence_length]
            if ids:
                out[row, -len(ids):] = ids
        return out

    # ---- what travels with an artifact
    def settings(self) -> dict[str, Any]:
        """For the manifest's extra.tokenizer; the vocabulary itself is the file FILE.vocab.txt."""
        return {"kind": "words", "pattern": self.pattern, "lowercase": self.lowercase,
                "sequence_length": self.sequence_length, "padding": "front", "truncation": "keeps the first words",
                "pad_id": 0, "oov_id": 1,
                "vocabulary_size": len(self.vocabulary)}

    def vocabulary_text(self) -> str:
        return "".join(f"{w}\n" for w in self.vocabulary)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], vocabulary_text: str) -> "WordTokenizer":
        vocabulary = vocabulary_text.split("\n")
        if vocabulary and vocabulary[-1] == "":
            vocabulary.pop()
        return cls(vocabulary, int(settings["sequence_length"]), settings.get("pattern", r"[a-z0-9']+"),
                   bool(settings.get("lowercase", True)))

    @classmethod
    def for_artifact(cls, model_path: str | Path) -> "WordTokenizer":
        """The tokenizer a text model was trained with, from its manifest and the vocabulary file beside it."""
        from .artifact import Artifact
        from .errors import UsageError

        artifact = Artifact.open(model_path)
        settings = artifact.manifest.extra.get("tokenizer") if artifact.manifest else None
        if not settings:
            raise UsageError(f"'{Path(model_path).name}' has no tokenizer in its manifest",
                             "Use an artifact made from a text model trained by toolkit train")
        vocab = artifact.path.with_name(artifact.path.name + cls.suffix)
        if not vocab.exists():
            raise UsageError(f"the vocabulary of '{artifact.path.name}' is missing ({vocab.name})",
                             "Copy it from the folder the model was made in")
        data = vocab.read_bytes()
        expected = artifact.manifest.extra.get("files", {}).get(cls.suffix)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise UsageError(f"'{vocab.name}' is not the vocabulary '{artifact.path.name}' was made with (sha256 "
                             "differs)", "Copy the right one from the folder the model was made in")
        return cls.from_settings(settings, data.decode("utf-8"))

    def fingerprint(self) -> str:
        """The sha256 of the vocabulary file this tokenizer writes: two tokenizers with the same one agree."""
        return hashlib.sha256(self.vocabulary_text().encode("utf-8")).hexdigest()


def check_vocabulary(artifact: Any, dataset: Any) -> None:
    """Refuse to feed a text model token ids from another vocabulary: its answers would be numbers about nothing
    (or an index out of its embedding's range)."""
    from .errors import UsageError

    expected = artifact.manifest.extra.get("files", {}).get(VOCABULARY_SUFFIX) if artifact.manifest else None
    tokenizer = getattr(dataset, "tokenizer", None)
    if expected is None or tokenizer is None:
        return
    if tokenizer().fingerprint() != expected:
        raise UsageError(f"dataset '{Path(str(dataset.name)).name}' tokenises with another vocabulary than "
                         f"'{artifact.path.name}' was trained with, so its token ids mean other words",
                         f"Use the dataset the model was trained on ({artifact.manifest.extra.get('dataset')})")

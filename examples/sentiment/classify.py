"""Classify reviews on the device side: tokenise with the vocabulary that travels beside the artifact, run the
.tflite with LiteRT alone (no TensorFlow), and print each review's class.

    python classify.py MODEL.tflite "review one" "review two" ...
"""

import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from toolkit.api import WordTokenizer


def main(model: str, reviews: list[str]) -> None:
    tokenizer = WordTokenizer.for_artifact(model)  # settings from the manifest, words from MODEL.vocab.txt
    manifest = json.loads(Path(model + ".manifest.json").read_text())
    classes = manifest["extra"].get("class_names")  # what each output index means, as trained
    interpreter = Interpreter(model_path=model)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for review, ids in zip(reviews, tokenizer.encode(reviews)):
        interpreter.resize_tensor_input(inp["index"], (1, len(ids)))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], ids[None, :].astype(inp["dtype"]))
        interpreter.invoke()
        logits = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        if scale:  # an int8 output: back to real logits
            logits = (logits - zero) * scale
        label = int(logits.argmax())
        print(f"{classes[label] if classes else label}: {review}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])

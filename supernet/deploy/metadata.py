"""What an exported model says about itself, in the ONNX model's ``metadata_props``.

Every value is stored as JSON text (``metadata_props`` maps strings to strings), so a reader in any
language gets numbers, lists and objects back with one JSON parse per key. A model is decodable
from this alone: the tokens (index = id), the blank id, the input kind and its feature settings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from supernet.asr_module import ASRModule
from supernet.data.tokenizer import (
    BLANK,
    BLANK_ID,
    UNKNOWN,
    UNKNOWN_ID,
    Tokenizer,
    tokenizer_from_dict,
    tokenizer_from_vocab,
)
from supernet.deploy.graph import INPUT_NAMES, OUTPUT_NAMES, feature_pipeline, feature_settings
from supernet.errors import UserError

FORMAT = "supernet-ctc-onnx/1"
REQUIRED = ("format", "tokens", "blank_id", "input", "features", "subsampling")


def model_metadata(module: ASRModule, input_kind: str, min_input_length: int) -> dict[str, Any]:
    """The metadata of ``module`` exported with ``input_kind`` inputs; ``min_input_length``: the
    shortest time axis the graph holds for (samples or frames): pad shorter inputs with zeros."""
    spec = module.spec
    features = feature_settings(feature_pipeline(module))
    lookahead = spec.total_lookahead
    unit = "samples" if spec.features == "raw" else "feature frames"
    frame_ms = 1000 / spec.input_rate
    metadata = {
        "format": FORMAT,
        "arch": spec.name,
        "arch_spec": spec.to_dict(),
        "input": input_kind,
        "input_names": list(INPUT_NAMES[input_kind]),
        "min_input_length": min_input_length,
        "output_names": list(OUTPUT_NAMES),
        "tokens": list(module.tokenizer.vocab),
        "vocab_size": len(module.tokenizer),
        "tokenizer": module.tokenizer.kind,  # char, bpe, unigram (sentencepiece: one of the two)
        "word_boundary": module.tokenizer.word_boundary,
        "blank_id": BLANK_ID,
        "unknown_id": UNKNOWN_ID,
        "subsampling": spec.total_stride,
        "output_frame_ms": spec.total_stride * frame_ms,
        "features": features,
        # the network's look-ahead; the front-end's window adds half a window (12.5 ms) to it
        "lookahead_frames": None if math.isinf(lookahead) else int(lookahead),
        "lookahead_unit": unit,
        "lookahead_ms": None if math.isinf(lookahead) else lookahead * frame_ms,
        "streamable": spec.streamable,
        "decoding": "greedy CTC: argmax per frame over the first out_lengths frames, merge repeats, drop blank; "
        "join the tokens; a word_boundary other than a space (sentencepiece's \u2581) is read as one, "
        "with runs of spaces as one and none at the ends",
    }
    if getattr(module.tokenizer, "model", None) is not None:  # a subword model spells words (lexicons)
        metadata["sentencepiece_model"] = module.tokenizer.to_dict()["sentencepiece_model"]
    return metadata


def to_props(metadata: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value, ensure_ascii=False) for key, value in metadata.items()}


def from_props(props: dict[str, str], source: str) -> dict[str, Any]:
    """Metadata read back from ``metadata_props``; a model exported elsewhere is refused by name."""
    try:
        metadata = {key: json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError as err:
        raise UserError(f"{source}: metadata is not supernet's (a value is not JSON: {err})") from err
    if metadata.get("format") != FORMAT:
        raise UserError(
            f"{source}: not a model exported by `supernet export` (metadata format "
            f"{metadata.get('format')!r}, expected {FORMAT!r})"
        )
    missing = [key for key in REQUIRED if key not in metadata]
    if missing:
        raise UserError(f"{source}: metadata lacks {', '.join(missing)}")
    if metadata["tokens"][:2] != [BLANK, UNKNOWN] or metadata["blank_id"] != BLANK_ID:
        raise UserError(f"{source}: tokens must start with {BLANK!r}, {UNKNOWN!r} (blank id {BLANK_ID})")
    return metadata


def read_metadata(path) -> dict[str, Any]:
    """The metadata of an exported model file (no onnxruntime needed)."""
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    return from_props({p.key: p.value for p in model.metadata_props}, str(path))


def tokenizer_of(metadata: dict[str, Any]) -> Tokenizer:
    """The tokenizer the tokens list describes (blank, unknown, then characters or SentencePiece
    pieces); with the SentencePiece model (base64) beside them it encodes too, else it decodes only."""
    if "sentencepiece_model" not in metadata:
        return tokenizer_from_vocab(metadata["tokens"])
    saved = {
        "type": metadata.get("tokenizer"),
        "vocab": metadata["tokens"],
        "sentencepiece_model": metadata["sentencepiece_model"],
    }
    try:
        return tokenizer_from_dict(saved, "the model's metadata")
    except ValueError as err:
        raise UserError(str(err)) from err


def write_props(model, metadata: dict[str, Any]) -> None:
    """Replace ``model``'s (an ``onnx.ModelProto``) metadata with ``metadata``."""
    import onnx

    onnx.helper.set_model_props(model, to_props(metadata))

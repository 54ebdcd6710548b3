"""The encoder part of a model with a pretrained encoder as ONNX: windows ► the transformer ►
gather ► pooling, for any number of windows, window width, sentences, subwords and words.

:func:`encoder_graph` traces a :class:`~seqtag.model.encoder.SubwordEncoder` with
``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``, opset :data:`OPSET`,
dynamic axes on every length); the graph's inputs are the five int64 arrays of
:class:`~seqtag.data.subwords.EncoderInputs` (names :data:`INPUT_NAMES`), its output ``vectors``
``(batch, max_words, dim)`` float32. :func:`seqtag.serving.onnx_export.to_onnx` joins it to the
tagger's hand-written graph, whose input of that name it feeds: one file.
:func:`encoder_feeds` turns a batch laid out by :func:`seqtag.data.subwords.encoder_inputs` into
ONNX Runtime's feeds with numpy alone, so the runner needs neither torch nor transformers
(torch is imported only to trace).

Unlike the tagger's graph (written by hand because tracing unrolls the CRF's loops at the
example's length), the encoder has no data-dependent loop: its lengths are shapes, which the
tracer records symbolically. The example batch is padded (two sentences of different lengths),
and tests hold the graph to eager on batches of one token, of several sentences and of
windowed long sentences.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqtag.data.subwords import EncoderInputs, Subwords, encoder_inputs

if TYPE_CHECKING:
    import onnx

    from seqtag.data.subwords import SubwordTokenizer
    from seqtag.model.encoder import SubwordEncoder

OPSET = 17
"""ONNX opset of the graph (``LayerNormalization`` is in 17)."""
INPUT_NAMES = ("window_ids", "window_mask", "source", "word_starts", "word_ends")
OUTPUT_NAME = "vectors"
_DYNAMIC_AXES = {
    "window_ids": {0: "windows", 1: "width"},
    "window_mask": {0: "windows", 1: "width"},
    "source": {0: "batch", 1: "subwords"},
    "word_starts": {0: "batch", 1: "words"},
    "word_ends": {0: "batch", 1: "words"},
    OUTPUT_NAME: {0: "batch", 1: "words"},
}


def encoder_feeds(inputs: EncoderInputs) -> dict[str, np.ndarray]:
    """ONNX Runtime's feeds for a batch: :data:`INPUT_NAMES` to int64 arrays, ``window_ids``
    and ``window_mask`` ``(n_windows, width)``, ``source`` ``(B, max_subwords)``,
    ``word_starts`` and ``word_ends`` ``(B, max_words)``."""
    b = len(inputs.lengths)
    rows = (inputs.window_ids, inputs.window_mask, inputs.source, inputs.word_starts, inputs.word_ends)
    counts = (len(inputs.window_ids), len(inputs.window_ids), b, b, b)
    return {
        name: np.array(r, dtype=np.int64).reshape(n, -1) if n else np.zeros((0, 0), np.int64)
        for name, r, n in zip(INPUT_NAMES, rows, counts)
    }


def export_encoder(encoder: SubwordEncoder, tokenizer: SubwordTokenizer, path: str | os.PathLike) -> Path:
    """Write ``encoder`` (in eval mode) as an ONNX graph to ``path`` (:func:`encoder_graph`);
    returns the path."""
    path = Path(path)
    path.write_bytes(encoder_graph(encoder, tokenizer).SerializeToString())
    return path


def encoder_graph(encoder: SubwordEncoder, tokenizer: SubwordTokenizer) -> onnx.ModelProto:
    """``encoder`` traced in eval mode (its mode is restored after) as an ONNX model: inputs
    :data:`INPUT_NAMES`, output :data:`OUTPUT_NAME`, every length dynamic.

    The weights are stored inside the model (ONNX's 2 GB limit: base-size encoders fit).
    """
    import torch

    from seqtag.data.dataset import SubwordBatch

    # a padded example: two sentences of different lengths, the longer in two windows
    unk = tokenizer.unk_id
    example = encoder_inputs(
        [Subwords([unk] * 5, [0, 2, 3, 5]), Subwords([unk], [0, 1])], tokenizer, 4 + tokenizer.n_special, 2
    )
    was_training = encoder.training
    encoder.eval()
    buffer = io.BytesIO()
    try:
        with _export_warnings(), torch.no_grad():
            torch.onnx.export(
                encoder,
                tuple(SubwordBatch.from_inputs(example)),
                buffer,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes=_DYNAMIC_AXES,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        encoder.train(was_training)
    import onnx

    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _export_warnings() -> Iterator[None]:
    """Silence the notices the tracing export gives for this module, and no others: the legacy
    exporter's deprecation (the torch.export-based one needs ``onnxscript``), shape comparisons
    in transformers and torch.nn (``kv_length - mask.shape[-1] > 0``, ``padding_idx >=
    weight.size(0)``: true or false for every shape alike; not in seqtag's own code),
    and the opset's decomposition of advanced indexing (no negative indices here)."""
    with warnings.catch_warnings():
        for message in (
            r"You are using the legacy TorchScript-based ONNX export",
            r"The feature will be removed",
            r"Exporting aten::index operator of advanced indexing",
        ):
            warnings.filterwarnings("ignore", message=message)
        warnings.filterwarnings(
            "ignore", message=r"Converting a tensor to a Python boolean", module=r"(transformers|torch\.nn)\."
        )
        yield

"""Export the whole tagger to one ONNX graph: id tensors in, tags, confidences and marginals out.

:func:`to_onnx` writes a ``.onnx`` file that ONNX Runtime (or any runtime with the standard
operators, opset :data:`OPSET`) runs for any batch size, sentence length and word length:

- inputs ``words``, ``cases`` ``(batch, seq_len)``, ``chars`` ``(batch, seq_len, word_len)``
  and ``lengths`` ``(batch,)``, all int64, 0 at padding, every length >= 1 (``word_len >= 1``;
  ``cases`` and ``chars`` are read only when the model has those features), and the required
  boolean scalar ``with_marginals`` (false skips the marginals: :data:`WITH_MARGINALS`);
- for a model with a pretrained encoder, also the encoder's inputs (``window_ids``,
  ``window_mask``, ``source``, ``word_starts``, ``word_ends``:
  :class:`~seqtag.data.subwords.EncoderInputs`): the traced encoder
  (:mod:`seqtag.serving.encoder_onnx`) is joined to the hand-written graph below by its word
  vectors (:func:`merge_encoder`), and the tokenizer travels in the metadata;
- outputs ``tags`` ``(batch, seq_len)`` int64 (0 at padding), ``confidence`` ``(batch, seq_len)``
  (the probability of each chosen tag), ``marginals`` ``(batch, seq_len, num_tags)``,
  ``emissions`` ``(batch, seq_len, num_tags)``, float32, and ``log_partition`` ``(batch,)``,
  float64 (``log Z``: a tag sequence's log-probability is its score minus it).

The graph is built operator by operator with ``onnx.helper`` rather than by
``torch.onnx.export``: the tracing exporter unrolls the CRF's Python loops at the example's
sentence length (a graph exported at length 5 fails at length 7), and the ``torch.export``-based
one specializes the LSTM's length the same way (see :mod:`seqtag.serving.torchscript`). Here the BiLSTM is the
ONNX ``LSTM`` operator with ``sequence_lens`` (its backward direction starts at each sentence's
own end, as packing does), the character CNN is ``Gather``/``MatMul``/masked ``ReduceMax`` over
words in three length groups (the eager CharCNN convolves the real characters only, whose
per-word max needs ``ScatterElements`` with a reduction: opset 18, and this graph is opset 17), and the
CRF's constrained Viterbi (with its backtracking) and forward-backward marginals are two pairs
of ``Loop`` operators over the time steps, the second inside an ``If`` on ``with_marginals``
(a softmax head's marginals too).

The vocabularies, the encoding rules and the tag names are stored as JSON in the model's
``metadata_props`` under :data:`METADATA_NAME`; :class:`seqtag.serving.onnx_runner.OnnxTagger` reads
them to tag token strings with nothing but ``numpy`` and ``onnxruntime`` (and ``tokenizers``
for a model with a pretrained encoder).

The graph is built in the order the data flows (embeddings, LSTM, head); every part reads the
arrays of :func:`_tagger_arrays`, the one place that knows the Tagger's layout.

>>> import seqtag, seqtag.serving.onnx_export, tempfile, os
>>> from seqtag.serving.onnx_runner import OnnxTagger
>>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), seqtag.Vocabularies.build(seqtag.tutorial_corpus()))
>>> path = seqtag.serving.onnx_export.to_onnx(tagger, os.path.join(tempfile.mkdtemp(), "tagger.onnx"))
>>> OnnxTagger(path).predict([["The", "dog"], []]) == tagger.predict([["The", "dog"], []])
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from seqtag import __version__
from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_bytes, make_dir
from seqtag.model.crf import NEG_SCORE
from seqtag.model.heads import CRFHead, SoftmaxHead
from seqtag.model.tagger import Tagger, as_tagger
from seqtag.serving.encoder_onnx import INPUT_NAMES as ENCODER_INPUTS
from seqtag.serving.encoder_onnx import OUTPUT_NAME as ENCODER_OUTPUT
from seqtag.serving.encoder_onnx import encoder_graph
from seqtag.serving.files import (
    CASE_RULE,
    FORMAT_VERSIONS,
    METADATA_NAME,
    ONNX_FORMAT,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    WITH_MARGINALS,
)

OPSET = 17
"""ONNX opset of the graph (ONNX Runtime 1.13 and later run it)."""
PAD_SCORE = -1e30
"""Added to the character convolution at padding, so that the max over a word ignores it."""
CHAR_GROUPS = (8, 16)
"""Word-length limits of the graph's character groups: up to 8 characters, up to 16, longer."""
VECTORS = ENCODER_OUTPUT
"""The encoder's word vectors ``(batch, seq_len, dim)``: the encoder part's output and the
tagger part's input, one edge of the merged graph of a model with a pretrained encoder."""


# -- the one place that reads the Tagger's attributes ------------------------------------------


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _tagger_arrays(tagger: Tagger) -> dict:
    """Everything the graph and its metadata need from ``tagger``, as numpy arrays and flags.

    Every access to the Tagger's attributes is here, so that a change of the model's layout is
    one edit: ``case_embedding`` and ``char_cnn`` are None when unused, ``tagger.head`` is a
    :class:`~seqtag.model.heads.CRFHead` (``head.crf``) or a :class:`~seqtag.model.heads.SoftmaxHead`.

    Raises:
        SeqtagError: for a head the graph has no translation for.

    Returns:
        A dict: ``encoder``: None, or for a model with a pretrained encoder what the runner
        tokenizes with (``tokenizer``: the ``tokenizer.json`` text, ``unk_token``,
        ``pad_token``, ``window_size``, ``stride``) and ``dim``, its vector size;
        ``word_embedding`` ``(V, E)`` or None; ``case_embedding`` ``(4, C)`` or None;
        ``char_embedding`` ``(num_chars, Ec)``, ``conv_weight`` ``(F, Ec, kernel)``,
        ``conv_bias`` ``(F,)`` or None; ``lstm``: one ``[(w_ih, w_hh, b_ih, b_hh), ...]`` list per layer (none without LSTM layers), one tuple per direction, in PyTorch's gate order (i, f, g, o);
        ``hidden_size``; ``output_weight`` ``(K, D)``, ``output_bias`` ``(K,)``; ``crf``: None
        or a dict of ``start`` ``(K,)``, ``transitions`` ``(K, K)``, ``end`` ``(K,)`` and their
        bool masks; ``tags``, ``words``, ``chars`` (id order), ``lower_map``, ``lowercase``,
        ``max_word_length``, ``config`` (the TaggerConfig as a dict).
    """
    config, vocabs = tagger.config, tagger.vocabs
    case, char_cnn, head = tagger.case_embedding, tagger.char_cnn, tagger.head
    if type(head) not in (CRFHead, SoftmaxHead):  # a subclass may compute something else
        raise SeqtagError(f"no ONNX translation for the head {type(head).__name__}: export CRF or softmax heads")
    crf = head.crf if isinstance(head, CRFHead) else None
    lstm = tagger.lstm
    directions = ["", "_reverse"] if lstm is not None and lstm.bidirectional else [""]
    layers = []
    for layer in range(lstm.num_layers if lstm is not None else 0):
        per_direction = []
        for suffix in directions:
            names = [f"{kind}_l{layer}{suffix}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if lstm.bias:
                per_direction.append(tuple(_np(getattr(lstm, n)) for n in names))
            else:
                w_ih, w_hh = _np(getattr(lstm, names[0])), _np(getattr(lstm, names[1]))
                zeros = np.zeros(w_ih.shape[0], np.float32)
                per_direction.append((w_ih, w_hh, zeros, zeros))
        layers.append(per_direction)
    crf_arrays = None
    if crf is not None:
        crf_arrays = {
            "start": _np(crf.start_transitions),
            "transitions": _np(crf.transitions),
            "end": _np(crf.end_transitions),
            "start_mask": crf.start_mask.cpu().numpy().copy(),
            "transition_mask": crf.transition_mask.cpu().numpy().copy(),
            "end_mask": crf.end_mask.cpu().numpy().copy(),
        }
    windows = tagger.windows
    encoder = None
    if windows is not None:
        tokenizer = windows.tokenizer
        encoder = {
            "tokenizer": tokenizer.tokenizer.to_str(),
            "unk_token": tokenizer.unk_token,
            "pad_token": tokenizer.pad_token,
            "window_size": windows.size,
            "stride": windows.stride,
            "dim": tagger.vector_dim,
        }
    return {
        "encoder": encoder,
        "word_embedding": _np(tagger.word_embedding.weight) if tagger.word_embedding is not None else None,
        "case_embedding": _np(case.weight) if case is not None else None,
        "char_embedding": _np(char_cnn.embedding.weight) if char_cnn is not None else None,
        "conv_weight": _np(char_cnn.conv.weight) if char_cnn is not None else None,
        "conv_bias": _np(char_cnn.conv.bias) if char_cnn is not None and char_cnn.conv.bias is not None else None,
        "lstm": layers,
        "hidden_size": lstm.hidden_size if lstm is not None else 0,
        "output_weight": _np(tagger.output.weight),
        "output_bias": _np(tagger.output.bias),
        "crf": crf_arrays,
        "tags": list(vocabs.tags.itos),
        "words": list(vocabs.words.itos),
        "chars": list(vocabs.chars.itos),
        "lower_map": dict(vocabs.lower_map),
        "lowercase": bool(config.lowercase),
        "max_word_length": int(config.max_word_length),
        "config": config.to_dict(),
    }


# -- graph building -----------------------------------------------------------------------------


class _Graph:
    """A list of nodes and initializers with fresh names: ``g.op("Add", a, b)`` returns the output name."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, value, hint: str = "const", dtype=None) -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, out: str | None = None, **attrs):
        names = [out] if out is not None else [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.name(op_type), **attrs))
        return names[0] if outputs == 1 else names


def _onnx_gates(w: np.ndarray) -> np.ndarray:
    """PyTorch's LSTM gate blocks (i, f, g, o) along axis 0 ► ONNX's (i, o, f, c)."""
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def _char_features(g: _Graph, arrays: dict, chars: str, batch: str, time: str) -> str:
    """``chars`` ``(B, T, W)`` ► ``(B, T, F)``: the CharCNN's embedding, convolution and max over
    the real characters (padding excluded; an all-padding word gives zeros).

    Words are encoded in groups by length (:data:`CHAR_GROUPS`: up to 8 characters, up to 16,
    longer), each group cut to its own width: most words are short while ``W`` is set by the
    batch's longest word. Each group is ``NonZero``-selected, encoded by :func:`_encode_words`
    and scattered back; padding words belong to no group and stay zero. Measured on EWT test,
    batch 256: the ungrouped convolution and its masking were 70% of the graph's time. (Eager's
    CPU path over the real characters alone would need ``ScatterElements`` with
    ``reduction="max"``, which is opset 18.)
    """
    width = g.op("Shape", chars, start=2, end=3)
    flat = g.op("Reshape", chars, g.op("Concat", g.const([-1], "minus_one", np.int64), width, axis=0))  # (N, W)
    real = g.op("Cast", g.op("Greater", flat, g.const(0, "zero", np.int64)), to=TensorProto.INT64)
    word_lengths = g.op("ReduceSum", real, g.const([1], "axis1", np.int64), keepdims=0)  # (N,)
    weight = arrays["conv_weight"]
    filters, embedding_dim, kernel = weight.shape
    # the convolution as one MatMul over k shifted copies: (k * Ec, F), row j * Ec + c = weight[:, c, j]
    params = {
        "embedding": g.const(arrays["char_embedding"], "char_embedding"),
        "weight": g.const(weight.transpose(2, 1, 0).reshape(kernel * embedding_dim, filters).copy(), "conv_weight"),
        "bias": g.const(arrays["conv_bias"], "conv_bias") if arrays["conv_bias"] is not None else None,
        "kernel": kernel,
    }
    out = g.op("ConstantOfShape", g.op("Concat", g.op("Shape", flat, start=0, end=1),
                                       g.const([filters], "filters", np.int64), axis=0),
               value=numpy_helper.from_array(np.zeros(1, np.float32)))  # (N, F)
    low = 0
    for high in [*CHAR_GROUPS, None]:
        selected = g.op("Greater", word_lengths, g.const(low, f"above_{low}", np.int64))
        if high is not None:
            selected = g.op("And", selected, g.op("LessOrEqual", word_lengths, g.const(high, f"upto_{high}", np.int64)))
        index = g.op("Transpose", g.op("NonZero", selected), perm=[1, 0])  # (n, 1)
        group = g.op("GatherND", flat, index)  # (n, W)
        if high is not None:
            group = g.op("Slice", group, g.const([0], "start0", np.int64), g.const([high], f"end_{high}", np.int64),
                         g.const([1], "axis1", np.int64))  # (n, min(W, high))
        out = g.op("ScatterND", out, index, _encode_words(g, params, group))
        low = high
    shape = g.op("Concat", batch, time, g.const([filters], "filters", np.int64), axis=0)
    return g.op("Reshape", out, shape)


def _encode_words(g: _Graph, params: dict, group: str) -> str:
    """``(n, w)`` character ids (every word with at least one) ► ``(n, F)``: embed, convolve (as
    a MatMul of ``kernel`` shifted copies, zero-padded as ``nn.Conv1d(padding=kernel // 2)``),
    max over the real characters (``PAD_SCORE`` added at padding: a broadcast over the last axis,
    cheap in ONNX Runtime, where a ``Where`` over ``(n, F, w)`` was not)."""
    kernel = params["kernel"]
    half = kernel // 2
    x = g.op("Gather", params["embedding"], group)  # (n, w, Ec)
    x = g.op("Pad", x, g.const([0, half, 0, 0, half, 0], "char_pads", np.int64))  # (n, w + 2 half, Ec)
    shifted = [
        g.op("Slice", x, g.const([j], f"shift_{j}", np.int64),
             g.const([j - 2 * half if j < 2 * half else np.iinfo(np.int64).max], f"shift_end_{j}", np.int64),
             g.const([1], "axis1", np.int64))
        for j in range(kernel)
    ]  # each (n, w, Ec)
    x = g.op("Concat", *shifted, axis=2) if kernel > 1 else shifted[0]  # (n, w, k * Ec)
    y = g.op("MatMul", x, params["weight"])  # (n, w, F)
    padding = g.op("Cast", g.op("Equal", group, g.const(0, "zero", np.int64)), to=TensorProto.FLOAT)
    offset = g.op("Unsqueeze", g.op("Mul", padding, g.const(PAD_SCORE, "pad_score", np.float32)),
                  g.const([2], "axis2", np.int64))  # (n, w, 1): 0 at characters, PAD_SCORE at padding
    y = g.op("ReduceMax", g.op("Add", y, offset), axes=[1], keepdims=0)  # (n, F)
    # the bias after the max, as the eager CharCNN adds it: the same values, w times fewer additions
    return g.op("Add", y, params["bias"]) if params["bias"] is not None else y


def _bilstm(g: _Graph, arrays: dict, x: str, lengths: str) -> str:
    """``x`` ``(T, B, D)`` time-major ► ``(T, B, directions * H)``: one ONNX ``LSTM`` per layer with
    ``sequence_lens``, so that padding never enters a sentence's states (packing semantics)."""
    seq_lens = g.op("Cast", lengths, to=TensorProto.INT32)
    hidden = arrays["hidden_size"]
    for layer in arrays["lstm"]:
        w = np.stack([_onnx_gates(d[0]) for d in layer])  # (dirs, 4H, D)
        r = np.stack([_onnx_gates(d[1]) for d in layer])  # (dirs, 4H, H)
        b = np.stack([np.concatenate([_onnx_gates(d[2]), _onnx_gates(d[3])]) for d in layer])  # (dirs, 8H)
        y = g.op(
            "LSTM", x, g.const(w, "lstm_w"), g.const(r, "lstm_r"), g.const(b, "lstm_b"), seq_lens,
            hidden_size=hidden, direction="bidirectional" if len(layer) == 2 else "forward",
        )  # (T, dirs, B, H), zeros at padded steps
        y = g.op("Transpose", y, perm=[0, 2, 1, 3])  # (T, B, dirs, H)
        x = g.op("Reshape", y, g.const([0, 0, -1], "shape", np.int64))
    return x


def _crf_outputs(
    g: _Graph, crf: dict, em: str, mask: str, lengths: str, time: str, with_marginals: str
) -> tuple[str, str, str]:
    """Constrained Viterbi over time-major emissions ``em`` ``(T, B, K)`` (:func:`_viterbi`), and
    forward-backward (:func:`_forward_backward`) behind the graph input ``with_marginals``
    (:func:`_if_marginals`): the marginals cost about as much as the Viterbi again.

    Returns:
        ``(tags, marginals, log_partition)``: ``(T, B)`` int64, ``(T, B, K)`` float32 (both
        meaningless at padding) and ``(B,)`` float64; the last two are zeros when
        ``with_marginals`` is false.
    """
    k = crf["start"].shape[0]
    c = {
        "start": g.const(np.where(crf["start_mask"], crf["start"], NEG_SCORE).astype(np.float32), "crf_start"),
        "trans": g.const(np.where(crf["transition_mask"], crf["transitions"], NEG_SCORE).astype(np.float32), "crf_trans"),
        "end": g.const(np.where(crf["end_mask"], crf["end"], NEG_SCORE).astype(np.float32), "crf_end"),
        "one": g.const(1, "one", np.int64), "zero": g.const(0, "zero", np.int64),
        "minus_one": g.const(-1, "minus_one", np.int64), "zero_d": g.const(0.0, "zero_d", np.float64),
        "true": g.const(True, "true", np.bool_), "axis1": g.const([1], "axis1", np.int64),
        "axis2": g.const([2], "axis2", np.int64), "k": k, "em": em, "mask": mask, "lengths": lengths,
    }  # fmt: skip
    c["t_scalar"] = g.op("Squeeze", time, g.const([0], "axis0", np.int64))
    c["last_step"] = g.op("Sub", c["t_scalar"], c["one"])
    c["reverse"] = g.op("Range", c["last_step"], c["minus_one"], c["minus_one"])  # T - 1, ..., 0
    batch = g.op("Shape", em, start=1, end=2)
    c["zeros_bk"] = g.op("ConstantOfShape", g.op("Concat", batch, g.const([k], "k", np.int64), axis=0),
                         value=numpy_helper.from_array(np.zeros(1, np.float32)))
    c["zeros_b1"] = g.op("ConstantOfShape", g.op("Concat", batch, g.const([1], "one_dim", np.int64), axis=0),
                         value=numpy_helper.from_array(np.zeros(1, np.float64)))
    tags = _viterbi(g, c)
    with_fb = _Graph("fb_")
    marginals, log_partition = _forward_backward(with_fb, c)
    return (tags, *_if_marginals(g, with_marginals, with_fb, marginals, log_partition, em))


def _if_marginals(g: _Graph, with_marginals: str, branch: _Graph, marginals: str, log_partition: str,
                  em: str) -> tuple[str, str]:
    """``(marginals, log_partition)`` of the nodes ``branch`` (their outputs ``(T, B, K)`` float32
    and ``(B,)`` float64) in an ``If`` node on the graph input ``with_marginals``; zeros of those
    shapes when it is false. ONNX Runtime runs every node of a graph whatever outputs are asked
    for: this is how a client that wants only the tags skips the work. Every head takes the switch."""
    info = helper.make_tensor_value_info
    without = _Graph("no_marginals_")
    zeros = without.op("ConstantOfShape", without.op("Shape", em), value=numpy_helper.from_array(np.zeros(1, np.float32)))
    no_log_z = without.op("ConstantOfShape", without.op("Shape", em, start=1, end=2),
                          value=numpy_helper.from_array(np.zeros(1, np.float64)))
    branches = [
        helper.make_graph(b.nodes, name, [], [info(m, TensorProto.FLOAT, None), info(z, TensorProto.DOUBLE, None)],
                          initializer=b.initializers)
        for b, name, m, z in ((branch, "marginals", marginals, log_partition),
                              (without, "no_marginals", zeros, no_log_z))
    ]  # fmt: skip
    return g.op("If", with_marginals, outputs=2, then_branch=branches[0], else_branch=branches[1])


def _viterbi(g: _Graph, c: dict) -> str:
    """The CRF's constrained Viterbi as two ``Loop`` operators over the time steps (``c``: the
    constants of :func:`_crf_outputs`): forward, the best score of the prefixes ending in each
    tag (carried unchanged through the padding) and the backpointers; then backward, from the
    last step to the first, following the backpointers inside each sentence (the tag chosen at
    its last token is carried through the padding). Returns the tags ``(T, B)`` int64."""
    k, em, mask, start, trans, end = (c[n] for n in ("k", "em", "mask", "start", "trans", "end"))
    body = _Graph("vit_fwd_")
    step, cond, best_in = body.name("step"), body.name("cond"), body.name("best_in")
    e = body.op("Gather", em, step, axis=0)  # (B, K)
    m = body.op("Unsqueeze", body.op("Gather", mask, step, axis=0), c["axis1"])  # (B, 1)
    moves = body.op("Add", body.op("Unsqueeze", best_in, c["axis2"]), trans)  # (B, K [from], K [to])
    pointer = body.op("ArgMax", moves, axis=1, keepdims=0)  # (B, K), first best on ties (as torch.max)
    best = body.op("Add", body.op("ReduceMax", moves, axes=[1], keepdims=0), e)
    best = body.op("Where", body.op("Equal", step, c["zero"]), body.op("Add", start, e),
                   body.op("Where", m, best, best_in))
    best, pointers = g.op("Loop", c["t_scalar"], c["true"], c["zeros_bk"], outputs=2, body=_loop_body(
        body, "viterbi_forward", step, cond, [(best_in, best, TensorProto.FLOAT, ["batch", k])],
        [(pointer, TensorProto.INT64, ["batch", k])]))  # fmt: skip
    last_tag = g.op("ArgMax", g.op("Add", best, end), axis=1, keepdims=0)  # (B,)

    body = _Graph("vit_bwd_")
    step, cond, tag_in = body.name("step"), body.name("cond"), body.name("tag_in")
    t = body.op("Sub", c["last_step"], step)
    m = body.op("Gather", mask, t, axis=0)  # (B,)
    path = body.op("Where", m, tag_in, c["zero"])
    pointer_t = body.op("Gather", pointers, t, axis=0)  # (B, K)
    previous = body.op("GatherElements", pointer_t, body.op("Unsqueeze", tag_in, c["axis1"]), axis=1)
    tag = body.op("Where", m, body.op("Squeeze", previous, c["axis1"]), tag_in)
    _, paths_reversed = g.op("Loop", c["t_scalar"], c["true"], last_tag, outputs=2, body=_loop_body(
        body, "viterbi_backward", step, cond, [(tag_in, tag, TensorProto.INT64, ["batch"])],
        [(path, TensorProto.INT64, ["batch"])]))  # fmt: skip
    return g.op("Gather", paths_reversed, c["reverse"], axis=0)


def _forward_backward(g: _Graph, c: dict) -> tuple[str, str]:
    """The CRF's marginals by forward-backward, two ``Loop`` operators in graph ``g`` (the
    ``If`` branch of :func:`_crf_outputs`, whose constants ``c`` are). Returns ``(marginals,
    log_partition)``: ``(T, B, K)`` float32 (meaningless at padding) and ``(B,)`` float64.

    Alpha (the log-sum scores of the prefixes ending in each tag, carried through the padding)
    is shifted to a maximum of 0 at each step, and the shifts add up to log Z in float64:
    unshifted, float32 alphas grow with the sentence and lose the 1e-4 accuracy of the
    marginals within a few hundred tokens. Beta (the log-sum of the suffixes after each tag,
    ``end`` at a sentence's last token) is shifted the same way.
    """
    k, em, mask, lengths, start, trans, end = (c[n] for n in ("k", "em", "mask", "lengths", "start", "trans", "end"))
    axis1, axis2 = c["axis1"], c["axis2"]
    body = _Graph("fb_fwd_")
    step, cond = body.name("step"), body.name("cond")
    alpha_in, shift_in = body.name("alpha_in"), body.name("shift_in")
    e = body.op("Gather", em, step, axis=0)  # (B, K)
    m = body.op("Unsqueeze", body.op("Gather", mask, step, axis=0), axis1)  # (B, 1)
    sums = body.op("Add", body.op("Unsqueeze", alpha_in, axis2), trans)  # (B, K [from], K [to])
    alpha = body.op("Where", body.op("Equal", step, c["zero"]), body.op("Add", start, e),
                    body.op("Add", body.op("ReduceLogSumExp", sums, axes=[1], keepdims=0), e))
    top = body.op("ReduceMax", alpha, axes=[1], keepdims=1)  # (B, 1)
    alpha = body.op("Where", m, body.op("Sub", alpha, top), alpha_in)
    shift = body.op("Add", shift_in, body.op("Where", m, body.op("Cast", top, to=TensorProto.DOUBLE), c["zero_d"]))
    # a value that is both carried and scanned needs a second name (Identity)
    alpha, shift, alphas = g.op("Loop", c["t_scalar"], c["true"], c["zeros_bk"], c["zeros_b1"], outputs=3,
                                body=_loop_body(body, "crf_forward", step, cond,
                                                [(alpha_in, alpha, TensorProto.FLOAT, ["batch", k]),
                                                 (shift_in, shift, TensorProto.DOUBLE, ["batch", 1])],
                                                [(body.op("Identity", alpha), TensorProto.FLOAT, ["batch", k])]))
    rest = g.op("ReduceLogSumExp", g.op("Add", alpha, end), axes=[1], keepdims=0)  # (B,)
    log_partition = g.op("Add", g.op("Squeeze", shift, axis1), g.op("Cast", rest, to=TensorProto.DOUBLE))  # (B,)

    body = _Graph("fb_bwd_")
    step, cond, beta_in = body.name("step"), body.name("cond"), body.name("beta_in")
    following = body.op("Add", body.op("Sub", c["last_step"], step), c["one"])
    e_next = body.op("Gather", em, body.op("Min", following, c["last_step"]), axis=0)  # (B, K), where t + 1 is real
    inside = body.op("Unsqueeze", body.op("Less", following, lengths), axis1)  # (B, 1)
    suffix = body.op("Add", trans, body.op("Unsqueeze", body.op("Add", e_next, beta_in), axis1))  # (B, K, K)
    beta = body.op("Where", inside, body.op("ReduceLogSumExp", suffix, axes=[2], keepdims=0), end)
    beta = body.op("Sub", beta, body.op("ReduceMax", beta, axes=[1], keepdims=1))
    _, betas_reversed = g.op("Loop", c["t_scalar"], c["true"], c["zeros_bk"], outputs=2, body=_loop_body(
        body, "crf_backward", step, cond, [(beta_in, beta, TensorProto.FLOAT, ["batch", k])],
        [(body.op("Identity", beta), TensorProto.FLOAT, ["batch", k])]))  # fmt: skip
    betas = g.op("Gather", betas_reversed, c["reverse"], axis=0)  # (T, B, K)
    # shifted alpha + beta is log p(y_t = k) up to a constant per position: normalize each position
    joint = g.op("Add", alphas, betas)  # (T, B, K)
    marginals = g.op("Exp", g.op("Sub", joint, g.op("ReduceLogSumExp", joint, axes=[2], keepdims=1)))
    return marginals, log_partition


def _loop_body(body: _Graph, name: str, step: str, cond: str, carried: list, scanned: list) -> onnx.GraphProto:
    """A ``Loop`` body: inputs ``step``, ``cond`` and each carried value's input name; outputs
    ``cond``, each carried value's new name, then the scanned values (``(name, type, shape)``)."""
    info = helper.make_tensor_value_info
    return helper.make_graph(
        body.nodes, name,
        [info(step, TensorProto.INT64, []), info(cond, TensorProto.BOOL, [])]
        + [info(old, kind, shape) for old, _, kind, shape in carried],
        [info(cond, TensorProto.BOOL, [])] + [info(new, kind, shape) for _, new, kind, shape in carried]
        + [info(n, kind, shape) for n, kind, shape in scanned],
        initializer=body.initializers,
    )


def _softmax_outputs(g: _Graph, em: str, mask: str, with_marginals: str) -> tuple[str, str, str]:
    """Argmax tags, and behind ``with_marginals`` (:func:`_if_marginals`) the softmax marginals
    and the per-sentence log-normalizer of a softmax head."""
    tags = g.op("Where", mask, g.op("ArgMax", em, axis=2, keepdims=0), g.const(0, "zero", np.int64))
    b = _Graph("softmax_")
    marginals = b.op("Softmax", em, axis=2)
    per_token = b.op("Where", mask, b.op("ReduceLogSumExp", em, axes=[2], keepdims=0), b.const(0.0, "zero_f", np.float32))
    per_token = b.op("Cast", per_token, to=TensorProto.DOUBLE)
    log_partition = b.op("ReduceSum", per_token, b.const([0], "axis0", np.int64), keepdims=0)
    return (tags, *_if_marginals(g, with_marginals, b, marginals, log_partition, em))


def build_graph(arrays: dict) -> onnx.ModelProto:
    """The ONNX model of :func:`_tagger_arrays`'s output (inputs and outputs: the module docstring)."""
    g = _Graph()
    words, cases, chars, lengths = ONNX_INPUTS
    batch = g.op("Shape", words, start=0, end=1)
    time = g.op("Shape", words, start=1, end=2)
    parts = []
    if arrays["encoder"] is not None:  # (B, T, Dv): the encoder graph's output, joined by merge_encoder
        parts.append(VECTORS)
    if arrays["word_embedding"] is not None:
        parts.append(g.op("Gather", g.const(arrays["word_embedding"], "word_embedding"), words))  # (B, T, E)
    if arrays["case_embedding"] is not None:
        parts.append(g.op("Gather", g.const(arrays["case_embedding"], "case_embedding"), cases))
    if arrays["char_embedding"] is not None:
        parts.append(_char_features(g, arrays, chars, batch, time))
    x = g.op("Concat", *parts, axis=2) if len(parts) > 1 else parts[0]
    x = g.op("Transpose", x, perm=[1, 0, 2])  # (T, B, D)
    if arrays["lstm"]:
        x = _bilstm(g, arrays, x, lengths)
    em = g.op("Add", g.op("MatMul", x, g.const(arrays["output_weight"].T.copy(), "output_weight")),
              g.const(arrays["output_bias"], "output_bias"))  # (T, B, K)
    steps = g.op("Range", g.const(0, "zero", np.int64), g.op("Squeeze", time, g.const([0], "axis0", np.int64)),
                 g.const(1, "one", np.int64))
    mask = g.op("Less", g.op("Unsqueeze", steps, g.const([1], "axis1", np.int64)),
                g.op("Unsqueeze", lengths, g.const([0], "axis0", np.int64)))  # (T, B)
    if arrays["crf"] is not None:
        tags, marginals, log_partition = _crf_outputs(g, arrays["crf"], em, mask, lengths, time, WITH_MARGINALS)
    else:
        tags, marginals, log_partition = _softmax_outputs(g, em, mask, WITH_MARGINALS)
    marginals = g.op("Where", g.op("Unsqueeze", mask, g.const([2], "axis2", np.int64)), marginals,
                     g.const(0.0, "zero_f", np.float32))
    g.op("Transpose", tags, perm=[1, 0], out="tags")
    g.op("Transpose", marginals, perm=[1, 0, 2], out="marginals")
    g.op("Squeeze", g.op("GatherElements", "marginals", g.op("Unsqueeze", "tags", g.const([2], "axis2", np.int64)),
                         axis=2), g.const([2], "axis2", np.int64), out="confidence")
    g.op("Transpose", em, perm=[1, 0, 2], out="emissions")
    g.op("Identity", log_partition, out="log_partition")
    k = len(arrays["tags"])
    vectors = []
    if arrays["encoder"] is not None:
        vectors = [helper.make_tensor_value_info(VECTORS, TensorProto.FLOAT, ["batch", "seq_len", arrays["encoder"]["dim"]])]
    graph = helper.make_graph(
        g.nodes, "seqtag_tagger",
        [*vectors,
         helper.make_tensor_value_info(words, TensorProto.INT64, ["batch", "seq_len"]),
         helper.make_tensor_value_info(cases, TensorProto.INT64, ["batch", "seq_len"]),
         helper.make_tensor_value_info(chars, TensorProto.INT64, ["batch", "seq_len", "word_len"]),
         helper.make_tensor_value_info(lengths, TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info(WITH_MARGINALS, TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("tags", TensorProto.INT64, ["batch", "seq_len"]),
         helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch", "seq_len"]),
         helper.make_tensor_value_info("marginals", TensorProto.FLOAT, ["batch", "seq_len", k]),
         helper.make_tensor_value_info("emissions", TensorProto.FLOAT, ["batch", "seq_len", k]),
         helper.make_tensor_value_info("log_partition", TensorProto.DOUBLE, ["batch"])],
        # a required input, never an initializer of the same name (a default): the Node.js
        # binding of ONNX Runtime takes such an input for a constant and ignores what is fed
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="seqtag",
                              producer_version=__version__)
    model.ir_version = 8  # the IR of opset 17: runtimes older than the onnx package still load it
    helper.set_model_props(model, {METADATA_NAME: json.dumps(onnx_metadata(arrays), ensure_ascii=False)})
    onnx.checker.check_model(model)
    return model


def onnx_metadata(arrays: dict) -> dict:
    """The JSON object stored under :data:`METADATA_NAME`: what a runner needs to encode token
    strings and read the outputs, with nothing but the file.

    Keys: ``format``, ``format_version``, ``seqtag_version``, ``inputs``, ``outputs``, ``tags``
    (names in id order), ``head`` (``"crf"`` or ``"softmax"``), ``crf`` (``start``,
    ``transitions`` ``[from][to]``, ``end`` and their ``*_mask`` lists of allowed moves; None for
    a softmax head), ``encoder`` (None, or for a model with a pretrained encoder the
    ``tokenizer.json`` text as ``tokenizer``, ``unk_token``, ``pad_token``, ``window_size`` and
    ``stride``: what :mod:`seqtag.data.subwords` tokenizes and lays out windows with), and ``encoding``: ``words`` and ``chars`` (strings in id order; 0 padding, 1
    unknown), ``lowercase`` (look words up lowercased), ``lower_map`` (per-character lowercasing
    of non-ASCII tokens; ASCII tokens use ``str.lower``), ``use_chars``, ``max_word_length``
    (characters kept per word), ``use_case`` and ``case_rule`` (:data:`CASE_RULE`); ``model``
    is the TaggerConfig.
    """
    crf = arrays["crf"]
    return {
        "format": ONNX_FORMAT,
        "format_version": FORMAT_VERSIONS[ONNX_FORMAT],
        "seqtag_version": __version__,
        "inputs": [*(ENCODER_INPUTS if arrays["encoder"] is not None else ()), *ONNX_INPUTS, WITH_MARGINALS],
        "outputs": list(ONNX_OUTPUTS),
        "tags": arrays["tags"],
        "head": "crf" if crf is not None else "softmax",
        "crf": None if crf is None else {name: value.tolist() for name, value in crf.items()},
        "encoding": {
            "words": arrays["words"],
            "chars": arrays["chars"],
            "lowercase": arrays["lowercase"],
            "lower_map": arrays["lower_map"],
            "use_chars": arrays["char_embedding"] is not None,
            "max_word_length": arrays["max_word_length"],
            "use_case": arrays["case_embedding"] is not None,
            "case_rule": CASE_RULE,
        },
        "encoder": None if arrays["encoder"] is None else {k: v for k, v in arrays["encoder"].items() if k != "dim"},
        "model": arrays["config"],
    }


def merge_encoder(encoder: onnx.ModelProto, tagger: onnx.ModelProto) -> onnx.ModelProto:
    """One graph of a model with a pretrained encoder: the encoder's (traced,
    :func:`~seqtag.serving.encoder_onnx.encoder_graph`), its output :data:`VECTORS` joined to the
    tagger's input of that name (:func:`build_graph`). The encoder's own names take the prefix
    ``encoder/`` (its inputs and output keep theirs), the tagger's metadata is kept."""
    encoder = onnx.compose.add_prefix(encoder, "encoder/", rename_inputs=False, rename_outputs=False)
    encoder.ir_version = tagger.ir_version
    merged = onnx.compose.merge_models(encoder, tagger, io_map=[(VECTORS, VECTORS)])
    merged.ir_version = tagger.ir_version
    merged.producer_name, merged.producer_version = tagger.producer_name, tagger.producer_version
    del merged.metadata_props[:]
    helper.set_model_props(merged, {p.key: p.value for p in tagger.metadata_props})
    onnx.checker.check_model(merged)
    return merged


def to_onnx(model_or_dir: Tagger | str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the whole tagger as one ONNX graph (see the module docstring for its inputs and outputs).

    Args:
        model_or_dir: a :class:`~seqtag.model.tagger.Tagger` or a model directory written by
            :meth:`Tagger.save <seqtag.model.tagger.Tagger.save>`.
        path: the file to write (conventionally ``.onnx``); replaced atomically if it exists.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. Load it with :class:`seqtag.serving.onnx_runner.OnnxTagger`
        (strings in, strings out; numpy and onnxruntime only) or any ONNX runtime.
    """
    tagger = as_tagger(model_or_dir)
    model = build_graph(_tagger_arrays(tagger))
    if tagger.encoder is not None:
        model = merge_encoder(encoder_graph(tagger.encoder, tagger.windows.tokenizer), model)
    path = Path(path)
    make_dir(path.parent)
    atomic_write_bytes(path, model.SerializeToString())
    return path


INT8_MAX_DROP = 0.5
"""Points of dev token accuracy that ``seqtag export --quantize int8`` lets int8 lose against
fp32; beyond, it refuses (EWT UPOS lost 0.02: docs/serving.md)."""


def to_onnx_int8(
    model_or_dir: Tagger | str | os.PathLike, path: str | os.PathLike, dev: list | None = None,
    max_drop: float = INT8_MAX_DROP,
) -> tuple[Path, dict]:
    """Write the tagger as an ONNX graph with int8 weights (ONNX Runtime's dynamic quantization:
    int8 weights for the LSTM and the matrix products, activations quantized batch by batch),
    after checking its dev accuracy against the fp32 graph of :func:`to_onnx`.

    Args:
        model_or_dir: a :class:`~seqtag.model.tagger.Tagger` or a model directory.
        path: the file to write; nothing is written when the check fails.
        dev: gold-tagged sentences to check on (default: the dev file of the model directory's
            run, when it names one; else the check is skipped and ``report`` says so).
        max_drop: the largest accepted accuracy drop, in points.

    Returns:
        ``(path, report)``: ``report`` holds ``fp32_bytes``, ``int8_bytes``, ``dev_tokens`` and
        ``fp32_accuracy``, ``int8_accuracy`` (None without dev data).

    Raises:
        SeqtagError: int8 loses more than ``max_drop`` points of dev accuracy.
    """
    import logging
    import tempfile
    import warnings

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from seqtag.data.sources import read_files
    from seqtag.model.directory import trained_data_config
    from seqtag.serving.onnx_runner import OnnxTagger

    if dev is None and not isinstance(model_or_dir, Tagger):
        data = trained_data_config(Path(model_or_dir))
        if data is not None and data.validation_file and Path(data.validation_file).is_file():
            dev = read_files(data, data.validation_file)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        to_onnx(model_or_dir, fp32)
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing on every call
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
        finally:
            quiet.setLevel(level)
        report: dict = {"fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size,
                        "dev_tokens": 0, "fp32_accuracy": None, "int8_accuracy": None}  # fmt: skip
        if dev:
            gold = [s.tags for s in dev]
            report["dev_tokens"] = sum(len(tags) for tags in gold)
            for name, file in (("fp32", fp32), ("int8", int8)):
                predicted = OnnxTagger(file).predict([s.tokens for s in dev])
                right = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
                report[f"{name}_accuracy"] = right / max(report["dev_tokens"], 1)
            drop = 100 * (report["fp32_accuracy"] - report["int8_accuracy"])
            if drop > max_drop:
                raise SeqtagError(
                    f"int8 loses {drop:.2f} points of dev accuracy ({100 * report['fp32_accuracy']:.2f} -> "
                    f"{100 * report['int8_accuracy']:.2f}), more than {max_drop}: keep the fp32 export"
                )
        path = Path(path)
        make_dir(path.parent)
        atomic_write_bytes(path, int8.read_bytes())
    return path, report

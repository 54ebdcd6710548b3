"""Tag token strings with an ONNX file written by :func:`seqtag.serving.onnx_export.to_onnx`.

Needs only ``numpy`` and ``onnxruntime`` (``pip install 'seqtag[onnx]'``, or just those two),
and ``tokenizers`` for a model with a pretrained encoder (its tokenizer is in the file's
metadata; :mod:`seqtag.data.subwords` tokenizes and lays out the windows as the eager tagger
does): this module imports nothing from torch or transformers, so it runs in serving processes
without them. The
strings are encoded from the file's metadata by seqtag's own string encoder and batched by its
batch planner (:mod:`seqtag.data.encoding`, which imports no torch either), as :meth:`Tagger.predict
<seqtag.model.tagger.Tagger.predict>` encodes and batches them.

>>> import seqtag, seqtag.serving.onnx_export, tempfile, os
>>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), seqtag.Vocabularies.build(seqtag.tutorial_corpus()))
>>> onnx_tagger = OnnxTagger(seqtag.serving.onnx_export.to_onnx(tagger, os.path.join(tempfile.mkdtemp(), "t.onnx")))
>>> tags, confidence = onnx_tagger.predict_with_confidence([["The", "dog"]])[0]
>>> len(tags), all(0.0 < p <= 1.0 for p in confidence)
(2, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime

from seqtag.config import DEFAULT_BATCH_SIZE, check_value
from seqtag.data.encoding import (
    check_batch_size,
    check_sentences,
    encode_table,
    lowercase_table,
    plan_batches,
)
from seqtag.errors import SeqtagError
from seqtag.serving.files import (
    CASE_RULE,
    METADATA_NAME,
    ONNX_FORMAT,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    WITH_MARGINALS,
    check_format,
)

if TYPE_CHECKING:
    from seqtag.data.subwords import Subwords, WindowLayout

_WITHOUT_MARGINALS = frozenset({"tags", "emissions"})  # the outputs that do not need forward-backward
# what the runner feeds and fetches: ONNX Runtime's type and the rank of each
_INPUT_TYPES = dict.fromkeys(ONNX_INPUTS, "tensor(int64)") | {WITH_MARGINALS: "tensor(bool)"}
_INPUT_RANKS = dict(zip(ONNX_INPUTS, (2, 2, 3, 1))) | {WITH_MARGINALS: 0}
_ENCODER_INPUT = ("tensor(int64)", 2)  # each of seqtag.serving.encoder_onnx.INPUT_NAMES
_OUTPUT_TYPES = {"tags": ("tensor(int64)", 2), "confidence": ("tensor(float)", 2), "marginals": ("tensor(float)", 3),
                 "emissions": ("tensor(float)", 3), "log_partition": ("tensor(double)", 1)}  # fmt: skip


class OnnxTagger:
    """An ONNX tagger file behind the methods of :class:`~seqtag.model.tagger.Tagger`: strings in, tags out.

    Args:
        path: a file written by :func:`seqtag.serving.onnx_export.to_onnx` (``seqtag export --format onnx``).
        intra_op_num_threads: ONNX Runtime's threads per operator (0: its default, one per core).
        providers: ONNX Runtime execution providers (default: the CPU).

    Attributes:
        tags: tag names in id order.
        metadata: the file's JSON metadata (see :func:`seqtag.serving.onnx_export.onnx_metadata`).
        session: the ``onnxruntime.InferenceSession``.

    Raises:
        SeqtagError: the file is missing, not ONNX, or not a seqtag tagger; its metadata is of a
            newer format version, lacks an entry or holds one of the wrong type or size; or the
            metadata does not describe the graph (its inputs and outputs, the width of its
            emissions, its vocabularies and scores on a probe sentence). One line naming the
            file, raised here, once: never while tagging.
    """

    def __init__(
        self, path: str | os.PathLike, intra_op_num_threads: int = 0, providers: Sequence[str] | None = None
    ) -> None:
        if not isinstance(intra_op_num_threads, int) or intra_op_num_threads < 0:
            raise ValueError(f"expected intra_op_num_threads >= 0, got {intra_op_num_threads!r}")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise SeqtagError(f"{path}: no such file")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        # fatal errors only: no notes about unused inputs on stderr, and no line of its own for
        # an error that the exception raised here (or the SeqtagError made of it) says already
        options.log_severity_level = 4
        try:
            self.session = onnxruntime.InferenceSession(
                path, options, providers=list(providers) if providers else ["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise SeqtagError(f"{path}: not an ONNX model ({str(e).splitlines()[0][:200]})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_NAME)
        try:
            meta = json.loads(raw) if raw else None
            why = f"no {METADATA_NAME} metadata" if not raw else f"its {METADATA_NAME} metadata is not {ONNX_FORMAT}'s"
        except ValueError as e:
            meta, why = None, f"its {METADATA_NAME} metadata is not JSON: {e}"
        if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
            raise SeqtagError(f"{path}: an ONNX model, but not a seqtag tagger ({why})")
        version = check_format(meta, ONNX_FORMAT, path)
        _check_metadata(meta, path)
        self._has_marginals_switch = self._check_graph(meta, version, path)
        self.metadata = meta
        self.tags: list[str] = list(meta["tags"])
        encoding = meta["encoding"]
        self._word_ids = {w: i for i, w in enumerate(encoding["words"])}
        self._char_ids = {c: i for i, c in enumerate(encoding["chars"])}
        self._lower_map = lowercase_table(dict(encoding["lower_map"]))
        self._lowercase = encoding["lowercase"]
        self._width = encoding["max_word_length"] if encoding["use_chars"] else 0
        # a model with a pretrained encoder: its tokenizer and windows, from the metadata
        self._windows: WindowLayout | None = None
        if meta.get("encoder") is not None:
            # imported here: a model without an encoder loads no more of seqtag than before
            from seqtag.data.subwords import SubwordTokenizer, WindowLayout

            e = meta["encoder"]
            try:
                tokenizer = SubwordTokenizer.from_str(e["tokenizer"], e["unk_token"], e["pad_token"])
                self._windows = WindowLayout.resolve(tokenizer, e["window_size"], e["stride"], limit=None)
            except ValueError as error:  # SeqtagError included: none of them names the file
                raise SeqtagError(f"{path}: {METADATA_NAME}'s encoder: {error}") from None
        crf = meta["crf"]
        k = len(self.tags)
        if crf is None:  # a softmax head: independent tokens, log-probabilities from the emissions
            self._start, self._trans, self._end = np.zeros(k), np.zeros((k, k)), np.zeros(k)
        else:  # forbidden moves are -inf here: n-best lists only allowed sequences
            self._start = np.where(crf["start_mask"], np.asarray(crf["start"], np.float32), -np.inf)
            self._trans = np.where(crf["transition_mask"], np.asarray(crf["transitions"], np.float32), -np.inf)
            self._end = np.where(crf["end_mask"], np.asarray(crf["end"], np.float32), -np.inf)
        self._probe(path)

    def _check_graph(self, meta: dict, version: int, path: str) -> bool:
        """Check that the graph takes the inputs this runner feeds (and no other) and gives the
        outputs it fetches, with their types and ranks, as the metadata names them; returns
        whether to feed ``with_marginals`` (a required input since format version 2; in version
        1 an input with a default, which ONNX Runtime lists as an "overridable initializer").

        Raises:
            SeqtagError: one line naming ``path`` and the first mismatch.
        """
        needed = {name: (kind, _INPUT_RANKS[name]) for name, kind in _INPUT_TYPES.items()}
        if meta.get("encoder") is not None:
            from seqtag.serving.encoder_onnx import INPUT_NAMES

            needed |= dict.fromkeys(INPUT_NAMES, _ENCODER_INPUT)
        inputs = {i.name: i for i in self.session.get_inputs()}
        switch = True
        if version < 2 and WITH_MARGINALS not in inputs:
            del needed[WITH_MARGINALS]
            switch = WITH_MARGINALS in {i.name for i in self.session.get_overridable_initializers()}
        if set(meta["inputs"]) - {WITH_MARGINALS} != needed.keys() - {WITH_MARGINALS}:
            raise SeqtagError(f"{path}: {METADATA_NAME} names the inputs {meta['inputs']}, a tagger "
                              f"{'with' if meta.get('encoder') is not None else 'without'} an encoder takes {list(needed)}")  # fmt: skip
        if set(meta["outputs"]) != set(ONNX_OUTPUTS):
            raise SeqtagError(f"{path}: {METADATA_NAME} names the outputs {meta['outputs']}, expected {list(ONNX_OUTPUTS)}")
        extra = sorted(inputs.keys() - needed.keys())
        if extra:
            raise SeqtagError(f"{path}: the graph takes inputs that its {METADATA_NAME} does not name: {extra}")
        outputs = {o.name: o for o in self.session.get_outputs()}
        for role, args, wanted in (("input", inputs, needed), ("output", outputs, _OUTPUT_TYPES)):
            for name, (kind, rank) in wanted.items():
                arg = args.get(name)
                if arg is None:
                    raise SeqtagError(f"{path}: the graph has no {role} {name!r}, which its {METADATA_NAME} names: "
                                      "the metadata is not this graph's")  # fmt: skip
                if arg.type != kind or len(arg.shape) != rank:
                    raise SeqtagError(f"{path}: the graph's {role} {name!r} is a {arg.type} of rank {len(arg.shape)}, "
                                      f"expected a {kind} of rank {rank}")  # fmt: skip
        return switch

    def _probe(self, path: str) -> None:
        """Run the graph once on a two-token sentence of the metadata's highest word and
        character ids: it must take them, score as many tags as the metadata names, and give the
        log-partition that the metadata's CRF scores (or a softmax) give its emissions. Catches
        metadata from another model (or edited) that the types alone do not. Once per load.

        Raises:
            SeqtagError: one line naming ``path`` and what disagrees.
        """
        k = len(self.tags)
        words = np.array([[len(self._word_ids) - 1, 1]], np.int64)
        cases = np.array([[1, 3]], np.int64)
        chars = np.array([[[len(self._char_ids) - 1], [1]]], np.int64) if self._width else np.zeros((1, 2, 1), np.int64)
        subwords = self._windows.tokenizer.tokenize([["a", "b"]]) if self._windows is not None else None
        try:
            emissions, log_partition = self.run(words, cases, chars, np.array([2], np.int64),
                                                ["emissions", "log_partition"], subwords)  # fmt: skip
        except Exception as e:  # onnxruntime raises its own Fail/InvalidArgument/... types
            text = str(e).strip() or type(e).__name__
            first = text.splitlines()[0].split("Status Message: ")[-1][:200]  # the operator's own words
            raise SeqtagError(f"{path}: the graph does not run on its {METADATA_NAME}'s vocabularies ({first})") from None
        if emissions.shape != (1, 2, k):
            raise SeqtagError(f"{path}: {METADATA_NAME} names {k} tags, but the graph scores "
                              f"{emissions.shape[-1] if emissions.ndim else '?'}: the metadata is not this graph's")  # fmt: skip
        e = emissions[0].astype(np.float64)
        # shape: (K [first tag], K [second tag]), the score of each two-tag sequence (-inf: forbidden)
        scores = (self._start + e[0])[:, None] + self._trans + (e[1] + self._end)[None, :]
        top = scores.max()
        if np.isfinite(top):  # some sequence is allowed
            expected = float(top + np.log(np.exp(scores - top).sum()))
            got = float(log_partition[0])
            if not abs(got - expected) <= 1e-3 + 1e-4 * abs(expected):
                raise SeqtagError(
                    f"{path}: the graph does not score as its {METADATA_NAME} says (a probe sentence's log-partition: "
                    f"{got:.4f} by the graph, {expected:.4f} by the metadata's {self.metadata['head']} head): "
                    "the metadata is another model's"
                )

    # -- strings in, strings out -------------------------------------------------------------

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[str]]:
        """Tag tokenized sentences: one list of tag strings per sentence (``[]`` for ``[]``)."""
        sentences = check_sentences(sentences)
        out: list[list[str]] = [[] for _ in sentences]
        for chunk, (tags,) in self._batches(sentences, batch_size, ["tags"]):
            for row, i in enumerate(chunk):
                out[i] = [self.tags[j] for j in tags[row, : len(sentences[i])].tolist()]
        return out

    def predict_with_confidence(
        self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[tuple[list[str], list[float]]]:
        """Per sentence, the best tags and the marginal probability of each chosen tag (under a
        CRF, by forward-backward; for a softmax head, the softmax)."""
        sentences = check_sentences(sentences)
        out: list[tuple[list[str], list[float]]] = [([], []) for _ in sentences]
        for chunk, (tags, confidence) in self._batches(sentences, batch_size, ["tags", "confidence"]):
            for row, i in enumerate(chunk):
                n = len(sentences[i])
                out[i] = ([self.tags[j] for j in tags[row, :n].tolist()], confidence[row, :n].tolist())
        return out

    def marginals(self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE) -> list[np.ndarray]:
        """Per sentence, a ``(n_tokens, num_tags)`` float32 array of ``p(tag | sentence)`` at each
        token, columns in :attr:`tags` order; rows sum to 1."""
        sentences = check_sentences(sentences)
        out = [np.zeros((0, len(self.tags)), np.float32) for _ in sentences]
        for chunk, (marginals,) in self._batches(sentences, batch_size, ["marginals"]):
            for row, i in enumerate(chunk):
                out[i] = marginals[row, : len(sentences[i])].copy()
        return out

    def nbest(
        self, sentences: Sequence[Sequence[str]], k: int, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[list[tuple[list[str], float]]]:
        """Per sentence, up to ``k`` tag sequences with their log-probabilities, best first.

        A sentence with fewer than ``k`` allowed sequences (tag-scheme constraints, or few
        tokens and tags) gets fewer; an empty sentence gets ``[([], 0.0)]``. Computed here in
        numpy (:func:`kbest_viterbi`) from the graph's emissions and the CRF's scores.
        """
        sentences = check_sentences(sentences)
        check_value("k", k, {"min": 1}, int)
        out: list[list[tuple[list[str], float]]] = [[([], 0.0)] for _ in sentences]
        for chunk, (emissions, log_partition) in self._batches(sentences, batch_size, ["emissions", "log_partition"]):
            lengths = np.array([len(sentences[i]) for i in chunk], dtype=np.int64)
            paths, scores = kbest_viterbi(emissions, lengths, self._start, self._trans, self._end, k)
            log_probs = scores - log_partition.astype(np.float64)[:, None]
            for row, i in enumerate(chunk):
                n = int(lengths[row])
                out[i] = [
                    ([self.tags[j] for j in paths[row, r, :n].tolist()], float(log_probs[row, r]))
                    for r in range(k)
                    if np.isfinite(scores[row, r])
                ]
        return out

    # -- ids ---------------------------------------------------------------------------------

    def encode(self, sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The padded id batch of ``sentences`` in the given order, as ``seqtag.data.dataset.collate`` pads
        ``seqtag.data.dataset.encode_tokens``: ``words``, ``cases`` ``(batch, seq_len)``, ``chars``
        ``(batch, seq_len, word_len)`` (``word_len`` the longest word, capped at
        ``max_word_length``; 0 without character features) and ``lengths`` ``(batch,)``, int64."""
        sentences = check_sentences(sentences)
        table = self._table(sentences)
        return self._collate(table, [len(s) for s in sentences], list(range(len(sentences))))

    def run(self, words: np.ndarray, cases: np.ndarray, chars: np.ndarray, lengths: np.ndarray,
            outputs: Sequence[str] = ("tags",), subwords: Sequence[Subwords] | None = None) -> list[np.ndarray]:
        """Run the graph on a padded batch (every length >= 1); returns the named outputs. A
        model with a pretrained encoder also takes each sentence's ``subwords`` (its tokenizer's
        :meth:`~seqtag.data.subwords.SubwordTokenizer.tokenize`), laid out here in its windows."""
        if chars.shape[2] == 0:  # the graph takes at least one character per word (all padding here)
            chars = np.zeros((*chars.shape[:2], 1), np.int64)
        feed = {"words": words, "cases": cases, "chars": chars, "lengths": lengths}
        if (self._windows is None) != (subwords is None):
            raise ValueError("expected subwords for a model with an encoder, and only for one")
        if self._windows is not None and subwords is not None:
            from seqtag.serving.encoder_onnx import encoder_feeds

            feed.update(encoder_feeds(self._windows.inputs(list(subwords))))
        if self._has_marginals_switch:  # files of seqtag 0.2.0 always compute them
            feed[WITH_MARGINALS] = np.array(not set(outputs) <= _WITHOUT_MARGINALS)
        return self.session.run(list(outputs), feed)

    def _batches(self, sentences: Sequence[Sequence[str]], batch_size: int, outputs: list[str]):
        """``(indices, outputs)`` per batch of the plan of :func:`plan_batches`."""
        check_batch_size(batch_size)
        lens = [len(s) for s in sentences]
        tokenized = None
        if self._windows is None:
            batches = plan_batches(lens, batch_size)
        else:  # by subword counts, as Tagger.predict plans an encoder model's batches
            tokenized = self._windows.tokenizer.tokenize([list(s) for s in sentences])
            batches = plan_batches([len(t.ids) for t in tokenized], batch_size)
        if not batches:
            return
        table = self._table(sentences)
        for chunk in batches:
            subwords = [tokenized[i] for i in chunk] if tokenized is not None else None
            yield chunk, self.run(*self._collate(table, lens, chunk), outputs=outputs, subwords=subwords)

    def _table(self, sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
        """Encode each distinct token once (:func:`seqtag.data.encoding.encode_table`), as arrays.

        Returns:
            ``(entry, starts, words, cases, chars, widths)``: ``(N,)`` the table row of each of
            the ``N`` tokens in sentence order, ``(S,)`` where each sentence starts in it, and per
            row ``(E,)`` word ids, ``(E,)`` case ids, ``(E, width)`` character ids padded with 0
            and ``(E,)`` their counts.
        """
        entry, starts, words, cases, chars, widths = encode_table(
            sentences, self._word_ids, self._char_ids, self._lower_map, self._lowercase, self._width
        )
        counts = np.asarray(widths, np.int64)
        padded = np.zeros((len(words), self._width), np.int64)
        padded[np.arange(self._width)[None, :] < counts[:, None]] = chars  # row r: counts[r] ids, then 0
        return (
            np.asarray(entry, np.int64),
            np.asarray(starts, np.int64),
            np.asarray(words, np.int64),
            np.asarray(cases, np.int64),
            padded,
            counts,
        )

    def _collate(self, table, lens: list[int], chunk: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                             np.ndarray]:
        """Pad the sentences ``chunk`` (indices) as ``seqtag.data.dataset.collate`` pads their encodings.

        The NumPy twin of :func:`seqtag.data.dataset.collate_strings` (same table, same batch): the
        padding is array indexing, which has no common form for torch and NumPy; plain-Python
        padding would cost the eager path its vectorized scatter."""
        entry, starts, words, cases, chars, widths = table
        lengths = np.array([lens[i] for i in chunk], np.int64)
        b, t = len(chunk), int(lengths.max(initial=0))
        rows = np.concatenate([entry[starts[i] : starts[i] + lens[i]] for i in chunk]) if b else entry[:0]
        mask = np.arange(t)[None, :] < lengths[:, None]  # shape: (B, T)
        batch_words = np.zeros((b, t), np.int64)
        batch_cases = np.zeros((b, t), np.int64)
        batch_words[mask] = words[rows]
        batch_cases[mask] = cases[rows]
        w = int(widths[rows].max(initial=0))
        batch_chars = np.zeros((b, t, w), np.int64)
        if w:
            batch_chars[mask] = chars[rows, :w]
        return batch_words, batch_cases, batch_chars, lengths


_MISSING = object()


def _check_metadata(meta: dict, path: str) -> None:
    """Check the type and size of every entry of an ONNX file's metadata that the runner reads
    (:func:`seqtag.serving.onnx_export.onnx_metadata` writes them), before any is used.

    Raises:
        SeqtagError: one line naming ``path``, the entry, what was expected and what came.
    """

    def bad(key: str, expected: str, value: object) -> SeqtagError:
        shown = "nothing" if value is _MISSING else repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return SeqtagError(f"{path}: bad {METADATA_NAME} metadata: expected {key} to be {expected}, got {shown}")

    def strings(value: object, minimum: int = 0) -> bool:  # a list of at least ``minimum`` strings, each once
        return (isinstance(value, list) and len(value) >= minimum and all(isinstance(v, str) for v in value)
                and len(set(value)) == len(value))  # fmt: skip

    def flag(value: object) -> bool:
        return isinstance(value, bool)

    def count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    def check(where: dict, prefix: str, key: str, ok, expected: str) -> object:
        value = where.get(key, _MISSING)
        if value is _MISSING or not ok(value):
            raise bad(prefix + key, expected, value)
        return value

    tags = check(meta, "", "tags", lambda v: strings(v, 1) and all(v), "a list of distinct non-empty strings")
    check(meta, "", "inputs", strings, "a list of distinct strings")
    check(meta, "", "outputs", strings, "a list of distinct strings")
    head = check(meta, "", "head", lambda v: v in ("crf", "softmax"), '"crf" or "softmax"')
    if head == "softmax":
        check(meta, "", "crf", lambda v: v is None, "null for a softmax head")
    else:
        crf = check(meta, "", "crf", lambda v: isinstance(v, dict), "an object for a CRF head")
        k = len(tags)
        for name, mask, shape in (("start", "start_mask", (k,)), ("transitions", "transition_mask", (k, k)),
                                  ("end", "end_mask", (k,))):  # fmt: skip
            for key, kinds, expected in ((name, "fi", "finite numbers"), (mask, "b", "booleans")):
                value = crf.get(key, _MISSING)
                try:
                    array = np.asarray(value)
                except ValueError:  # ragged lists
                    array = np.asarray(None)
                if array.dtype.kind not in kinds or array.shape != shape or not np.isfinite(array).all():
                    raise bad(f"crf.{key}", f"{expected} of shape {shape} ({k} tags)", value)
    encoding = check(meta, "", "encoding", lambda v: isinstance(v, dict), "an object")
    for key in ("words", "chars"):  # ids 0 and 1 are padding and unknown
        check(encoding, "encoding.", key, lambda v: strings(v, 2), "a list of at least 2 distinct strings")
    check(encoding, "encoding.", "lower_map",
          lambda v: isinstance(v, dict) and all(isinstance(c, str) and len(c) == 1 for kv in v.items() for c in kv),
          "an object of one character to one character")  # fmt: skip
    for key in ("lowercase", "use_chars", "use_case"):
        check(encoding, "encoding.", key, flag, "true or false")
    check(encoding, "encoding.", "max_word_length", count, "an integer >= 1")
    check(encoding, "encoding.", "case_rule", lambda v: v == CASE_RULE, repr(CASE_RULE))
    encoder = meta.get("encoder")  # absent before encoders
    if encoder is not None:
        if not isinstance(encoder, dict):
            raise bad("encoder", "null or an object", encoder)
        for key in ("tokenizer", "unk_token", "pad_token"):
            check(encoder, "encoder.", key, lambda v: isinstance(v, str), "a string")
        for key in ("window_size", "stride"):
            check(encoder, "encoder.", key, count, "an integer >= 1")


def kbest_viterbi(
    emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, transitions: np.ndarray, end: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best tag sequences of each sentence under a linear-chain CRF (batched k-best Viterbi).

    Args:
        emissions: ``(batch, seq_len, num_tags)`` scores.
        lengths: ``(batch,)`` int64, each ``>= 1``.
        start: ``(num_tags,)`` scores of the first tag; ``-inf`` marks a forbidden one.
        transitions: ``(num_tags, num_tags)`` scores of the moves ``[from, to]`` (``-inf``: forbidden).
        end: ``(num_tags,)`` scores of the last tag (``-inf``: forbidden).
        k: sequences per sentence, ``>= 1``.

    Returns:
        ``(paths, scores)``: ``(batch, k, seq_len)`` int64 tags (0 at padding) and ``(batch, k)``
        float64 scores, best first. Missing sequences (fewer than ``k`` allowed) score ``-inf``
        with paths of zeros. Ties go to the smaller (previous tag, previous rank) at each step and
        the smaller (last tag, rank) at the end: deterministic, the order of a stable sort.
    """
    em = emissions.astype(np.float64)
    b, t, n = em.shape
    start, transitions, end = (np.asarray(a, np.float64) for a in (start, transitions, end))
    # shape: (B, K, k), the best k prefix scores ending in each tag
    score = np.full((b, n, k), -np.inf)
    score[:, :, 0] = start + em[:, 0]
    # shape: (T, B, K, k), (previous tag, previous rank) of each entry; row 0 unused
    back_tag = np.zeros((t, b, n, k), np.int64)
    back_rank = np.zeros((t, b, n, k), np.int64)
    same_tag = np.broadcast_to(np.arange(n)[None, :, None], (b, n, k))
    same_rank = np.broadcast_to(np.arange(k)[None, None, :], (b, n, k))
    for step in range(1, t):
        # shape: (B, K [from] * k, K [to]), candidate scores by (previous tag, previous rank)
        candidates = (score[:, :, :, None] + transitions[None, :, None, :] + em[:, step, None, None, :]).reshape(
            b, n * k, n
        )
        best = np.argsort(-candidates, axis=1, kind="stable")[:, :k]  # shape: (B, k, K [to])
        new_score = np.take_along_axis(candidates, best, axis=1).transpose(0, 2, 1)  # shape: (B, K, k)
        best = best.transpose(0, 2, 1)
        inside = (step < lengths)[:, None, None]
        score = np.where(inside, new_score, score)
        back_tag[step] = np.where(inside, best // k, same_tag)
        back_rank[step] = np.where(inside, best % k, same_rank)
    final = (score + end[None, :, None]).reshape(b, n * k)
    order = np.argsort(-final, axis=1, kind="stable")[:, :k]  # shape: (B, k)
    scores = np.take_along_axis(final, order, axis=1)
    tag, rank = order // k, order % k
    paths = np.zeros((b, k, t), np.int64)
    rows = np.arange(b)[:, None]
    for step in range(t - 1, -1, -1):
        paths[:, :, step] = tag
        if step > 0:
            tag, rank = back_tag[step][rows, tag, rank], back_rank[step][rows, tag, rank]
    paths = np.where(np.arange(t)[None, None, :] < lengths[:, None, None], paths, 0)
    paths[~np.isfinite(scores)] = 0
    return paths, scores

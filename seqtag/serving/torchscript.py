"""Export a trained tagger for serving: TorchScript (strings in, strings out), and ``torch.export``.

:func:`to_torchscript` writes one file holding a scripted :class:`ScriptedTagger`: the network,
its vocabularies and the encoding rules, so that ``torch.jit.load(path)(sentences)`` tags raw
tokens in any Python process (seqtag not needed) or in C++ through libtorch.

The ``torch.export`` programs of the id-level path (one per sentence-length bucket) are
:mod:`seqtag.serving.torch_export`; its entry points (:func:`~seqtag.serving.torch_export.to_torch_export`,
:func:`~seqtag.serving.torch_export.load_torch_export`, ``TorchExportTagger``, ``DEFAULT_MAX_LENGTH``)
can be imported from here too.

Both run the eager inference path, not a copy of it: :func:`~seqtag.data.dataset.encode_strings`,
:func:`~seqtag.data.dataset.plan_batches` and :meth:`Tagger.tag_ids <seqtag.model.tagger.Tagger.tag_ids>`
(the CRF's one Viterbi). What these modules add is only what differs per format: scripting,
exporting, saving and loading, and the torch.export length buckets.

See ``docs/export.md`` for loading from Python without seqtag, from C++, and the trade-offs.

>>> import seqtag, seqtag.serving.torchscript, tempfile, os
>>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), seqtag.Vocabularies.build(seqtag.tutorial_corpus()))
>>> path = seqtag.serving.torchscript.to_torchscript(tagger, os.path.join(tempfile.mkdtemp(), "tagger.pt"))
>>> module = seqtag.serving.torchscript.load_torchscript(path)
>>> module([["The", "dog"], []]) == tagger.predict([["The", "dog"], []])
True
"""

import contextlib
import copy
import io
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from seqtag import __version__
from seqtag.config import DEFAULT_BATCH_SIZE, TaggerConfig, check_value
from seqtag.data.dataset import collate_strings, encode_strings, string_rules
from seqtag.data.encoding import check_batch_size, check_sentences, plan_batches
from seqtag.data.vocab import check_strings
from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_bytes, make_dir
from seqtag.model.directory import check_finite, check_vocab_sizes
from seqtag.model.tagger import Tagger, as_tagger, refuse_encoder
from seqtag.serving.files import FORMAT_VERSIONS, METADATA_NAME, TORCHSCRIPT_FORMAT, check_format

# -- TorchScript: strings in, strings out --------------------------------------------------


class ScriptedTagger(nn.Module):
    """A :class:`~seqtag.model.tagger.Tagger` with its vocabularies and encoding rules, for TorchScript.

    :func:`to_torchscript` scripts and saves this module. Its methods are plain Python too, so
    the unscripted module gives the same results (handy for debugging). It runs the eager path:
    :func:`~seqtag.data.dataset.encode_strings`, :func:`~seqtag.data.dataset.plan_batches` and
    :meth:`Tagger.tag_ids <seqtag.model.tagger.Tagger.tag_ids>`.

    Args:
        tagger: the trained tagger; a CPU copy in eval mode is taken, the original is untouched.
            Its LSTM path is resolved for the CPU (``rnn_mode="auto"``: padded; the same scores
            on any device).
        batch_size: at most this many sentences per forward pass (attribute ``batch_size``).
        max_tokens: at most this many tokens counting padding per forward pass (attribute
            ``max_tokens``; 0: :func:`~seqtag.data.encoding.default_max_tokens`).

    Attributes:
        tags: tag names in id order (``tags[i]`` is tag id ``i``).
        config_json: the :class:`~seqtag.config.TaggerConfig` as JSON.
        seqtag_version: version of seqtag that wrote the file.
        word_ids: the word vocabulary (string ► id; 0 padding, 1 unknown).
        char_ids: the character vocabulary (string ► id; 0 padding, 1 unknown).
        lower_map: per-character lowercasing table (:func:`seqtag.data.encoding.lowercase_table`).
    """

    tags: list[str]
    word_ids: dict[str, int]
    char_ids: dict[str, int]
    lower_map: dict[str, str]
    lowercase: bool
    char_width: int
    max_word_length: int
    batch_size: int
    max_tokens: int
    config_json: str
    seqtag_version: str
    format_version: int

    def __init__(self, tagger: Tagger, batch_size: int = DEFAULT_BATCH_SIZE, max_tokens: int = 0) -> None:
        super().__init__()
        plan_batches([], batch_size, max_tokens or None)  # the planner's checks, now
        vocabs, config = tagger.vocabs, tagger.config
        self.tagger = copy.deepcopy(tagger).cpu().eval().requires_grad_(False)
        self.tagger.set_rnn_mode(torch.device("cpu"))
        self.tags = list(vocabs.tags.itos)
        word_ids, char_ids, lower_map, lowercase, char_width = string_rules(vocabs, config)
        self.word_ids, self.char_ids, self.lower_map = dict(word_ids), dict(char_ids), lower_map
        self.lowercase, self.char_width = lowercase, char_width
        self.max_word_length = config.max_word_length
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.config_json = json.dumps(config.to_dict(), sort_keys=True)
        self.seqtag_version = __version__
        self.format_version = FORMAT_VERSIONS[TORCHSCRIPT_FORMAT]

    def forward(self, tokens: list[list[str]]) -> list[list[str]]:
        """Tag tokenized sentences: one list of tag strings per sentence (``[]`` for ``[]``).

        Unknown words and characters map to the unknown id, as in eager
        :meth:`~seqtag.model.tagger.Tagger.predict`; batches are planned by
        :func:`~seqtag.data.dataset.plan_batches` (``batch_size``, ``max_tokens``); any sentence
        length works.
        """
        out: list[list[str]] = []
        for path in self.predict_ids(tokens):
            out.append([self.tags[i] for i in path])
        return out

    @torch.jit.export
    def predict_ids(self, tokens: list[list[str]]) -> list[list[int]]:
        """Like :meth:`forward`, returning tag ids."""
        out: list[list[int]] = []
        for _ in range(len(tokens)):
            out.append(torch.jit.annotate(list[int], []))
        table, lens, plan = self._plan(tokens)
        for chunk in plan:
            words, cases, chars, lengths = collate_strings(table, lens, chunk)
            # not `paths: T = self.tag_ids(...).tolist()`: TorchScript (2.13) then runs it twice
            ids = self.tag_ids(words, cases, chars, lengths)
            paths: list[list[int]] = ids.tolist()
            for j in range(len(chunk)):
                out[chunk[j]] = paths[j][: lens[chunk[j]]]
        return out

    @torch.jit.export
    def predict_with_confidence(self, tokens: list[list[str]]) -> list[tuple[list[str], list[float]]]:
        """Per sentence ``(tags, confidence)``: the tags of :meth:`forward` and the marginal
        probability of each chosen tag, as :meth:`Tagger.predict_with_confidence
        <seqtag.model.tagger.Tagger.predict_with_confidence>` gives them."""
        out: list[tuple[list[str], list[float]]] = []
        for _ in range(len(tokens)):
            out.append((torch.jit.annotate(list[str], []), torch.jit.annotate(list[float], [])))
        table, lens, plan = self._plan(tokens)
        for chunk in plan:
            words, cases, chars, lengths = collate_strings(table, lens, chunk)
            with torch.no_grad():
                ids, probs = self.tagger.tag_confidence(words, cases, chars, lengths)
            paths: list[list[int]] = ids.tolist()
            confidence: list[list[float]] = probs.tolist()
            for j in range(len(chunk)):
                n = lens[chunk[j]]
                out[chunk[j]] = ([self.tags[i] for i in paths[j][:n]], confidence[j][:n])
        return out

    @torch.jit.export
    def nbest(self, tokens: list[list[str]], k: int) -> list[list[tuple[list[str], float]]]:
        """Per sentence up to ``k`` ``(tags, log_prob)``, best first, as :meth:`Tagger.nbest
        <seqtag.model.tagger.Tagger.nbest>` gives them (an empty sentence: ``[([], 0.0)]``)."""
        if k < 1:
            raise ValueError(f"expected k >= 1, got {k}")
        out: list[list[tuple[list[str], float]]] = []
        for _ in range(len(tokens)):
            out.append([(torch.jit.annotate(list[str], []), 0.0)])
        table, lens, plan = self._plan(tokens)
        for chunk in plan:
            words, cases, chars, lengths = collate_strings(table, lens, chunk)
            with torch.no_grad():
                ids, scores = self.tagger.tag_nbest(words, cases, chars, lengths, k)
            paths: list[list[list[int]]] = ids.tolist()
            log_probs: list[list[float]] = scores.tolist()
            for j in range(len(chunk)):
                n = lens[chunk[j]]
                found: list[tuple[list[str], float]] = []
                for r in range(k):
                    if log_probs[j][r] != float("-inf"):
                        found.append(([self.tags[i] for i in paths[j][r][:n]], log_probs[j][r]))
                out[chunk[j]] = found
        return out

    @torch.jit.export
    def marginals(self, tokens: list[list[str]]) -> list[Tensor]:
        """Per sentence a float32 tensor of shape ``(n_tokens, num_tags)``: ``p(y_t = k | x)``,
        columns in ``tags`` order, as :meth:`Tagger.marginals <seqtag.model.tagger.Tagger.marginals>`
        gives them (there as NumPy arrays)."""
        out: list[Tensor] = []
        for _ in range(len(tokens)):
            out.append(torch.zeros((0, len(self.tags)), dtype=torch.float32))
        table, lens, plan = self._plan(tokens)
        for chunk in plan:
            words, cases, chars, lengths = collate_strings(table, lens, chunk)
            with torch.no_grad():
                probs = self.tagger.tag_marginals(words, cases, chars, lengths).cpu()
            for j in range(len(chunk)):
                out[chunk[j]] = probs[j, : lens[chunk[j]]].clone()
        return out

    @torch.jit.export
    def encode(self, tokens: list[list[str]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Encode sentences into the padded batch that :meth:`tag_ids` takes, in the given order.

        Returns:
            ``(words, cases, chars, lengths)``: ``(batch, seq_len)`` word ids, ``(batch, seq_len)``
            case ids, ``(batch, seq_len, word_len)`` character ids (``word_len`` is the longest word,
            at most ``max_word_length``; 0 without character features) and ``(batch,)`` lengths,
            all int64 on the CPU, 0 at padding. ``seq_len`` is the longest sentence.
        """
        table = self._encode(tokens)
        lens = [len(s) for s in tokens]
        return collate_strings(table, lens, list(range(len(tokens))))

    @torch.jit.export
    def tag_ids(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        """:meth:`Tagger.tag_ids <seqtag.model.tagger.Tagger.tag_ids>` without autograd: ``(batch,
        seq_len)`` int64 tag ids on ``words.device`` (0 at padding and in rows of length 0)
        for ``(batch, seq_len)`` words and cases, ``(batch, seq_len, word_len)`` chars and
        ``(batch,)`` lengths; ``torch.jit.Error`` for inconsistent shapes or lengths."""
        with torch.no_grad():
            return self.tagger.tag_ids(words, cases, chars, lengths)

    @torch.jit.export
    def tag_confidence(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`Tagger.tag_confidence <seqtag.model.tagger.Tagger.tag_confidence>` without autograd:
        ``(batch, seq_len)`` tag ids and ``(batch, seq_len)`` float32 probabilities."""
        with torch.no_grad():
            return self.tagger.tag_confidence(words, cases, chars, lengths)

    @torch.jit.export
    def tag_nbest(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """:meth:`Tagger.tag_nbest <seqtag.model.tagger.Tagger.tag_nbest>` without autograd:
        ``(batch, k, seq_len)`` tag ids and ``(batch, k)`` float32 log-probabilities."""
        with torch.no_grad():
            return self.tagger.tag_nbest(words, cases, chars, lengths, k)

    def _encode(self, tokens: list[list[str]]) -> tuple[Tensor, list[int], Tensor, Tensor, Tensor, Tensor]:
        return encode_strings(tokens, self.word_ids, self.char_ids, self.lower_map, self.lowercase, self.char_width)

    def _plan(
        self, tokens: list[list[str]]
    ) -> tuple[tuple[Tensor, list[int], Tensor, Tensor, Tensor, Tensor], list[int], list[list[int]]]:
        """The string table, the lengths and the batch plan of ``tokens``."""
        lens = [len(s) for s in tokens]
        max_tokens: int | None = None
        if self.max_tokens != 0:
            max_tokens = self.max_tokens
        plan = plan_batches(lens, self.batch_size, max_tokens)  # checks batch_size before any work
        return self._encode(tokens), lens, plan


@contextlib.contextmanager
def _torchscript_warnings() -> Iterator[None]:
    """Silence TorchScript's own deprecation notice around the calls that export deliberately makes.

    torch 2.13 marks ``torch.jit.script``, ``save`` and ``load`` deprecated in favour of
    ``torch.export``; seqtag still offers TorchScript because only it keeps strings in and out
    and loads in C++ without Python (docs/export.md). Other warnings pass through.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.(script|save|load)` is deprecated", category=DeprecationWarning
        )
        yield


def torchscript_metadata(tagger: Tagger) -> dict:
    """The JSON object stored as ``seqtag.json`` in a TorchScript file's extra files."""
    return {
        "format": TORCHSCRIPT_FORMAT,
        "format_version": FORMAT_VERSIONS[TORCHSCRIPT_FORMAT],
        "seqtag_version": __version__,
        "torch_version": torch.__version__,
        "model": tagger.config.to_dict(),
        "tags": list(tagger.vocabs.tags.itos),
    }


def script(
    model_or_dir: Tagger | str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE, max_tokens: int = 0
) -> torch.jit.ScriptModule:
    """The scripted :class:`ScriptedTagger` of a tagger or a model directory, without saving it."""
    tagger = as_tagger(model_or_dir)
    refuse_encoder(tagger, "TorchScript")
    with _torchscript_warnings():
        return torch.jit.script(ScriptedTagger(tagger, batch_size, max_tokens))


def to_torchscript(
    model_or_dir: Tagger | str | os.PathLike, path: str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE, max_tokens: int = 0
) -> Path:
    """Save a self-contained TorchScript tagger: raw tokens in, tag strings out.

    Args:
        model_or_dir: a :class:`~seqtag.model.tagger.Tagger` or a model directory written by
            :meth:`Tagger.save <seqtag.model.tagger.Tagger.save>` (loaded on the CPU).
        path: the file to write (conventionally ``.pt``); replaced atomically if it exists.
        batch_size: at most this many sentences per forward pass when the module tags a list
            of sentences (the module's ``batch_size`` attribute).
        max_tokens: at most this many tokens counting padding per forward pass (0:
            :func:`~seqtag.data.encoding.default_max_tokens`; the module's ``max_tokens`` attribute).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    The file loads with ``torch.jit.load(path, map_location=...)`` without seqtag. Its module
    has ``forward(List[List[str]]) -> List[List[str]]``, ``predict_ids``,
    ``predict_with_confidence``, ``nbest``, ``marginals``, ``encode``, ``tag_ids``,
    ``tag_confidence`` and ``tag_nbest`` (see :class:`ScriptedTagger`), the attributes ``tags``, ``config_json`` and
    ``seqtag_version``, and a ``seqtag.json`` extra file (:func:`torchscript_metadata`).

    >>> import seqtag, seqtag.serving.torchscript, tempfile, os, torch
    >>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), seqtag.Vocabularies.build(seqtag.tutorial_corpus()))
    >>> path = seqtag.serving.torchscript.to_torchscript(tagger, os.path.join(tempfile.mkdtemp(), "tagger.pt"))
    >>> seqtag.serving.torchscript.load_torchscript(path).tags == tagger.vocabs.tags.itos
    True
    """
    tagger = as_tagger(model_or_dir)
    refuse_encoder(tagger, "TorchScript")
    scripted = script(tagger, batch_size, max_tokens)
    extra = {METADATA_NAME: json.dumps(torchscript_metadata(tagger), ensure_ascii=False)}
    buf = io.BytesIO()
    with _torchscript_warnings():
        torch.jit.save(scripted, buf, _extra_files=extra)
    path = Path(path)
    make_dir(path.parent)
    atomic_write_bytes(path, buf.getvalue())
    return path


def check_metadata(meta: object, expected_format: str, where: str | Path) -> dict:
    """Check the ``seqtag.json`` object of an exported file (:data:`METADATA_NAME`) before anything
    is read from it: its ``format`` is ``expected_format`` and its ``format_version`` one this
    seqtag reads (:func:`~seqtag.serving.files.check_format`: a newer one is refused rather than
    misread); ``seqtag_version`` a string; ``tags`` a
    non-empty list of distinct strings; ``model`` a complete :class:`~seqtag.config.TaggerConfig`.
    The TorchScript and ``torch.export`` loaders call it once per load, then hold the metadata to
    the module or programs it sits on.

    Returns:
        ``meta``.

    Raises:
        SeqtagError: ``WHERE: ...`` naming the entry.
    """
    if not isinstance(meta, dict) or "format" not in meta:
        raise SeqtagError(f"{where}: not a seqtag export (no format in {METADATA_NAME})")
    check_format(meta, expected_format, str(where))
    if not isinstance(meta.get("seqtag_version"), str):
        raise SeqtagError(f"{where}: expected seqtag_version a string in {METADATA_NAME}, got {meta.get('seqtag_version')!r}")
    try:
        if not check_strings(meta.get("tags"), "tags"):
            raise ValueError("expected at least one tag, got none")
        TaggerConfig.from_dict(meta.get("model"), complete=True)
    except ValueError as e:
        raise SeqtagError(f"{where}: bad {METADATA_NAME}: {e}") from None
    return meta


def load_torchscript(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> "TorchScriptTagger":
    """Load a file written by :func:`to_torchscript` (``torch.jit.load`` without the deprecation
    notice), checked once: its ``seqtag.json`` (:func:`check_metadata`) against the module it
    sits on (the tags, the configuration, the format version, each vocabulary's size against the
    weights: :func:`~seqtag.model.directory.check_vocab_sizes`), and every weight finite.

    Returns:
        A :class:`TorchScriptTagger`: the module behind the argument checks of
        :meth:`Tagger.predict <seqtag.model.tagger.Tagger.predict>`.

    Raises:
        SeqtagError: the file is missing, not TorchScript, not a seqtag tagger, or its metadata
            does not describe its module (another model's, or edited).
    """
    path = Path(path)
    if not path.is_file():
        raise SeqtagError(f"{path}: no such file")
    extra = {METADATA_NAME: ""}
    try:
        with _torchscript_warnings():
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except RuntimeError as e:
        raise SeqtagError(f"{path}: not a TorchScript file ({str(e).splitlines()[0].split('. ')[0]})") from None
    if not extra[METADATA_NAME]:
        raise SeqtagError(f"{path}: a TorchScript file, but not a seqtag tagger (no {METADATA_NAME})")
    try:
        meta = json.loads(extra[METADATA_NAME])
    except ValueError as e:
        raise SeqtagError(f"{path}: {METADATA_NAME} is not JSON ({e})") from None
    check_metadata(meta, TORCHSCRIPT_FORMAT, path)
    try:
        described = {"tags": module.tags, "model": json.loads(module.config_json), "format_version": module.format_version}
        sizes = {"words": len(module.word_ids), "chars": len(module.char_ids), "tags": len(module.tags)}
        state = module.state_dict()
    except (AttributeError, TypeError, ValueError) as e:  # a module that is not a ScriptedTagger
        raise SeqtagError(f"{path}: {METADATA_NAME} says seqtag tagger, but the module is not one ({e})") from None
    for name, value in described.items():
        if value != meta[name]:
            raise SeqtagError(
                f"{path}: {METADATA_NAME}'s {name} is not the module's: the metadata comes from another model, "
                f"or was edited"
            )
    check_vocab_sizes(state, sizes, path, "its module", prefix="tagger.")
    check_finite(state, path)
    return TorchScriptTagger(module)


class TorchScriptTagger:
    """A TorchScript tagger as :func:`load_torchscript` gives it: the scripted
    :class:`ScriptedTagger` (``module``) behind the argument checks of eager
    :meth:`Tagger.predict <seqtag.model.tagger.Tagger.predict>`.

    TorchScript converts Python arguments itself, and converts too much: a string is a sequence
    of one-character strings, so ``module("The dog")`` (or a list of strings, a dict, bytes) would
    be tagged character by character. Here each method first checks its sentences
    (:func:`~seqtag.data.encoding.check_sentences`: a ``TypeError`` saying what was expected and
    what came), ``k`` and ``batch_size`` (an int >= 1, :func:`~seqtag.data.encoding.check_batch_size`),
    then calls the module. Every other attribute (``tags``, ``tag_ids``, ``state_dict``, ...) is
    the module's.
    """

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        object.__setattr__(self, "module", module)

    def __getattr__(self, name: str):
        return getattr(self.module, name)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "batch_size":
            check_batch_size(value)
        elif name == "max_tokens":
            check_value(name, value, {"min": 0}, int)
        setattr(self.module, name, value)

    def __call__(self, sentences: object) -> list[list[str]]:
        """``forward``: tag strings for each sentence (a list of token strings)."""
        return self.module(check_sentences(sentences))

    forward = __call__

    def predict_ids(self, sentences: object) -> list[list[int]]:
        return self.module.predict_ids(check_sentences(sentences))

    def predict_with_confidence(self, sentences: object) -> list[tuple[list[str], list[float]]]:
        return self.module.predict_with_confidence(check_sentences(sentences))

    def nbest(self, sentences: object, k: int) -> list[list[tuple[list[str], float]]]:
        sentences = check_sentences(sentences)
        check_value("k", k, {"min": 1}, int)
        return self.module.nbest(sentences, k)

    def marginals(self, sentences: object) -> list[Tensor]:
        """Per sentence a float32 tensor of shape ``(n_tokens, num_tags)`` (:meth:`ScriptedTagger.marginals`)."""
        return self.module.marginals(check_sentences(sentences))

    def encode(self, sentences: object) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The padded id batch: ``(batch, seq_len)`` words and cases, ``(batch, seq_len, word_len)``
        chars, ``(batch,)`` lengths (:meth:`ScriptedTagger.encode`)."""
        return self.module.encode(check_sentences(sentences))

"""Words to the subwords of a pretrained encoder, and the windows the encoder reads them in.

Without torch: the eager tagger and the ONNX runner both tokenize through here, with the
``tokenizers`` library alone (imported when a tokenizer is loaded), from the encoder's
``tokenizer.json``.

- :class:`SubwordTokenizer` tokenizes sentences (lists of words) once, keeping each word's span
  of subwords (:class:`Subwords`); a word that the tokenizer maps to no subword at all (a
  control character, ``"\\u200b"``, an empty string) gets the unknown token, so that every word
  has at least one subword and keeps its place.
- :func:`plan_windows` cuts a sentence longer than the encoder's limit into overlapping windows;
  each subword takes its vector from the window in which it is farthest from an edge (as BERT's
  SQuAD code chooses the "max context" span, google-research/bert#66).
- :func:`encoder_inputs` lays out a batch: every window of every sentence as one row (each with
  its own special tokens), padded, and the index of each subword's chosen window position.
  Torch and numpy wrap its lists unchanged (``torch.tensor``, ``np.array``).

Positions are counted in subwords without the special tokens unless said otherwise.

>>> plan_windows(9, capacity=4, stride=2)
([0, 2, 4, 5], [0, 0, 0, 1, 1, 2, 2, 3, 3])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_text

if TYPE_CHECKING:
    import tokenizers

TOKENIZER_FILE = "tokenizer.json"
"""The ``tokenizers`` library's file: vocabulary, normalizer, pre-tokenizer, special tokens."""
SUBWORDS_FILE = "subwords.json"
"""Which of the tokenizer's tokens are the unknown and the padding token (``tokenizer.json``
does not say: a byte-level BPE model names no unknown token)."""
SUBWORDS_FORMAT, SUBWORDS_VERSION = "seqtag.subwords", 1


class Subwords(NamedTuple):
    """One sentence in subwords.

    Attributes:
        ids: the ``n`` subword ids, without special tokens.
        offsets: ``n_words + 1`` ints: word ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` (at
            least one subword each); ``offsets[0] == 0`` and ``offsets[-1] == n``.
    """

    ids: list[int]
    offsets: list[int]


class EncoderInputs(NamedTuple):
    """A batch of ``B`` sentences laid out for the encoder (:func:`encoder_inputs`). Every field
    is a list of ints, rectangular, ready for ``torch.tensor`` or ``np.array`` (int64).

    Attributes:
        window_ids: ``(n_windows, width)``: each window's subword ids with its special tokens,
            padded with the padding id; the windows of sentence 0 first, then sentence 1's, ...
        window_mask: ``(n_windows, width)``: 1 at a token, 0 at padding.
        source: ``(B, max_subwords)``: where each subword takes its vector, as a row of the
            windows' output flattened to ``(n_windows * width, dim)``: ``window * width +
            position`` (the position counting the special tokens); 0 at padding.
        word_starts, word_ends: ``(B, max_words)``: each word's subwords,
            ``[start, end)`` in the sentence's subword positions; ``start == end == 0`` at
            padding (a real word has ``end > start``).
        lengths: ``(B,)``: words per sentence.
        subword_lengths: ``(B,)``: subwords per sentence.
    """

    window_ids: list[list[int]]
    window_mask: list[list[int]]
    source: list[list[int]]
    word_starts: list[list[int]]
    word_ends: list[list[int]]
    lengths: list[int]
    subword_lengths: list[int]


class SubwordTokenizer:
    """A fast tokenizer (``tokenizers.Tokenizer``) with the layout of its special tokens.

    Args:
        tokenizer: the tokenizer; copied, with padding and truncation switched off (windows
            replace truncation) and special tokens spelled in the text split as text
            (transformers' ``split_special_tokens=True``).
        unk_token: the token a word gets when the tokenizer maps it to nothing.
        pad_token: the token that pads windows.

    Attributes:
        prefix, suffix: the special token ids around one sequence (``[CLS]`` / ``[SEP]``,
            ``<s>`` / ``</s>``), read from the tokenizer's post-processor.
        unk_id, pad_id: the ids of ``unk_token`` and ``pad_token``.

    Raises:
        SeqtagError: a token is not in the vocabulary, or the post-processor puts special
            tokens inside the sequence.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, unk_token: str, pad_token: str) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # a word that spells a special token ("<pad>", "[SEP]") is text, not that token:
        # as a padding id it would shift RoBERTa's position ids
        self.tokenizer.encode_special_tokens = True
        self.unk_token, self.pad_token = unk_token, pad_token
        unk_id = self.tokenizer.token_to_id(unk_token)
        pad_id = self.tokenizer.token_to_id(pad_token)
        for name, token, id_ in (("unknown", unk_token, unk_id), ("padding", pad_token, pad_id)):
            if id_ is None:
                raise SeqtagError(f"the encoder's {name} token {token!r} is not in its tokenizer's vocabulary")
        self.unk_id: int = unk_id
        self.pad_id: int = pad_id
        # the special tokens around one word: those before the word's first subword and after its last
        probe = self.tokenizer.encode([unk_token], is_pretokenized=True, add_special_tokens=True)
        inside = [i for i, w in enumerate(probe.word_ids) if w is not None]
        if not inside or any(probe.word_ids[i] is None for i in range(inside[0], inside[-1] + 1)):
            raise SeqtagError("the encoder's tokenizer puts special tokens inside a sentence; seqtag cannot window it")
        self.prefix: list[int] = probe.ids[: inside[0]]
        self.suffix: list[int] = probe.ids[inside[-1] + 1 :]

    @property
    def n_special(self) -> int:
        """Special tokens per window: ``len(prefix) + len(suffix)``."""
        return len(self.prefix) + len(self.suffix)

    def tokenize(self, sentences: list[list[str]]) -> list[Subwords]:
        """Each sentence's subwords and word spans (:class:`Subwords`), tokenized as a whole with
        ``is_pretokenized=True`` (as transformers' ``is_split_into_words=True``).

        A word mapped to no subword gets one: the unknown token.
        """
        encodings = self.tokenizer.encode_batch(sentences, is_pretokenized=True, add_special_tokens=False)
        out: list[Subwords] = []
        for words, encoding in zip(sentences, encodings):
            ids = encoding.ids
            word_ids = encoding.word_ids
            n_words = len(words)
            # ids arrive word after word: count each word's subwords, then lay them out
            counts = [0] * n_words
            for w in word_ids:
                counts[w] += 1
            if all(counts):
                out_ids = list(ids)
            else:
                out_ids = []
                i = 0
                for count in counts:
                    out_ids.extend(ids[i : i + count] if count else [self.unk_id])
                    i += count
            offsets = [0] * (n_words + 1)
            for w in range(n_words):
                offsets[w + 1] = offsets[w] + max(counts[w], 1)
            out.append(Subwords(out_ids, offsets))
        return out

    def save(self, directory: str | os.PathLike) -> None:
        """Write :data:`TOKENIZER_FILE` and :data:`SUBWORDS_FILE` into ``directory`` (atomic writes)."""
        directory = Path(directory)
        meta = {
            "format": SUBWORDS_FORMAT,
            "version": SUBWORDS_VERSION,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
        }
        atomic_write_text(directory / TOKENIZER_FILE, self.tokenizer.to_str())
        atomic_write_text(directory / SUBWORDS_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_str(cls, text: str, unk_token: str, pad_token: str) -> SubwordTokenizer:
        """The tokenizer of a ``tokenizer.json`` text (as an ONNX file's metadata holds it).

        Raises:
            SeqtagError: ``tokenizers`` is not installed, or ``text`` is not its format.
        """
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise SeqtagError("an encoder's tokenizer needs the tokenizers library: pip install 'seqtag[transformers]'") from None
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as e:  # the library raises its own Exception type for a bad text
            raise SeqtagError(f"not a tokenizers text ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return cls(tokenizer, unk_token, pad_token)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SubwordTokenizer:
        """Read what :meth:`save` wrote, with ``tokenizers`` only.

        Raises:
            SeqtagError: a file is missing or not what seqtag wrote.
        """
        directory = Path(directory)
        meta = read_subwords_meta(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise SeqtagError(f"{path}: not found (an encoder's tokenizer)")
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise SeqtagError("an encoder's tokenizer needs the tokenizers library: pip install 'seqtag[transformers]'") from None
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the library raises its own Exception type for a bad file
            raise SeqtagError(f"{path}: not a tokenizers file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return cls(tokenizer, meta["unk_token"], meta["pad_token"])


def read_subwords_meta(directory: Path) -> dict[str, str]:
    """The checked contents of ``directory / SUBWORDS_FILE``.

    Raises:
        SeqtagError: missing, not JSON, or not seqtag's format.
    """
    path = directory / SUBWORDS_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SeqtagError(f"{path}: not found (which tokens of the encoder's tokenizer are unknown and padding)") from None
    except (OSError, ValueError) as e:
        raise SeqtagError(f"{path}: cannot read: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != SUBWORDS_FORMAT:
        raise SeqtagError(f"{path}: not a {SUBWORDS_FORMAT} file")
    if meta.get("version") != SUBWORDS_VERSION:
        raise SeqtagError(f"{path}: version {meta.get('version')!r}, this seqtag reads version {SUBWORDS_VERSION}")
    for key in ("unk_token", "pad_token"):
        if not isinstance(meta.get(key), str):
            raise SeqtagError(f"{path}: expected a string {key}")
    return meta


def plan_windows(n: int, capacity: int, stride: int) -> tuple[list[int], list[int]]:
    """The windows over a sentence of ``n`` subwords, and the window each subword reads from.

    Windows hold ``capacity`` subwords (the encoder's window size less its special tokens) and
    start ``stride`` subwords apart (BERT's ``doc_stride``), except the last, which ends at the
    sentence's end (so that it too is full); a sentence of at most ``capacity`` subwords is one
    window. Each subword takes its vector from the window in which it is farthest from an edge
    (``min(left, right)`` context within the window, the most), the earlier window on a tie.

    Args:
        n: the sentence's subwords (0 gives one empty window).
        capacity: subwords per window, ``>= 1``.
        stride: subwords between window starts, ``1 <= stride <= capacity``.

    Returns:
        ``(starts, chosen)``: the first subword of each window (``n_windows`` ints, increasing)
        and, per subword, the index of its window in ``starts`` (``n`` ints).

    Raises:
        ValueError: ``capacity`` or ``stride`` out of range.

    >>> plan_windows(3, capacity=4, stride=2)
    ([0], [0, 0, 0])
    >>> plan_windows(6, capacity=4, stride=4)
    ([0, 2], [0, 0, 0, 1, 1, 1])
    """
    if capacity < 1:
        raise ValueError(f"expected capacity >= 1, got {capacity}")
    if not 1 <= stride <= capacity:
        raise ValueError(f"expected 1 <= stride <= capacity = {capacity}, got {stride}")
    starts = [0]
    while starts[-1] + capacity < n:
        starts.append(min(starts[-1] + stride, n - capacity))
    if len(starts) == 1:
        return starts, [0] * n
    chosen = [0] * n
    best = [-1] * n
    for w, start in enumerate(starts):
        end = start + capacity  # every window is full here (n > capacity)
        for p in range(start, end):
            score = min(p - start, end - 1 - p)
            if score > best[p]:  # strictly: a tie keeps the earlier window
                best[p] = score
                chosen[p] = w
    return starts, chosen


class WindowLayout(NamedTuple):
    """How a model reads its sentences: the tokenizer, the window size and the stride
    (:func:`encoder_inputs`'s arguments after ``sentences``), fixed when the model is built.

    Attributes:
        tokenizer: the encoder's :class:`SubwordTokenizer`.
        size: tokens per window, special tokens included.
        stride: subwords between window starts.
    """

    tokenizer: SubwordTokenizer
    size: int
    stride: int

    @classmethod
    def resolve(cls, tokenizer: SubwordTokenizer, window: int, stride: int, limit: int | None) -> WindowLayout:
        """The layout of a configuration's ``encoder_window`` and ``encoder_stride`` (0: the
        encoder's ``limit``, at most 512; half of a window's subwords).

        Raises:
            ValueError: the window is over ``limit`` or holds no subword, or the stride is
                longer than a window's subwords.

        >>> from tokenizers import Tokenizer, models
        >>> t = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        >>> layout = WindowLayout.resolve(SubwordTokenizer(t, "[UNK]", "[UNK]"), 0, 0, limit=128)
        >>> layout.size, layout.stride
        (128, 64)
        """
        size = window or min(512, limit or 512)
        if limit is not None and size > limit:
            raise ValueError(f"expected encoder_window <= {limit} (the encoder's limit), got {size}")
        capacity = size - tokenizer.n_special
        if capacity < 1:
            raise ValueError(f"expected encoder_window > {tokenizer.n_special} (the special tokens), got {size}")
        stride = stride or max(1, capacity // 2)
        if stride > capacity:
            raise ValueError(f"expected encoder_stride <= {capacity} (a window's subwords), got {stride}")
        return cls(tokenizer, size, stride)

    def inputs(self, sentences: list[Subwords]) -> EncoderInputs:
        """:func:`encoder_inputs` of ``sentences`` in this layout."""
        return encoder_inputs(sentences, self.tokenizer, self.size, self.stride)


def encoder_inputs(
    sentences: list[Subwords], tokenizer: SubwordTokenizer, window_size: int, stride: int
) -> EncoderInputs:
    """Lay out a batch of tokenized sentences for the encoder (:class:`EncoderInputs`).

    Args:
        sentences: ``B`` sentences from :meth:`SubwordTokenizer.tokenize`.
        tokenizer: the layout of the special tokens and the padding id.
        window_size: tokens per window, special tokens included (at most the encoder's limit,
            e.g. 512 for BERT); ``window_size - tokenizer.n_special >= 1``.
        stride: subwords between window starts (:func:`plan_windows`).

    Raises:
        ValueError: ``window_size`` or ``stride`` out of range.

    >>> from tokenizers import Tokenizer, models, pre_tokenizers, processors
    >>> vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5}
    >>> t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    >>> t.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    >>> tok = SubwordTokenizer(t, unk_token="[UNK]", pad_token="[PAD]")
    >>> sentences = tok.tokenize([["a", "b b", "\u200b"], ["b"]])
    >>> sentences[0]
    Subwords(ids=[4, 5, 5, 1], offsets=[0, 1, 3, 4])
    >>> x = encoder_inputs(sentences, tok, window_size=5, stride=2)  # 3 subwords a window
    >>> x.window_ids  # sentence 0 in two windows, sentence 1 in one
    [[2, 4, 5, 5, 3], [2, 5, 5, 1, 3], [2, 5, 3, 0, 0]]
    >>> x.source  # subwords 2 and 3 of sentence 0 from its second window (row 1: 5 + 2, 5 + 3)
    [[1, 2, 7, 8], [11, 0, 0, 0]]
    >>> x.word_starts, x.word_ends, x.lengths
    ([[0, 1, 3], [0, 0, 0]], [[1, 3, 4], [1, 0, 0]], [3, 1])
    """
    capacity = window_size - tokenizer.n_special
    if capacity < 1:
        raise ValueError(f"expected window_size > {tokenizer.n_special} (the special tokens), got {window_size}")
    prefix, suffix, n_prefix = tokenizer.prefix, tokenizer.suffix, len(tokenizer.prefix)
    windows: list[list[int]] = []
    chosen_rows: list[list[int]] = []  # per sentence, per subword: its window's row in ``windows``
    positions: list[list[int]] = []  # per sentence, per subword: its position in that window
    for sentence in sentences:
        ids = sentence.ids
        starts, chosen = plan_windows(len(ids), capacity, stride)
        first = len(windows)
        for start in starts:
            windows.append(prefix + ids[start : start + capacity] + suffix)
        chosen_rows.append([first + w for w in chosen])
        positions.append([p - starts[w] + n_prefix for p, w in enumerate(chosen)])
    width = max(len(w) for w in windows) if windows else 0
    pad = tokenizer.pad_id
    window_ids = [w + [pad] * (width - len(w)) for w in windows]
    window_mask = [[1] * len(w) + [0] * (width - len(w)) for w in windows]
    max_subwords = max((len(s.ids) for s in sentences), default=0)
    max_words = max((len(s.offsets) - 1 for s in sentences), default=0)
    source: list[list[int]] = []
    word_starts: list[list[int]] = []
    word_ends: list[list[int]] = []
    for sentence, rows, pos in zip(sentences, chosen_rows, positions):
        row = [r * width + p for r, p in zip(rows, pos)]
        source.append(row + [0] * (max_subwords - len(row)))
        n_words = len(sentence.offsets) - 1
        word_starts.append(sentence.offsets[:-1] + [0] * (max_words - n_words))
        word_ends.append(sentence.offsets[1:] + [0] * (max_words - n_words))
    return EncoderInputs(
        window_ids,
        window_mask,
        source,
        word_starts,
        word_ends,
        [len(s.offsets) - 1 for s in sentences],
        [len(s.ids) for s in sentences],
    )

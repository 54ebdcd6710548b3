"""String-to-id maps for words, characters and tags.

>>> v = Vocab.build(["a", "b", "a"], specials=(PAD, UNK))
>>> v.itos
['<pad>', '<unk>', 'a', 'b']
>>> v["a"], v["zzz"]
(2, 1)
>>> Vocab.from_dict(v.to_dict()) == v
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from seqtag.data.encoding import lowercase_table, normalize

PAD = "<pad>"
UNK = "<unk>"


class Vocab:
    """A bijection between strings and ids ``0..len-1``.

    ``specials`` come first (for words and characters: padding id 0, unknown id 1);
    a vocabulary with :data:`UNK` maps unseen strings to it, one without raises ``KeyError``.
    """

    def __init__(self, itos: Sequence[str], specials: Sequence[str] = ()) -> None:
        self.itos = list(itos)
        self.specials = tuple(specials)
        if list(self.specials) != self.itos[: len(self.specials)]:
            raise ValueError(f"expected the specials {self.specials} first, got {self.itos[:len(self.specials)]}")
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("expected distinct strings in a vocabulary")
        self.unk_id = self.stoi.get(UNK)

    @classmethod
    def build(
        cls,
        items: Iterable[str],
        specials: Sequence[str] = (),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocab:
        """Count ``items`` and keep those seen ``min_freq`` times or more, most frequent first
        (ties in first-seen order), at most ``max_size`` besides the specials."""
        return cls.from_counts(Counter(items), specials, min_freq, max_size)

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        specials: Sequence[str] = (),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocab:
        """As :meth:`build`, from counts already made; ties keep the mapping's order."""
        kept = [s for s, c in Counter(counts).most_common() if c >= min_freq and s not in specials]
        if max_size is not None:
            kept = kept[:max_size]
        return cls([*specials, *kept], specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, item: str) -> bool:
        return item in self.stoi

    def __getitem__(self, item: str) -> int:
        i = self.stoi.get(item, self.unk_id)
        if i is None:
            raise KeyError(item)
        return i

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos and self.specials == other.specials

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, specials={self.specials})"

    def encode(self, items: Iterable[str]) -> list[int]:
        return [self[s] for s in items]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict:
        return {"itos": self.itos, "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, d: dict, name: str = "vocabulary") -> Vocab:
        """Rebuild from :meth:`to_dict`'s output, read from a file: checked, so that a damaged or
        hand-edited file is refused here rather than tagged with wrongly.

        Raises:
            ValueError: ``expected NAME.FIELD ..., got ...``, naming the entry.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"expected {name} as an object with itos and specials, got {_kind(d)}")
        unknown = sorted(set(d) - {"itos", "specials"}, key=str)
        if unknown:
            raise ValueError(f"expected {name} to hold itos and specials, got unknown keys {unknown}")
        if "itos" not in d:
            raise ValueError(f"expected {name}.itos, the strings by id, got none")
        itos = check_strings(d["itos"], f"{name}.itos", distinct=False)  # distinct: checked by cls()
        specials = check_strings(d.get("specials", []), f"{name}.specials")
        if specials != itos[: len(specials)]:
            raise ValueError(f"expected {name}.itos to start with its specials {specials}, got {itos[: len(specials)]}")
        try:
            return cls(itos, specials)
        except ValueError:
            check_strings(itos, f"{name}.itos")  # names the string given twice
            raise


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def check_strings(value: object, name: str, distinct: bool = True) -> list[str]:
    """``value`` if it is a list of strings, distinct unless told otherwise (a JSON array of
    strings, as a vocabulary's ``itos`` or an export's ``tags``), read from a file.

    >>> check_strings(["O", 5], "tags")
    Traceback (most recent call last):
    ...
    ValueError: expected tags[1] a string, got 5

    Raises:
        ValueError: ``expected NAME ...``, naming the entry.
    """
    if not isinstance(value, list):
        raise ValueError(f"expected {name} as a list of strings, got {_kind(value)}")
    if not set(map(type, value)) <= {str}:  # passes in C: a vocabulary has 10^5 words or more
        i, s = next((i, s) for i, s in enumerate(value) if not isinstance(s, str))
        raise ValueError(f"expected {name}[{i}] a string, got {s!r}")
    if distinct and len(set(value)) != len(value):
        seen: set[str] = set()
        twice = next(s for s in value if s in seen or seen.add(s))
        raise ValueError(f"expected distinct strings in {name}, got {twice!r} twice")
    return value


def _lower_map(chars: Iterable[str]) -> dict[str, str]:
    """Per-character lowercasing restricted to ``chars``, their uppercase forms and ASCII.

    Eager prediction and the exported TorchScript tagger both lowercase through this table,
    so they agree on every input, including characters never seen in training.
    """
    table: dict[str, str] = {}
    seen = set(chars)  # read ``chars`` once: it may be a generator
    candidates = seen | {c.upper() for c in seen if len(c.upper()) == 1}
    candidates |= {chr(i) for i in range(65, 91)}
    for c in candidates:
        low = c.lower()
        if low != c and len(low) == 1:
            table[c] = low
    return dict(sorted(table.items()))


class Vocabularies:
    """The word, character and tag vocabularies of one tagger, plus its lowercasing table.

    Words and characters reserve id 0 for padding and id 1 for unknown; tags have no specials.
    ``word_counts[i]`` is the training frequency of word ``i`` (0 for specials and for words
    that come only from pretrained vectors).
    """

    def __init__(
        self,
        words: Vocab,
        chars: Vocab,
        tags: Vocab,
        lower_map: dict[str, str],
        word_counts: Sequence[int] | None = None,
    ) -> None:
        self.words, self.chars, self.tags, self.lower_map = words, chars, tags, lower_map
        self.word_counts = list(word_counts) if word_counts is not None else [0] * len(words)
        if len(self.word_counts) != len(words):
            raise ValueError("expected one word count per word")

    @classmethod
    def build(
        cls,
        sentences: Iterable,
        lowercase: bool = True,
        min_freq: int = 1,
        extra_words: Sequence[str] = (),
    ) -> Vocabularies:
        """Build from training sentences (objects with ``tokens`` and ``tags``), read once, so
        ``sentences`` may be a stream.

        ``extra_words`` (e.g. the words of pretrained vectors) are added after the training
        words, with count 0; they are normalized like the training words, since lookups are.
        """
        token_counts: Counter[str] = Counter()
        tags: set[str] = set()
        for s in sentences:
            token_counts.update(s.tokens)
            tags.update(s.tags)
        return cls.from_counts(token_counts, tags, lowercase, min_freq, extra_words)

    @classmethod
    def from_counts(
        cls,
        token_counts: Mapping[str, int],
        tags: Iterable[str],
        lowercase: bool = True,
        min_freq: int = 1,
        extra_words: Sequence[str] = (),
    ) -> Vocabularies:
        """As :meth:`build`, from the count of each distinct token in first-seen order (which
        breaks frequency ties) and the tag set: work in the number of distinct tokens, not in
        the corpus size (``hf.build_vocabs`` counts Arrow batches this way)."""
        extra_words = list(extra_words)
        char_counts: Counter[str] = Counter()
        for t, n in token_counts.items():  # distinct tokens in first-seen order: so are their characters
            for c in t:
                char_counts[c] += n
        chars = Vocab.from_counts(char_counts, specials=(PAD, UNK))
        # the vectors' characters join the lowercasing table (not the character vocabulary), so
        # that a vector word and a token spelled like it normalize alike
        lower_map = _lower_map(set(chars.itos[2:]) | {c for w in extra_words for c in w})
        table = lowercase_table(lower_map)
        norm = (lambda t: normalize(t, table)) if lowercase else (lambda t: t)
        counts: Counter[str] = Counter()
        for t, n in token_counts.items():
            counts[norm(t)] += n
        words = Vocab.from_counts(counts, specials=(PAD, UNK), min_freq=min_freq)
        seen = set(words.itos)
        extra = [w for w in dict.fromkeys(norm(w) for w in extra_words) if w not in seen]
        words = Vocab([*words.itos, *extra], words.specials)
        word_counts = [counts.get(w, 0) if i >= 2 else 0 for i, w in enumerate(words.itos)]
        tag_list = sorted(set(tags))
        return cls(words, chars, Vocab(tag_list), lower_map, word_counts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabularies) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict:
        return {
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "tags": self.tags.to_dict(),
            "lower_map": self.lower_map,
            "word_counts": self.word_counts,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Vocabularies:
        """Rebuild from :meth:`to_dict`'s output, read from a file (``vocab.json``, a checkpoint, a
        ``torch.export`` directory): every entry is checked against what :meth:`build` makes, so
        that a damaged or hand-edited file is refused in one line instead of loading and failing
        (or tagging wrongly) later. Words and characters start with the specials
        ``["<pad>", "<unk>"]`` (ids 0 and 1), tags have none; a character and each side of the
        lowercasing table is one code point; word counts are integers >= 0, one per word.

        Raises:
            ValueError: ``expected FIELD ..., got ...``, naming the entry (``tags.itos[3]``).
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"expected the vocabularies as an object, got {_kind(d)}")
        fields = ("words", "chars", "tags", "lower_map", "word_counts")
        unknown = sorted(set(d) - set(fields), key=str)
        missing = [f for f in fields[:4] if f not in d]
        if unknown or missing:
            got = f"unknown keys {unknown}" if unknown else f"no {', '.join(missing)}"
            raise ValueError(f"expected the vocabularies {', '.join(fields)}, got {got}")
        words, chars, tags = (Vocab.from_dict(d[f], f) for f in fields[:3])
        for name, vocab, specials in (("words", words, (PAD, UNK)), ("chars", chars, (PAD, UNK)), ("tags", tags, ())):
            if vocab.specials != specials:
                raise ValueError(f"expected {name}.specials {list(specials)}, got {list(vocab.specials)}")
        for i, c in enumerate(chars.itos[2:], start=2):
            if len(c) != 1:
                raise ValueError(f"expected chars.itos[{i}] one character, got {c!r}")
        if not tags.itos:
            raise ValueError("expected tags.itos to hold at least one tag, got none")
        lower_map = d["lower_map"]
        if not isinstance(lower_map, dict):
            raise ValueError(f"expected lower_map as an object of characters, got {_kind(lower_map)}")
        for k, v in lower_map.items():
            if not (isinstance(k, str) and isinstance(v, str) and len(k) == len(v) == 1):
                raise ValueError(f"expected lower_map to map one character to one character, got {k!r}: {v!r}")
        counts = d.get("word_counts")
        if counts is not None:
            if not isinstance(counts, list) or len(counts) != len(words):
                got = f"{len(counts)} counts" if isinstance(counts, list) else _kind(counts)
                raise ValueError(f"expected word_counts as a list of {len(words)} counts (one per word), got {got}")
            if not set(map(type, counts)) <= {int} or min(counts, default=0) < 0:
                i, n = next((i, n) for i, n in enumerate(counts) if type(n) is not int or n < 0)
                raise ValueError(f"expected word_counts[{i}] an integer >= 0, got {n!r}")
        return cls(words, chars, tags, dict(lower_map), counts)

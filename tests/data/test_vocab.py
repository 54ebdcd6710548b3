"""Vocabularies: build order against a brute-force oracle, unknown strings, JSON round trips,
the lowercasing table and the case feature."""

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtag.data.corpus import Sentence
from seqtag.data.encoding import Case, encode_token, lowercase_table
from seqtag.data.encoding import normalize as normalize_with
from seqtag.data.vocab import PAD, UNK, Vocab, Vocabularies, _lower_map

CASE_LOWER, CASE_TITLE, CASE_OTHER = Case.LOWER.value, Case.TITLE.value, Case.OTHER.value


def normalize(token: str, lower_map: dict) -> str:
    """The lowercasing rule with a vocabulary's ``lower_map``."""
    return normalize_with(token, lowercase_table(lower_map))


def case_id(token: str, normalized: str) -> int:
    """The case id the one string encoder gives ``token`` (``normalized`` checks the caller's
    expectation of its lowercased form)."""
    table = {c: n for c, n in zip(token, normalized)} if len(token) == len(normalized) else {}
    return encode_token(token, {}, {}, lowercase_table(table), True, 0, [])[1]

ASCII_UPPER = {chr(i) for i in range(ord("A"), ord("Z") + 1)}
# Training characters with awkward case mappings: German ß (uppercase "SS", two characters),
# Turkish İ (lowercase "i̇", two characters) and dotless ı, the titlecase digraph ǅ,
# the Kelvin sign, Greek and Cyrillic.
WIDE_TRAINING_TEXT = (
    "straße \u1e9e İzmir ılık \u01c5 \u212a Σοφία ελλάς Москва ёлка über École naïve ÆØÅ"
)

SENTENCES = [
    Sentence(
        ["The", "dog", "saw", "the", "über", "dog"], ["DET", "NOUN", "VERB", "DET", "ADJ", "NOUN"]
    ),
    Sentence(["École", "naïve", "THE", "Dog"], ["PROPN", "ADJ", "DET", "NOUN"]),
    Sentence(["a", "dog", "."], ["DET", "NOUN", "PUNCT"]),
]
TOKENS = [t for s in SENTENCES for t in s.tokens]


def _build_oracle(items, specials, min_freq, max_size):
    """Vocab.build by its definition: count, filter, sort by (-count, first position), cut."""
    counts = Counter(items)
    first = {}
    for i, s in enumerate(items):
        first.setdefault(s, i)
    kept = [s for s in counts if counts[s] >= min_freq and s not in specials]
    kept.sort(key=lambda s: (-counts[s], first[s]))
    return [*specials, *(kept if max_size is None else kept[:max_size])]


# ---------------------------------------------------------------- Vocab


@pytest.mark.parametrize(
    ("items", "specials", "min_freq", "max_size", "expected"),
    [
        ("b a b c a b d".split(), (PAD, UNK), 1, None, [PAD, UNK, "b", "a", "c", "d"]),
        ("b a b c a b d".split(), (PAD, UNK), 2, None, [PAD, UNK, "b", "a"]),
        ("b a b c a b d".split(), (PAD, UNK), 1, 1, [PAD, UNK, "b"]),
        ("b a b c a b d".split(), (PAD, UNK), 4, None, [PAD, UNK]),
        ("x y y x z".split(), (), 1, None, ["x", "y", "z"]),  # ties keep first-seen order
        ("x y y x z".split(), (UNK, PAD), 1, 2, [UNK, PAD, "x", "y"]),  # specials in given order
        ([UNK, "a", UNK, PAD], (PAD, UNK), 1, None, [PAD, UNK, "a"]),  # specials not repeated
        ([], (PAD, UNK), 1, None, [PAD, UNK]),
    ],
)
def test_build_examples(items, specials, min_freq, max_size, expected):
    assert Vocab.build(items, specials, min_freq, max_size).itos == expected
    assert _build_oracle(items, specials, min_freq, max_size) == expected


@settings(max_examples=150, deadline=None, database=None)
@given(
    items=st.lists(st.sampled_from(["a", "b", "c", "d", "e", PAD, UNK]), max_size=30),
    specials=st.sampled_from([(), (PAD,), (PAD, UNK), (UNK, PAD)]),
    min_freq=st.integers(1, 4),
    max_size=st.none() | st.integers(0, 6),
)
def test_build_matches_oracle(items, specials, min_freq, max_size):
    vocab = Vocab.build(iter(items), specials, min_freq, max_size)
    assert vocab.itos == _build_oracle(items, specials, min_freq, max_size)
    assert vocab.specials == specials
    assert [vocab.stoi[s] for s in vocab.itos] == list(range(len(vocab)))


def test_unknown_strings_map_to_unk():
    vocab = Vocab.build(["dog", "cat"], specials=(PAD, UNK))
    assert (vocab[PAD], vocab[UNK], vocab.unk_id) == (0, 1, 1)
    assert vocab["zebra"] == 1 and "zebra" not in vocab
    assert vocab.encode(["cat", "zebra", "dog"]) == [vocab["cat"], 1, vocab["dog"]]
    assert vocab.decode(vocab.encode(["cat", "dog"])) == ["cat", "dog"]


def test_vocab_without_unk_raises_key_error():
    tags = Vocab(["B-PER", "I-PER", "O"])
    assert tags.unk_id is None
    assert tags.encode(["O", "B-PER"]) == [2, 0]
    with pytest.raises(KeyError, match="B-LOC"):
        tags["B-LOC"]


@pytest.mark.parametrize(
    ("itos", "specials", "match"),
    [(["a", PAD, UNK], (PAD, UNK), "specials"), ([PAD, "a", "a"], (PAD,), "distinct")],
)
def test_vocab_rejects_bad_lists(itos, specials, match):
    with pytest.raises(ValueError, match=match):
        Vocab(itos, specials)


@pytest.mark.parametrize(
    "vocab",
    [
        Vocab.build("b a b c".split(), specials=(PAD, UNK)),
        Vocab(["B-PER", "I-PER", "O"]),
        Vocab([PAD, UNK, "Über", "見", "😀", ""], (PAD, UNK)),
    ],
    ids=["words", "tags", "unicode"],
)
def test_vocab_json_round_trip(vocab):
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab
    assert (again.itos, again.specials, again.unk_id) == (vocab.itos, vocab.specials, vocab.unk_id)
    probe = vocab.itos if vocab.unk_id is None else [*vocab.itos, "never seen"]
    assert again.encode(probe) == vocab.encode(probe)


def test_vocab_equality_compares_specials_and_order():
    vocab = Vocab([PAD, UNK, "a", "b"], (PAD, UNK))
    assert vocab != Vocab([PAD, UNK, "a", "b"], (PAD,))
    assert vocab != Vocab([PAD, UNK, "b", "a"], (PAD, UNK))
    assert vocab != vocab.itos


# ---------------------------------------------------------------- Vocabularies

BUILD_OPTIONS = [
    {"lowercase": True, "min_freq": 1, "extra_words": ()},
    {"lowercase": False, "min_freq": 1, "extra_words": ()},
    {"lowercase": True, "min_freq": 2, "extra_words": ()},
    # e.g. the words of cased pretrained vectors
    {
        "lowercase": True,
        "min_freq": 1,
        "extra_words": ["zebra", "The", "Zebra", UNK, "Yak", "ÉCOLE"],
    },
    {"lowercase": False, "min_freq": 1, "extra_words": ["The", "the", "yak", PAD]},
]


@pytest.mark.parametrize("options", BUILD_OPTIONS)
def test_vocabularies_json_round_trip(options):
    vocabs = Vocabularies.build(SENTENCES, **options)
    text = json.dumps(vocabs.to_dict())
    again = Vocabularies.from_dict(json.loads(text))
    assert again == vocabs
    assert json.dumps(again.to_dict()) == text
    for name in ("words", "chars", "tags"):
        assert getattr(again, name) == getattr(vocabs, name)
    assert (again.lower_map, again.word_counts) == (vocabs.lower_map, vocabs.word_counts)
    others = [Vocabularies.build(SENTENCES, **o) for o in BUILD_OPTIONS if o != options]
    assert all(other != vocabs for other in others)


@pytest.mark.parametrize("options", BUILD_OPTIONS)
def test_word_counts_align_with_itos(options):
    vocabs = Vocabularies.build(SENTENCES, **options)
    # The sample has no character whose lowercase is longer, so table lowercasing is str.lower.
    low = str.lower if options["lowercase"] else str
    counts = Counter(low(t) for t in TOKENS)
    trained = [w for w, c in counts.items() if c >= options["min_freq"]]
    extra = [
        w for w in dict.fromkeys(map(low, options["extra_words"])) if w not in {PAD, UNK, *trained}
    ]
    itos, n = vocabs.words.itos, len(trained)
    assert itos[:2] == [PAD, UNK] and vocabs.words.specials == (PAD, UNK)
    assert sorted(itos[2 : 2 + n]) == sorted(trained)
    assert itos[2 + n :] == extra  # appended once each, in the given order
    assert vocabs.word_counts == [0, 0, *(counts[w] for w in itos[2 : 2 + n]), *[0] * len(extra)]
    assert vocabs.word_counts[2 : 2 + n] == sorted(vocabs.word_counts[2 : 2 + n], reverse=True)


@pytest.mark.parametrize("options", BUILD_OPTIONS)
def test_every_word_is_reachable(options):
    # Lookups normalize tokens when lowercasing, so a word stored in another case (say a cased
    # pretrained vector's "Zebra") could never be looked up: an embedding row wasted.
    vocabs = Vocabularies.build(SENTENCES, **options)
    lookup = (lambda t: normalize(t, vocabs.lower_map)) if options["lowercase"] else str
    for i, w in enumerate(vocabs.words.itos[2:], start=2):
        assert vocabs.words[lookup(w)] == i
    for w in options["extra_words"]:
        assert vocabs.words[lookup(w)] != vocabs.words[UNK] or w == UNK


def test_word_counts_default_and_mismatch():
    words = Vocab([PAD, UNK, "a"], (PAD, UNK))
    chars = Vocab([PAD, UNK, "a"], (PAD, UNK))
    assert Vocabularies(words, chars, Vocab(["X"]), {}).word_counts == [0, 0, 0]
    with pytest.raises(ValueError, match="one word count per word"):
        Vocabularies(words, chars, Vocab(["X"]), {}, [0, 1])


def test_vocabularies_build_contents():
    vocabs = Vocabularies.build(SENTENCES, lowercase=True)
    assert vocabs.tags.itos == sorted({t for s in SENTENCES for t in s.tags})
    assert vocabs.tags.unk_id is None
    assert set(vocabs.chars.itos[2:]) == set("".join(TOKENS))  # characters of the raw tokens
    assert vocabs.words["THE"] == vocabs.words[UNK]  # lookups take normalized words
    assert vocabs.words.itos[2:4] == [
        "dog",
        "the",
    ]  # 4 times "dog"/"Dog", 3 times "The"/"the"/"THE"
    assert vocabs.word_counts[2:4] == [4, 3]


# ---------------------------------------------------------------- lowercasing


def test_lower_map_covers_training_characters_their_uppercase_and_ascii():
    chars = set(WIDE_TRAINING_TEXT)
    table = Vocabularies.build([Sentence([WIDE_TRAINING_TEXT], ["X"])]).lower_map
    candidates = chars | {c.upper() for c in chars if len(c.upper()) == 1} | ASCII_UPPER
    assert table == {c: c.lower() for c in candidates if c.lower() != c and len(c.lower()) == 1}
    assert {"Ü", "É", "Ï", "Σ", "М", "Ё", "\u1e9e", "\u212a", "\u01c5", "\u01c4"} <= table.keys()
    assert "İ" not in table  # its lowercase is two characters
    assert _lower_map(iter(chars)) == _lower_map(sorted(chars)) == table  # any iterable


NORMALIZE_CASES = [
    # token, normalized, case feature; table built from "über École naïve"
    ("dog", "dog", CASE_LOWER),
    ("Dog", "dog", CASE_TITLE),
    ("DOG", "dog", CASE_OTHER),
    ("iPhone", "iphone", CASE_OTHER),
    ("42", "42", CASE_LOWER),
    ("A", "a", CASE_TITLE),
    ("", "", CASE_LOWER),
    ("Über", "über", CASE_TITLE),  # Ü: uppercase form of a training character
    ("ÜBER", "über", CASE_OTHER),
    ("ÉCOLE", "école", CASE_OTHER),  # É: itself a training character
    ("naïve", "naïve", CASE_LOWER),
    ("NAÏVE", "naïve", CASE_OTHER),
    ("İstanbul", "İstanbul", CASE_LOWER),  # İ is never in the table: its lowercase is 2 characters
    ("ĞAZ", "Ğaz", CASE_OTHER),  # unseen Ğ stays, ASCII is lowercased
    ("Ğaz", "Ğaz", CASE_LOWER),
    ("ΣΟΦΙΑ", "ΣΟΦΙΑ", CASE_LOWER),  # unseen Greek stays as it is
    ("STRASSE", "strasse", CASE_OTHER),
]


@pytest.mark.parametrize(("token", "normalized", "case"), NORMALIZE_CASES)
def test_normalize_and_case_id(token, normalized, case):
    table = Vocabularies.build([Sentence(["über", "École", "naïve"], ["X", "X", "X"])]).lower_map
    assert normalize(token, table) == normalized
    assert case_id(token, normalized) == case


WIDE_TABLE = _lower_map(set(WIDE_TRAINING_TEXT))
TABLE_CHARACTERS = sorted(
    set(WIDE_TABLE) | set(WIDE_TABLE.values()) | set(WIDE_TRAINING_TEXT) | {"İ", "7", "-"}
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from(TABLE_CHARACTERS), max_size=20))
def test_normalize_is_per_character_and_idempotent(token):
    normalized = normalize(token, WIDE_TABLE)
    assert len(normalized) == len(token)
    assert normalized == "".join(WIDE_TABLE.get(c, c) for c in token)
    assert normalize(normalized, WIDE_TABLE) == normalized
    assert (case_id(token, normalized) == CASE_LOWER) == (normalized == token)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=20))
def test_ascii_shortcut_agrees_with_the_table(token):
    # normalize() lowercases ASCII tokens with str.lower; the exported tagger uses the table.
    assert normalize(token, WIDE_TABLE) == "".join(WIDE_TABLE.get(c, c) for c in token)

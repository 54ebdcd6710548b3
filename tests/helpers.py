"""Small builders shared by the tests."""

import random
import string

import seqtag
from seqtag import Sentence, Tagger, TaggerConfig, TrainConfig, Vocabularies

TINY = dict(embedding_dim=8, hidden_dim=7, char_embedding_dim=5, char_filters=6, dropout=0.0)
# architectures that cover every part: uni/bidirectional, 1/2 layers, softmax/CRF, with and
# without the character CNN and the case embedding
ARCHS = [
    dict(bidirectional=False, num_layers=1, crf=False, char_filters=0, case_embedding_dim=0),
    dict(bidirectional=True, num_layers=1, crf=False, char_filters=0),
    dict(bidirectional=False, num_layers=2, crf=False, char_filters=0),
    dict(bidirectional=True, num_layers=2, crf=True, char_filters=6),
]
ODD_TOKENS = [
    "Über", "ÉCOLE", "naïve", "NAÏVE", "日本", "東京タワー", "🙂", "👍🏽", "e\u0301",  # combining accent
    "İstanbul", "ß", "ΣΊΣΥΦΟΣ", "Ωmega", "¢5", "x" * 45, "Ü" * 40, "日" * 33, "", "qqzzxq", "ÜBER", "<pad>", "<PAD>",
]


def random_sentences(n: int, min_len: int = 1, max_len: int = 12, tags=("A", "B", "C"), seed: int = 0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        tokens = [
            "".join(rng.choice(string.ascii_letters + "éÜ") for _ in range(rng.randint(1, 9))) for _ in range(length)
        ]
        out.append(Sentence(tokens, [rng.choice(tags) for _ in range(length)]))
    return out


def small_tagger(sentences, **config) -> Tagger:
    defaults = dict(embedding_dim=8, hidden_dim=7, char_embedding_dim=5, char_filters=6, dropout=0.0)
    defaults.update(config)
    cfg = TaggerConfig(**defaults)
    return Tagger(cfg, Vocabularies.build(sentences, lowercase=cfg.lowercase)).eval()


def emissions_of(tagger: Tagger, sentences):
    """``(emissions, batch)``: the tagger's emissions for ``sentences`` collated as in training."""
    import torch

    from seqtag.data.dataset import collate, encode_tokens

    batch = collate([encode_tokens(s.tokens, tagger.vocabs, tagger.config) for s in sentences])
    with torch.no_grad():
        return tagger(batch.words, batch.cases, batch.chars, batch.lengths), batch


def bio_sentences(n: int, seed: int) -> list[Sentence]:
    """Random tokens; a run of capitalized tokens is an entity (type by its first token's length)."""
    out = []
    for s in random_sentences(n, max_len=12, seed=seed):
        tags, kind = [], None
        for token in s.tokens:
            if token[0].isupper():
                if kind is None:
                    kind = "PER" if len(token) % 2 else "LOC"
                    tags.append("B-" + kind)
                else:
                    tags.append("I-" + kind)
            else:
                kind = None
                tags.append("O")
        out.append(Sentence(s.tokens, tags))
    return out


def trained_tagger(sentences, **config):
    """A :data:`TINY` tagger (``config`` overrides) trained 2 epochs on ``sentences``, seed 3."""
    cfg = TaggerConfig(**{**TINY, **config})
    tc = TrainConfig(epochs=2, batch_size=8, device="cpu", seed=3)
    return seqtag.train(sentences, config=cfg, train_config=tc, quiet=True)


def odd_sentences(tagger, seed: int = 0) -> list[list[str]]:
    """Known words in several casings, unknown and non-ASCII words, long words, 1 and 500 tokens."""
    rng = random.Random(seed)
    known = tagger.vocabs.words.itos[2:]
    variants = [str.lower, str.upper, str.title, lambda w: w]

    def token():
        r = rng.random()
        if r < 0.6:
            return rng.choice(variants)(rng.choice(known))
        if r < 0.8:
            return rng.choice(ODD_TOKENS)
        return "".join(rng.choice("abcXYZéÜ日🙂") for _ in range(rng.randint(1, 40)))

    sentences = [[token() for _ in range(rng.randint(1, 20))] for _ in range(60)]
    return [ODD_TOKENS, ["Über"], *sentences[:30], [], [token() for _ in range(500)], *sentences[30:], ["x"]]


def reference_ids(tokens, vocabs, config):
    """The ids of one sentence by the rules docs/serving.md states, written independently of
    seqtag.data.encoding (the oracle of the string encoder): ``(words, cases, chars)``, chars
    ``(n, w)`` padded with 0, ``w`` the longest word capped at ``max_word_length``."""
    import numpy as np

    table = dict(vocabs.lower_map)
    table.update({chr(c): chr(c + 32) for c in range(65, 91)})
    words, cases, chars = [], [], []
    for token in tokens:
        lowered = [table.get(c, c) for c in token]  # per code point (printable ASCII: str.lower alike)
        normalized = "".join(lowered)
        word = vocabs.words.stoi.get(normalized if config.lowercase else token, 1)
        words.append(1 if word == 0 else word)  # the text "<pad>" is an unknown word
        if normalized == token:
            cases.append(1)
        elif lowered[1:] == list(token[1:]):
            cases.append(2)
        else:
            cases.append(3)
        chars.append([vocabs.chars.stoi.get(c, 1) for c in token[: config.max_word_length]] if config.char_filters else [])
    width = max((len(c) for c in chars), default=0)
    padded = np.zeros((len(tokens), width), dtype=np.int64)
    for i, c in enumerate(chars):
        padded[i, : len(c)] = c
    return np.asarray(words, dtype=np.int64), np.asarray(cases, dtype=np.int64), padded

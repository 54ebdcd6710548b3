"""Small builders shared by the tests."""

import random
import string

from seqtag import Sentence, Tagger, TaggerConfig, Vocabularies


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

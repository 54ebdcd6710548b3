"""seqtag.heads: the softmax and CRF heads behind one interface (loss, decode, marginals, n-best)."""

import torch

from .helpers import emissions_of, random_sentences, small_tagger


def test_loss_ignores_padding():
    sentences = random_sentences(5, max_len=10)
    tagger = small_tagger(sentences, crf=False, char_filters=0)
    emissions, batch = emissions_of(tagger, sentences)
    loss = tagger.loss(emissions, batch.tags, batch.lengths)
    manual = torch.cat(
        [torch.nn.functional.cross_entropy(emissions[i, :n], batch.tags[i, :n], reduction="none")
         for i, n in enumerate(batch.lengths.tolist())]
    ).mean()
    torch.testing.assert_close(loss, manual)


"""seqtag.model.heads: the softmax and CRF heads behind one interface (loss, decode, marginals, n-best)."""

import itertools

import pytest
import torch

from seqtag.model.heads import CRFHead, SoftmaxHead

from ..helpers import emissions_of, random_sentences, small_tagger


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


@pytest.mark.parametrize("head_class", [SoftmaxHead, CRFHead], ids=["softmax", "crf"])
def test_every_head_answers_the_four_calls_with_the_same_types(head_class):
    """One return type per method name, whatever the head: the loss a scalar, ``decode`` a
    ``(B, T)`` tensor of ids (0 at padding), ``marginals`` ``(B, T, K)`` rows summing to 1 (0 at
    padding), ``nbest`` ``(B, k, T)`` paths and ``(B, k)`` log-probabilities, its first path
    ``decode``'s."""
    torch.manual_seed(0)
    head = head_class(4)
    emissions = torch.randn(3, 5, 4) * 3
    mask = torch.arange(5).unsqueeze(0) < torch.tensor([[5], [3], [1]])
    tags = torch.randint(0, 4, (3, 5))
    loss = head.loss(emissions, tags, mask)
    assert loss.shape == () and torch.isfinite(loss)
    paths = head.decode(emissions, mask)
    assert isinstance(paths, torch.Tensor) and paths.shape == (3, 5) and paths.dtype == torch.long
    assert not paths[~mask].any()
    probs = head.marginals(emissions, mask)
    assert probs.shape == (3, 5, 4)
    torch.testing.assert_close(probs.sum(2)[mask], torch.ones(int(mask.sum())))
    assert not probs[~mask].any()
    best, scores = head.nbest(emissions, mask, 3)
    assert best.shape == (3, 3, 5) and scores.shape == (3, 3)
    assert torch.equal(best[:, 0], paths)
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_softmax_nbest_and_marginals_equal_brute_force():
    """Under independent softmaxes a sequence's log-probability is the sum of its tokens'; the
    k best are the top k of all ``K ** n`` sequences."""
    torch.manual_seed(1)
    head = SoftmaxHead(3)
    emissions = torch.randn(2, 4, 3) * 2
    mask = torch.arange(4).unsqueeze(0) < torch.tensor([[4], [2]])
    best, scores = head.nbest(emissions, mask, 5)
    log_probs = emissions.double().log_softmax(2)
    for b, n in enumerate(mask.sum(1).tolist()):
        ranked = sorted(((sum(float(log_probs[b, t, s]) for t, s in enumerate(seq)), seq)
                         for seq in itertools.product(range(3), repeat=n)), key=lambda x: -x[0])[:5]  # fmt: skip
        torch.testing.assert_close(scores[b].double(), torch.tensor([s for s, _ in ranked], dtype=torch.float64),
                                   atol=1e-5, rtol=0)  # fmt: skip
        assert [tuple(p[:n]) for p in best[b].tolist()] == [seq for _, seq in ranked]
    torch.testing.assert_close(head.marginals(emissions, mask)[mask], emissions.softmax(2)[mask])

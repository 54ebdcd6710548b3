"""seqtag.model.layers: the two LSTM paths agree in scores and gradients, reverse_padded, the character
CNN, the CPU dropout, the choice of LSTM path."""

import pytest
import torch
import torch.nn.functional as F

from seqtag.data.dataset import collate, encode_tokens
from seqtag.model.layers import PackedLSTM, PaddedLSTM, reverse_padded

from ..helpers import ARCHS, random_sentences, small_tagger


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_packed_and_padded_agree_in_scores_and_gradients(arch):
    sentences = random_sentences(8, max_len=14)
    tagger = small_tagger(sentences, **arch)
    batch = collate([encode_tokens(s.tokens, tagger.vocabs, tagger.config) for s in sentences])
    results = []
    for path in (PackedLSTM, PaddedLSTM):
        tagger.rnn = path(tagger.lstm)
        tagger.zero_grad()
        emissions = tagger(batch.words, batch.cases, batch.chars, batch.lengths)
        tags = torch.randint(0, tagger.num_tags, batch.words.shape, generator=torch.Generator().manual_seed(1))
        tagger.loss(emissions, tags, batch.lengths).backward()
        grads = [p.grad.clone() for p in tagger.lstm.parameters()]
        results.append((emissions.detach(), grads))
    mask = torch.arange(batch.words.size(1))[None, :] < batch.lengths[:, None]
    torch.testing.assert_close(results[0][0][mask], results[1][0][mask], atol=1e-6, rtol=1e-5)
    for g_packed, g_padded in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g_packed, g_padded, atol=1e-6, rtol=1e-4)


def test_reverse_padded_reverses_within_length_and_is_an_involution():
    x = torch.arange(12.0).reshape(2, 6, 1)
    lengths = torch.tensor([4, 6])
    r = reverse_padded(x, lengths)
    assert r[0, :, 0].tolist() == [3, 2, 1, 0, 4, 5]
    assert r[1, :, 0].tolist() == [11, 10, 9, 8, 7, 6]
    torch.testing.assert_close(reverse_padded(r, lengths), x)


def test_char_cnn_gives_unknown_words_distinct_vectors():
    sentences = random_sentences(4)
    tagger = small_tagger(sentences, char_filters=6)
    enc = encode_tokens(["zzqx", "qqxz"], tagger.vocabs, tagger.config)
    assert enc.words.tolist() == [1, 1]  # both unknown words
    chars = torch.from_numpy(enc.chars)[None]
    vectors = tagger.char_cnn(chars)[0]
    assert not torch.allclose(vectors[0], vectors[1])


def test_cpu_dropout_keeps_the_expected_fraction_and_scale():
    from seqtag.model.layers import dropout

    x = torch.ones(200_000)
    y = dropout(x, 0.33, True)
    assert abs((y == 0).float().mean().item() - 84 / 256) < 0.01  # p rounded to 84/256
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(dropout(x, 0.33, False), x)


def test_rnn_mode_resolves_in_one_place():
    from seqtag.model.layers import resolve_rnn_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_rnn_mode(m, cpu) for m in ("auto", "packed", "padded")] == ["padded", "packed", "padded"]
    assert [resolve_rnn_mode(m, cuda) for m in ("auto", "packed", "padded")] == ["packed", "packed", "padded"]
    assert resolve_rnn_mode("packed", cpu, exporting=True) == "padded"
    tagger = small_tagger(random_sentences(3), rnn_mode="auto")
    assert isinstance(tagger.rnn, PaddedLSTM)
    tagger.set_rnn_mode(cuda)  # only chooses the path; nothing moves
    assert isinstance(tagger.rnn, PackedLSTM)
    assert not list(tagger.rnn.parameters())  # the weights stay in tagger.lstm


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_char_cnn_equals_the_convolution_it_computes(kernel):
    """Both paths (the product over every slot, and the CPU path over the real characters) are
    Ma & Hovy's convolution: ``F.conv1d`` with ``padding=kernel // 2`` over the embedded
    characters, then the max over each word's own characters (float64, words of every length,
    one all-padding word), in values and gradients."""
    from seqtag.model.layers import CharCNN

    torch.manual_seed(kernel)
    cnn = CharCNN(30, 6, 7, kernel).double()
    chars = torch.randint(1, 30, (9, 11))
    for i, n in enumerate([1, 2, 3, 5, 8, 9, 11, 4, 0]):
        chars[i, n:] = 0
    x = F.conv1d(cnn.embedding(chars).transpose(1, 2), cnn.conv.weight, cnn.conv.bias, padding=kernel // 2)
    expected = torch.stack([x[i, :, :n].amax(dim=1) if n else torch.zeros(7, dtype=torch.float64)
                            for i, n in enumerate((chars != 0).sum(1).tolist())])  # fmt: skip
    upstream = torch.randn(9, 7, dtype=torch.float64)
    params = [cnn.embedding.weight, cnn.conv.weight, cnn.conv.bias]
    want = torch.autograd.grad((expected * upstream).sum(), params)
    for dense in (True, False):
        cnn.dense = dense
        got = cnn(chars.view(3, 3, 11)).view(9, 7)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
        # and the same gradients (the bias enters after the max: each word's max position takes it)
        for g, w in zip(torch.autograd.grad((got * upstream).sum(), params), want):
            torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
    torch.testing.assert_close(cnn.encode_characters(chars), cnn.encode_words(chars), atol=1e-12, rtol=0)


def test_char_cnn_paths_agree_on_degenerate_batches():
    """One-character words, a batch of padding words only, a word filling the whole width and
    words of one repeated character (equal windows: ties at the max, whose gradient both paths
    split evenly) give the same vectors and gradients on both paths, zeros where a word has no
    characters."""
    from seqtag.model.layers import CharCNN

    torch.manual_seed(0)
    cnn = CharCNN(20, 4, 5, 3).double()
    repeated = torch.tensor([[[7, 7, 7, 7, 7, 0], [3, 3, 3, 0, 0, 0], [5, 9, 5, 9, 5, 9]]])
    batches = (torch.randint(1, 20, (2, 3, 1)), torch.zeros(2, 3, 4, dtype=torch.long), torch.randint(1, 20, (1, 1, 6)), repeated)
    params = list(cnn.parameters())
    for chars in batches:
        upstream = torch.randn(*chars.shape[:2], 5, dtype=torch.float64)
        results = []
        for dense in (False, True):
            cnn.dense = dense
            out = cnn(chars)
            results.append((out, torch.autograd.grad((out * upstream).sum(), params, allow_unused=True)))
        (out, grads), (dense_out, dense_grads) = results
        torch.testing.assert_close(out, dense_out, atol=1e-12, rtol=0)
        for g, d in zip(grads, dense_grads):
            torch.testing.assert_close(g, d, atol=1e-12, rtol=0)
        assert out.shape == (*chars.shape[:2], 5)
        assert torch.equal(out[(chars != 0).sum(2) == 0], torch.zeros_like(out[(chars != 0).sum(2) == 0]))
    cnn.dense = False

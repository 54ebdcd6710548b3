"""The PyTorch LSTM tutorial, reproduced with seqtag's batched machinery."""

import seqtag
from seqtag.data.tutorial import TUTORIAL_MODEL, TUTORIAL_TRAINING, sonnet_corpus, tutorial_corpus


def test_tutorial_tagger_learns_the_two_sentences():
    corpus = tutorial_corpus()
    tagger = seqtag.train(corpus, config=TUTORIAL_MODEL, train_config=TUTORIAL_TRAINING, quiet=True)
    assert tagger.predict([s.tokens for s in corpus]) == [
        ["DET", "NN", "V", "DET", "NN"],
        ["NN", "V", "DET", "NN"],
    ]


def test_sonnet_next_word_loss_falls_every_epoch(tmp_path):
    corpus = sonnet_corpus()
    assert sum(len(s) for s in corpus) == 115  # the tutorial's test_sentence has 115 words
    config = TUTORIAL_MODEL.replace(embedding_dim=10, hidden_dim=32)
    train_config = TUTORIAL_TRAINING.replace(epochs=10, batch_size=4, optimizer="adam", lr=0.01)
    seqtag.train(corpus, config=config, train_config=train_config, output_dir=tmp_path, quiet=True)
    import json

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows]
    assert len(losses) == 10
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_demo_prints_the_tagged_sentence(capsys):
    from io import StringIO

    from seqtag.cli.demo import demo

    out = StringIO()
    demo(out)
    lines = out.getvalue().splitlines()
    assert lines.count("  The/DET dog/NN ate/V the/DET apple/NN") == 2

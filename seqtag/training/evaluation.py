"""Scoring a tagger on gold-tagged data: token accuracy, and span precision/recall/F1 for span
tag sets (BIO, IOB1, BIOES; conlleval semantics)."""

from __future__ import annotations

from collections.abc import Sequence

from seqtag.config import DEFAULT_BATCH_SIZE
from seqtag.data.corpus import Sentence
from seqtag.data.dataset import EncodedDataset, check_encoding, check_tags
from seqtag.data.encoding import check_batch_size, check_tagged
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.metrics import span_f1, token_accuracy
from seqtag.model.tagger import Tagger


def map_unknown_tags(sentences: Sequence, vocabs: Vocabularies) -> tuple[list[Sentence], dict[str, int]]:
    """Replace gold tags that ``vocabs`` lacks by ``"O"``.

    Returns:
        The sentences (new objects where a tag changed) and how many tokens each unknown tag had.

    Raises:
        SeqtagError: if some tag is unknown and the model has no ``"O"`` tag.
    """
    known = vocabs.tags.stoi
    counts: dict[str, int] = {}
    out = []
    for s in sentences:
        if all(t in known for t in s.tags):
            out.append(s)
            continue
        for t in s.tags:
            if t not in known:
                counts[t] = counts.get(t, 0) + 1
        out.append(Sentence(list(s.tokens), [t if t in known else "O" for t in s.tags], list(s.comments)))
    if counts and "O" not in known:
        shown = ", ".join(sorted(counts)[:20])
        raise SeqtagError(
            f"the evaluation data has {len(counts)} tag(s) the model was not trained with ({shown}) "
            f"and the model has no 'O' tag to map them to"
        )
    return out, counts


def evaluate(
    tagger: Tagger, sentences: Sequence, batch_size: int = DEFAULT_BATCH_SIZE, unknown_tags: str = "error",
    precision: str = "fp32",
) -> dict:
    """Score ``tagger`` on gold-tagged ``sentences``.

    Args:
        tagger: the model.
        sentences: gold-tagged sentences, or an encoded dataset (:class:`~seqtag.data.dataset.EncodedDataset`:
            a ``TaggingDataset`` or ``arrow.ArrowTaggingDataset`` made with the model's vocabularies).
        batch_size: sentences per forward pass.
        unknown_tags: ``"error"``: gold tags the model lacks are an error; ``"map-to-O"``: they
            are scored as ``"O"`` (for span tag sets: such a chunk counts as missed).
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (as :meth:`Tagger.predict <seqtag.model.tagger.Tagger.predict>`).

    Returns:
        ``accuracy``, ``tokens``, ``sentences``; for span tag sets (BIO, IOB1, BIOES) also
        ``precision``, ``recall``, ``f1`` (conlleval semantics) and ``per_type``; with
        ``unknown_tags="map-to-O"`` also ``unknown_tags``: how many tokens each mapped tag had.

    Raises:
        SeqtagError: if the gold data has tags the model was not trained with (listing them).
        TypeError: a ``tagger`` that is not a :class:`~seqtag.model.tagger.Tagger`, ``sentences``
            that are not gold-tagged sentences (:func:`~seqtag.data.encoding.check_tagged`).
        ValueError: no sentences, a ``batch_size`` that is not an int >= 1, another ``unknown_tags``.
    """
    if not isinstance(tagger, Tagger):
        raise TypeError(f"expected tagger a seqtag.Tagger (seqtag.load(directory) reads one), got a {type(tagger).__name__}")
    if not isinstance(sentences, EncodedDataset):
        sentences = check_tagged(sentences, "sentences")
    check_batch_size(batch_size)
    if len(sentences) == 0:
        raise ValueError("expected at least one sentence to evaluate, got none")
    if unknown_tags not in ("error", "map-to-O"):
        raise ValueError(f"expected unknown_tags 'error' or 'map-to-O', got {unknown_tags!r}")
    dataset = sentences if isinstance(sentences, EncodedDataset) else None
    known = tagger.vocabs.tags.stoi
    mapped: dict[str, int] = {}
    if dataset is not None:
        check_encoding(dataset, tagger.vocabs, tagger.config, "the evaluation dataset")
    else:
        if unknown_tags == "map-to-O":
            sentences, mapped = map_unknown_tags(sentences, tagger.vocabs)
        try:
            check_tags(sentences, tagger.vocabs, "the evaluation data")
        except SeqtagError as e:
            hint = "; score them as O with --unknown-tags map-to-O (unknown_tags='map-to-O')" if "O" in known else ""
            raise SeqtagError(f"{e}{hint}") from None
        dataset = tagger.dataset(sentences)
    pred_ids = tagger.decode_encoded(dataset, batch_size, precision=precision)
    itos = tagger.vocabs.tags.itos
    gold = [[itos[i] for i in e.tags.tolist()] for e in dataset]
    pred = [[itos[i] for i in p] for p in pred_ids]
    tokens = int(dataset.lengths.sum())
    result: dict = {
        "accuracy": token_accuracy(gold, pred) if tokens else 0.0,
        "tokens": tokens,
        "sentences": len(dataset),
    }
    if tagger.tag_scheme != "none":
        report = span_f1(gold, pred)
        result.update(
            precision=report.micro.precision,
            recall=report.micro.recall,
            f1=report.micro.f1,
            per_type=report.as_dict()["per_type"],
        )
    if unknown_tags == "map-to-O":
        result["unknown_tags"] = mapped
    return result

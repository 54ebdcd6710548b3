"""flair's SequenceTagger: one-hot word embeddings (``OneHotEmbeddings.from_corpus``: words seen
at least 3 times, 300 dimensions) stacked with character embeddings (flair's character BiLSTM,
25 + 25, over a character dictionary built from the training set: the default one is a
download), a BiLSTM of 256 per direction and a CRF — flair's defaults otherwise (word dropout
0.05, locked dropout 0.5), trained by ``ModelTrainer.train`` with its defaults: SGD, learning
rate 0.1, batch 32, halved after 3 epochs without dev gain, stopping below 1e-4 (its own early
stopping) or after 100 epochs, best epoch by dev micro-F1 (= accuracy for one tag per token);
``embeddings_storage_mode="none"`` (see ``main``).

The dev curve is flair's own per-epoch dev evaluation, read by a trainer plugin, which also
times the training batches and stops at the time cap by flair's ``TrainingInterrupt`` (flair
then finishes as after its own early stopping). The weights of the ``best-model.pt`` that flair
saves tag dev and test.
"""

from __future__ import annotations

import time
from pathlib import Path

import flair
import torch
from flair.data import Corpus, Dictionary, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import CharacterEmbeddings, OneHotEmbeddings, StackedEmbeddings
from flair.models import SequenceTagger
from flair.trainers import ModelTrainer
from flair.trainers.plugins.base import TrainerPlugin, TrainingInterrupt
from protocol import elapsed, load_job, read_split, time_inference, write_predictions, write_result

TAG = "upos"


class Recorder(TrainerPlugin):
    """Times the training batches, records each dev evaluation, stops at the time cap."""

    def __init__(self, max_train_seconds: float | None) -> None:
        super().__init__()
        self.max_train_seconds = max_train_seconds
        self.curve: list[dict] = []
        self.train_loop_seconds, self.train_tokens, self.capped = 0.0, 0, False
        self.mark = time.perf_counter()

    @TrainerPlugin.hook
    def before_training_epoch(self, **kw) -> None:
        self.mark = time.perf_counter()

    @TrainerPlugin.hook
    def after_training_batch(self, batch, **kw) -> None:
        now = time.perf_counter()
        self.train_loop_seconds += now - self.mark
        self.train_tokens += sum(len(s) for s in batch)
        if self.max_train_seconds and elapsed() >= self.max_train_seconds:
            self.capped = True
            raise TrainingInterrupt("time cap reached")
        self.mark = time.perf_counter()

    @TrainerPlugin.hook
    def after_evaluation(self, epoch, validation_scores, **kw) -> None:
        self.curve.append({"t": elapsed(), "epoch": epoch, "dev_accuracy": float(validation_scores[0])})


def to_sentence(item: dict) -> Sentence:
    sentence = Sentence(item["tokens"])
    for token, tag in zip(sentence, item["tags"]):
        token.add_label(TAG, tag)
    return sentence


def main() -> None:
    job = load_job()
    torch.set_num_threads(job["threads"])
    flair.device = torch.device("cpu")
    flair.set_seed(job["seed"])
    out = Path(job["out"])
    train, dev, test = (read_split(job["data"][k]) for k in ("train", "dev", "test"))
    corpus = Corpus(train=FlairDatapointDataset([to_sentence(s) for s in train]),
                    dev=FlairDatapointDataset([to_sentence(s) for s in dev]), sample_missing_splits=False)
    characters = Dictionary()
    for s in train:
        for token in s["tokens"]:
            for char in token:
                characters.add_item(char)
    embeddings = StackedEmbeddings([OneHotEmbeddings.from_corpus(corpus), CharacterEmbeddings(characters)])
    tagger = SequenceTagger(hidden_size=256, embeddings=embeddings,
                            tag_dictionary=corpus.make_label_dictionary(TAG, add_unk=False),
                            tag_type=TAG, use_crf=True)
    recorder = Recorder(job["max_train_seconds"])
    trainer = ModelTrainer(tagger, corpus)
    # embeddings_storage_mode "none": flair drops the embeddings that require gradients after
    # each batch, but with the default "cpu" those computed under no_grad in a dev evaluation stay
    # on the dev sentences and the next evaluation reuses them, so that each later dev score (and
    # the choice of the best epoch) would come from the first epoch's embedding layers.
    trainer.train(out / "model", plugins=[recorder], embeddings_storage_mode="none")
    train_end = elapsed()
    epochs = recorder.curve[-1]["epoch"] if recorder.curve else 0
    stopped = "time cap" if recorder.capped else "maximum epochs" if epochs >= 100 else "own early stopping"

    # The saved best model's weights, loaded into the trained model object as flair's trainer
    # does (ModelTrainer._load_model). A model from SequenceTagger.load alone tags wrongly in
    # flair 0.15.1: OneHotEmbeddings comes back without the "0-" name prefix that
    # StackedEmbeddings gave it, and tokens concatenate their embeddings sorted by name, so the
    # character part comes first and the reprojection layer sees its inputs swapped.
    start = elapsed()
    best = out / "model" / "best-model.pt"
    model = tagger
    model.load_state_dict(SequenceTagger.load(best if best.exists() else out / "model" / "final-model.pt").state_dict())
    model.eval()
    load_seconds = elapsed() - start

    def tag(sentences):
        flair_sentences = [Sentence(words) for words in sentences]
        model.predict(flair_sentences)
        return [[token.get_label(TAG).value for token in s] for s in flair_sentences]

    write_predictions(job, "dev", tag([s["tokens"] for s in dev]))
    predictions, timing = time_inference(tag, [s["tokens"] for s in test], job["infer_repeats"])
    write_predictions(job, "test", predictions)
    write_result(job, {
        "version": flair.__version__, "torch": torch.__version__, "curve": recorder.curve, "stopped": stopped,
        "train_end": train_end, "epochs": epochs, "train_tokens": recorder.train_tokens,
        "train_loop_seconds": recorder.train_loop_seconds, "load_seconds": load_seconds,
        "inference": timing | {"batch_size": 32},
        "config": {"model": str(model), "trainer": "ModelTrainer.train defaults"},
    })


if __name__ == "__main__":
    main()

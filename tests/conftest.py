import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

CORPORA = Path(os.environ.get("SEQTAG_CORPORA", Path(__file__).resolve().parents[1].parent / "shared" / "corpora"))
EWT = CORPORA / "ud_english_ewt"
WNUT = CORPORA / "wnut17"

# The test models are tiny: one intra-op thread is faster than two and cannot be slowed
# down by oversubscription when something else runs on the machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def ewt_dir():
    if not (EWT / "en_ewt-ud-train.conllu").exists():
        pytest.skip(f"UD English-EWT not found at {EWT} (set SEQTAG_CORPORA to the corpora folder)")
    return EWT


@pytest.fixture
def wnut_dir():
    if not (WNUT / "train.conll").exists():
        pytest.skip(f"WNUT-17 not found at {WNUT} (set SEQTAG_CORPORA to the corpora folder)")
    return WNUT


# Two trained taggers that the export and ONNX tests hold every format to (one per test module).
@pytest.fixture(scope="module")
def crf_tagger():
    """Characters + case feature + CRF with BIO constraints, trained so that predictions are not degenerate."""
    from .helpers import bio_sentences, trained_tagger

    tagger = trained_tagger(bio_sentences(120, seed=1), crf=True, tag_scheme="auto")
    assert not bool(tagger.head.crf.transition_mask.all()), "expected BIO constraints in the CRF"
    return tagger


@pytest.fixture(scope="module")
def softmax_tagger():
    """No characters, no case feature, no CRF, case-sensitive word lookup."""
    from .helpers import random_sentences, trained_tagger

    return trained_tagger(random_sentences(120, seed=2), crf=False, char_filters=0, lowercase=False, case_embedding_dim=0)


# Tiny random transformer encoders with their tokenizers, built without the network (the
# tokenizers are trained here on a few sentences) and saved as a model name's files would be.
ENCODER_TEXT = [
    "The quick brown fox jumps over the lazy dog .",
    "A cat runs quickly , and the dogs ran after it !",
    "Unbelievable weather in New York today : 42 degrees .",
    "She sells sea shells by the sea shore .",
    "They are running , jumping and swimming all day long .",
]


def _roberta_encoder(directory: Path) -> Path:
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(ENCODER_TEXT, trainer)
    model = json.loads(bpe.to_str())["model"]
    tokenizer = RobertaTokenizerFast(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], add_prefix_space=True)
    torch.manual_seed(12)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=130, pad_token_id=1, type_vocab_size=1,
    )
    RobertaModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def encoder_dirs(tmp_path_factory) -> dict[str, Path]:
    """``{"bert": DIR, "roberta": DIR}``: a tiny random BERT (WordPiece) and RoBERTa (byte-level
    BPE), each saved with ``save_pretrained`` beside its fast tokenizer."""
    pytest.importorskip("transformers")
    from seqtag.testing import random_bert

    root = tmp_path_factory.mktemp("encoders")
    return {"bert": random_bert(root / "bert", ENCODER_TEXT), "roberta": _roberta_encoder(root / "roberta")}

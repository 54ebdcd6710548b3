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

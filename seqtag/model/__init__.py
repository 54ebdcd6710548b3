"""The tagger: its layers, heads and CRF, and the model directory it is saved as.

Each name below is imported from its module on first use (:func:`seqtag.lazy.attach`).
"""

from seqtag.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "tagger": ["Tagger", "as_tagger"],
    "layers": ["CharCNN", "PackedLSTM", "PaddedLSTM"],
    "heads": ["CRFHead", "SoftmaxHead", "build_head"],
    "crf": ["CRF"],
    "encoder": ["ScalarMix", "SubwordEncoder", "load_encoder", "save_encoder"],
    "directory": ["CONFIG_FILE", "VOCAB_FILE", "WEIGHTS_FILE", "load_tagger", "save_tagger", "trained_data_config"],
})  # fmt: skip

"""Training: the loop, the one training step, the run directory, checkpoints, interrupts,
distributed training, evaluation, the learning curve and ``seqtag bench``'s engine.

Each name below is imported from its module on first use (:func:`seqtag.lazy.attach`).
"""

from seqtag.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "loop": [
        "WALL_CLOCK_FIELDS", "TrainState", "end_epoch", "learning_rate", "run_epoch", "save_checkpoint",
        "seed_everything", "train",
    ],
    "step": ["LossModule", "StepResult", "train_step", "word_dropout_probabilities"],
    "runs": ["check_output_dir", "resumed_config"],
    "checkpoint": ["find_checkpoint", "read_checkpoint"],
    "interrupts": ["TrainingInterrupted"],
    "evaluation": ["evaluate"],
    "plot": ["plot_learning_curve"],
})  # fmt: skip

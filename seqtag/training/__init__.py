"""Training: the loop, the step, the run directory, checkpoints, interrupts, distributed, evaluation."""

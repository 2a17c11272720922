"""Training: config (``TrainConfig``), losses, the multi-frequency discriminator,
checkpoints that resume exactly, and the ``Trainer`` loop. See docs/TRAINING.md."""

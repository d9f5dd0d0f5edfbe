"""Training: recipes, the shared Trainer loop, data windows, checkpoints, processes, pretraining."""

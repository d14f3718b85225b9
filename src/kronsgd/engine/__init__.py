"""Training: the SGD loop (loop), ``KronSGD`` (trainer) and ``DenseSGD`` (dense); the update
log, workers, the thread and Ray drivers, checkpoints, planning and the fired-neuron tree."""

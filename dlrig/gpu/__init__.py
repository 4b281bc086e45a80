"""GPU knowledge: the GPU table (data/gpus.json) and the pure driver/CUDA/cuDNN/torch resolver."""

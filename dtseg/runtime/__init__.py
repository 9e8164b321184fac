"""Where and how a model runs: device, precision, CPU threads, kernels, the heap, fast or reference passes."""

"""Network pieces the families share: the fast batched mask decoder and the CPU kernels the fast encoders use."""

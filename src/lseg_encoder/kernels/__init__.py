"""Hand-written GPU kernels for the compiled path, where Inductor's own code is the bottleneck."""

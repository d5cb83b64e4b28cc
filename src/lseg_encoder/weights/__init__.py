"""Weights: reading checkpoints safely (`weights_only`, strict keys), the synthetic weights of the
reference fill rule, and which of the two a call will use."""

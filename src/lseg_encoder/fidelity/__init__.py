"""Fidelity: metrics and self-explaining verdicts, the one tolerance table, and Polygraphy as an
independent second referee."""

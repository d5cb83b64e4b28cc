"""CLI subcommands, one module each (see `lseg_encoder.cli`)."""

"""Studies: many runs, one comparison — the zoo, the β sweep, the codebook study, the benchmark."""

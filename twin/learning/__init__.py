"""Learning: small torch models, cohort (vmap) local training, aggregation strategies, FLOP counts."""

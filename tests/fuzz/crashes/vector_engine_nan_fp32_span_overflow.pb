
fuzz-run (B
æ±aæ±aÿ
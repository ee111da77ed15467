
fuzz-run (8
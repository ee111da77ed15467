
bad run id! (8
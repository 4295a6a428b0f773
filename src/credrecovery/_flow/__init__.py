"""The sans-I/O core: the recovery flows as generators of effects, and their driver."""

"""Pipeline layer: loads models and data, trains and evaluates, writes files."""

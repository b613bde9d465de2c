"""Demo data: a deterministic sales team and a year of its pipeline, for trying the app out."""

"""The synthetic funnel: raw tables in the data contract, and the oracle files that say what the
best possible model would predict. Only evaluation reads the oracles."""

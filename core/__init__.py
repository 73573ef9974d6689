"""The core: configuration, the data contract and its tables, the time grid and the domain rules
(offers, stages, audiences). It imports nothing from the rest of the project."""

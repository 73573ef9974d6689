"""Raw data: the contract every table must meet, its reader/writer, and the synthetic generator."""

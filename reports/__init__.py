"""HTML reports: the funnel report and the model card, built from one page kit."""

"""Jobs that send scores out (promotion, audience and campaign sync) and the funnel report."""

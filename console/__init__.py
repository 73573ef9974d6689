"""The web console (``funnel ui``): server-rendered pages for marketing and sales over the
stores every other part reads."""

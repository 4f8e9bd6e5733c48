"""Rules: the rule table, and the analysis that turns evidence into findings and a verdict."""

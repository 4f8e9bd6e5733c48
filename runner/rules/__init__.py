"""Rules: the rule table, pickle-global classification, evaluation of the evidence into
findings, and the analysis that assembles a report and its verdict."""

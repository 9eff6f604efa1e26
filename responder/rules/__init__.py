"""The rule table: targets, controls with ordered levels, and rules that map alerts to steps."""

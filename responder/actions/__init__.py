"""Actions: how a control level is applied on a target."""

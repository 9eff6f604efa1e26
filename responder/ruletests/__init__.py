"""``responder test-rules``: rule fixtures run through the real matcher, planner and
threshold evaluator, above the engine they exercise (``fixture`` reads a file, ``run``
plays its cases)."""

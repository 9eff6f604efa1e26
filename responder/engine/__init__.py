"""The engine: decide what an alert asks for, record it, then execute it exactly once."""

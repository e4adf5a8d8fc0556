"""The conformance kit: run the engine's state machine against any Backend."""

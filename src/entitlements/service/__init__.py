"""The application layer: use cases over the ports, one unit of work per call."""

"""The pure domain: values, state machines and resolution. No I/O, no clock reads."""

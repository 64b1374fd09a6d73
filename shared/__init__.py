"""What every newsflow service must agree on: messages, streams, settings, broker wiring, logs."""
